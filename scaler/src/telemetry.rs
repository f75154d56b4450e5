//! Logging and tracing: JSON log lines on stdout when stdout is not a terminal (human-readable on a TTY), and RPC
//! spans exported over OTLP/gRPC when `OTEL_EXPORTER_OTLP_ENDPOINT` is set (no exporter is built otherwise).

use std::io::IsTerminal;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, filter};

use crate::error::ScalerError;

/// Flushes and stops the span exporter when dropped.
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            let _ = provider.shutdown();
        }
    }
}

/// Installs the global subscriber. `RUST_LOG` filters logs (default `info`).
pub fn init() -> Result<Telemetry, ScalerError> {
    let log_filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = !std::io::stdout().is_terminal();
    let fmt_layer = if json {
        tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(false)
            .with_span_list(false)
            .with_filter(log_filter)
            .boxed()
    } else {
        tracing_subscriber::fmt::layer()
            .with_filter(log_filter)
            .boxed()
    };

    let endpoint_set = std::env::var_os("OTEL_EXPORTER_OTLP_ENDPOINT")
        .is_some_and(|v| !v.is_empty())
        || std::env::var_os("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_some_and(|v| !v.is_empty());
    let mut provider = None;
    let otel_layer = if endpoint_set {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .build()
            .map_err(|e| ScalerError::Telemetry(e.to_string()))?;
        let mut resource = opentelemetry_sdk::Resource::builder();
        if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
            resource = resource.with_service_name("scaler");
        }
        let tracer_provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource.build())
            .build();
        let tracer = tracer_provider.tracer("scaler");
        provider = Some(tracer_provider);
        // Only the scaler's own spans: the exporter's h2/tonic/hyper spans would feed back into the exporter. RPC spans
        // are DEBUG-level so that, with no exporter, the log filter (info) disables them and they cost nothing.
        let only_scaler = filter::Targets::new().with_target("scaler", tracing::Level::DEBUG);
        Some(
            tracing_opentelemetry::layer()
                .with_tracer(tracer)
                .with_filter(only_scaler),
        )
    } else {
        None
    };

    tracing_subscriber::registry()
        .with(fmt_layer)
        .with(otel_layer)
        .try_init()
        .map_err(|e| ScalerError::Telemetry(e.to_string()))?;
    Ok(Telemetry { provider })
}
