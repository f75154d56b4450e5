//! The OpenAPI 3 document, generated from the handlers and schemas (utoipa), served at `/apispec.json`, and the
//! Swagger UI at `/apidocs` (assets embedded at build time: works with no internet).

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_swagger_ui::SwaggerUi;

use crate::state::AppState;

#[derive(OpenApi)]
#[openapi(
    info(title = "consumer", description = "The autoscaling lab's target service: CPU, memory, I/O and sustained load, sync or async, with a Prometheus metric contract."),
    paths(
        crate::http::root,
        crate::http::health,
        crate::http::ready,
        crate::http::metrics,
        crate::http::load_cpu,
        crate::http::load_memory,
        crate::http::load_io,
        crate::http::sustained_start,
        crate::http::sustained_status,
        crate::http::sustained_stop,
        crate::http::job_get,
        crate::http::job_cancel,
    ),
    components(schemas(
        crate::api::CpuLoadRequest,
        crate::api::MemoryLoadRequest,
        crate::api::IoLoadRequest,
        crate::api::SustainedLoadRequest,
        crate::api::SustainedStopRequest,
        crate::api::CpuLoadResponse,
        crate::api::MemoryLoadResponse,
        crate::api::IoLoadResponse,
        crate::api::JobAccepted,
        crate::api::SustainedStatus,
        crate::api::SustainedStopped,
        crate::api::ServiceInfo,
        crate::api::Status,
        crate::load::cpu::BurnReport,
        crate::load::memory::MemoryReport,
        crate::api::IoReport,
        crate::load::sustained::SustainedReport,
        crate::jobs::JobView,
        crate::jobs::JobState,
        crate::validate::Mode,
        crate::error::ErrorBody,
    )),
    modifiers(&BearerAuth),
    tags(
        (name = "service", description = "identity and limits"),
        (name = "probes", description = "liveness, readiness, metrics"),
        (name = "load", description = "CPU, memory and I/O load, sync or async"),
        (name = "sustained", description = "long-running multi-core CPU load"),
        (name = "jobs", description = "async and sustained jobs"),
    )
)]
pub struct ApiDoc;

/// Declares the optional bearer token (`--load-token`).
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "Needed only when the consumer runs with --load-token / LOAD_TOKEN.",
                    ))
                    .build(),
            ),
        );
    }
}

/// `/apispec.json` and `/apidocs`.
pub fn docs_router() -> axum::Router<AppState> {
    SwaggerUi::new("/apidocs")
        .url("/apispec.json", ApiDoc::openapi())
        .into()
}
