//! The one route table. Every API route is a `routes!` entry of a utoipa-axum `OpenApiRouter`, so the axum router,
//! the OpenAPI paths and the `route` label templates all come from the same list; the docs routes (`/apispec.json`,
//! `/apidocs`) are added here too, and their templates next to them.
//!
//! The `route` label is computed from the path by [`RouteTemplates`] rather than read from axum's `MatchedPath`, so
//! that observing wraps the router once instead of every route (a per-route layer costs an extra boxed service clone
//! on each request; see `bench/consumer`).

use axum::Router;
use axum::middleware;
use contract::routes::{OPENAPI_SPEC, OPENAPI_UI};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use utoipa_swagger_ui::SwaggerUi;

use crate::auth;
use crate::handlers::{self, jobs, load, sustained};
use crate::middleware::Observe;
use crate::openapi::ApiDoc;
pub use crate::route_templates::RouteTemplates;
use crate::state::AppState;

/// The API routes with their OpenAPI operations. The work routes sit behind the bearer-token guard.
pub fn table(state: &AppState) -> OpenApiRouter<AppState> {
    let guarded = OpenApiRouter::new()
        .routes(routes!(load::load_cpu))
        .routes(routes!(load::load_memory))
        .routes(routes!(load::load_io))
        .routes(routes!(sustained::sustained_start))
        .routes(routes!(sustained::sustained_status))
        .routes(routes!(sustained::sustained_stop))
        .routes(routes!(jobs::job_get, jobs::job_cancel))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ));
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(handlers::root))
        .routes(routes!(handlers::health))
        .routes(routes!(handlers::ready))
        .routes(routes!(handlers::metrics))
        .merge(guarded)
}

/// The OpenAPI document served at `/apispec.json`.
pub fn spec(state: &AppState) -> utoipa::openapi::OpenApi {
    table(state).into_openapi()
}

/// Templates of the routes the Swagger UI router serves.
fn docs_templates() -> [String; 4] {
    [
        OPENAPI_SPEC.to_owned(),
        OPENAPI_UI.to_owned(),
        format!("{OPENAPI_UI}/"),
        format!("{OPENAPI_UI}/{{*rest}}"),
    ]
}

/// The routes (API and docs) with the 404/405 fallbacks, and the templates of every route they serve.
pub fn router(state: AppState) -> (Router, RouteTemplates) {
    let (api, spec) = table(&state).split_for_parts();
    let templates = RouteTemplates::new(spec.paths.paths.keys().cloned().chain(docs_templates()));
    let router = api
        .merge(SwaggerUi::new(OPENAPI_UI).url(OPENAPI_SPEC, spec))
        .fallback(handlers::not_found)
        .method_not_allowed_fallback(handlers::method_not_allowed)
        .with_state(state);
    (router, templates)
}

/// The whole application: the routes, observed (metrics, server span, `x-served-by`) as one service.
pub fn app(state: AppState) -> Observe<Router> {
    let (router, templates) = router(state.clone());
    Observe::new(router, state, templates)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn templates() -> RouteTemplates {
        let state = AppState::new(crate::Config::from_args(["consumer"]).unwrap());
        router(state).1
    }

    #[test]
    fn every_documented_route_maps_to_its_own_template() {
        let templates = templates();
        let state = AppState::new(crate::Config::from_args(["consumer"]).unwrap());
        let spec = spec(&state);
        let paths: Vec<&String> = spec.paths.paths.keys().collect();
        assert!(paths.len() >= 11, "{paths:?}");
        for template in paths {
            let concrete = template.replace("{id}", "0b7c5e0e-52f6-4d3c-9a55-1f7f2b6f9a10");
            assert_eq!(templates.template(&concrete), template, "{concrete}");
        }
        assert_eq!(
            templates.template("/apidocs/swagger-ui.css"),
            "/apidocs/{*rest}"
        );
        assert_eq!(templates.template("/apidocs"), "/apidocs");
        assert_eq!(templates.template("/apidocs/"), "/apidocs/");
        assert_eq!(templates.template("/apispec.json"), "/apispec.json");
    }

    #[test]
    fn anything_else_is_unmatched() {
        let templates = templates();
        for path in [
            "",
            "/nope",
            "/health/",
            "/jobs/",
            "/jobs/a/b",
            "/load",
            "/load/cpu/",
        ] {
            assert_eq!(
                templates.template(path),
                contract::metrics::UNMATCHED_ROUTE,
                "{path:?}"
            );
        }
        assert_eq!(templates.template("/apidocs//x/"), "/apidocs/{*rest}");
    }

    /// The document describes what the handlers answer (Schemathesis checks it from outside, in
    /// tests/python/test_consumer_openapi.py): each sync load route its own report, 422 `value` any JSON value,
    /// refusals declared with `Retry-After`, request fields optional, nullable and closed.
    #[test]
    fn the_document_describes_each_route_s_own_responses() {
        let state = AppState::new(crate::Config::from_args(["consumer"]).unwrap());
        let spec = serde_json::to_value(spec(&state)).unwrap();
        let schemas = &spec["components"]["schemas"];
        for (path, response, report) in [
            ("/load/cpu", "CpuLoadResponse", "BurnReport"),
            ("/load/memory", "MemoryLoadResponse", "MemoryReport"),
            ("/load/io", "IoLoadResponse", "IoReport"),
        ] {
            let responses = &spec["paths"][path]["post"]["responses"];
            assert_eq!(
                responses["200"]["content"]["application/json"]["schema"]["$ref"],
                format!("#/components/schemas/{response}"),
                "{path}"
            );
            assert_eq!(
                schemas[response]["properties"]["result"]["$ref"],
                format!("#/components/schemas/{report}"),
                "{response}"
            );
            for status in ["429", "503"] {
                assert!(
                    responses[status]["headers"]["Retry-After"].is_object(),
                    "{path} {status}: {}",
                    responses[status]
                );
            }
            assert!(
                responses["202"]["headers"]["Location"].is_object(),
                "{path}"
            );
        }
        let error = schemas["ErrorBody"].to_string();
        let value: serde_json::Value = schemas["ErrorBody"]["allOf"]
            .as_array()
            .and_then(|parts| {
                parts
                    .iter()
                    .find_map(|part| part["properties"].get("value").cloned())
            })
            .unwrap_or_else(|| panic!("ErrorBody.value in {error}"));
        assert!(value.get("type").is_none(), "any JSON value: {value}");
        let request = &schemas["CpuLoadRequest"];
        assert_eq!(request["additionalProperties"], false, "{request}");
        assert!(request.get("required").is_none(), "{request}");
        assert_eq!(
            request["properties"]["duration_ms"]["type"],
            serde_json::json!(["integer", "null"])
        );
    }
}
