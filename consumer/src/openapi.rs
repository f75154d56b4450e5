//! The base of the OpenAPI 3 document: title, tags, shared schemas and the bearer scheme. The paths come from the
//! route table ([`crate::routes::table`]), which serves the finished document at `/apispec.json` and the Swagger UI at
//! `/apidocs` (assets embedded at build time: works with no internet). This module knows no handler.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(title = "consumer", description = "The autoscaling lab's target service: CPU, memory, I/O and sustained load, sync or async, with a Prometheus metric contract."),
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
