//! The `externalscaler.ExternalScaler` gRPC service KEDA calls: every answer comes from the registry's cache, and every
//! RPC is counted and timed in the scaler's metrics.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use futures::{Stream, StreamExt};
use tokio_stream::wrappers::WatchStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use crate::entry::TriggerEntry;
use crate::metrics::Metrics;
use crate::registry::{LookupError, Registry};
use crate::trigger::TriggerSpec;
use keda_proto::external_scaler_server::ExternalScaler;
use keda_proto::{
    GetMetricSpecResponse, GetMetricsRequest, GetMetricsResponse, IsActiveResponse, MetricSpec,
    MetricValue, ScaledObjectRef,
};

/// The gRPC service.
pub struct ScalerService {
    registry: Arc<Registry>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
}

impl ScalerService {
    pub fn new(
        registry: Arc<Registry>,
        metrics: Arc<Metrics>,
        shutdown: CancellationToken,
    ) -> ScalerService {
        ScalerService {
            registry,
            metrics,
            shutdown,
        }
    }

    fn resolve(&self, reference: Option<&ScaledObjectRef>) -> Result<Arc<TriggerEntry>, Status> {
        let reference =
            reference.ok_or_else(|| Status::invalid_argument("scaledObjectRef is missing"))?;
        self.registry
            .resolve(
                &reference.name,
                &reference.namespace,
                &reference.scaler_metadata,
            )
            .map_err(to_status)
    }

    /// Counts and times one RPC outcome.
    fn observe<T>(&self, rpc: &str, started: Instant, result: &Result<T, Status>) {
        let code = match result {
            Ok(_) => "OK".to_string(),
            Err(status) => code_name(status.code()),
        };
        self.metrics
            .grpc_requests
            .with_label_values(&[rpc, &code])
            .inc();
        self.metrics
            .grpc_duration
            .with_label_values(&[rpc])
            .observe(started.elapsed().as_secs_f64());
        if let Err(status) = result {
            tracing::debug!(rpc, code = %code, message = status.message(), "rpc failed");
        }
    }
}

/// The gRPC code's canonical name (`INVALID_ARGUMENT`, `UNAVAILABLE`, ...).
pub fn code_name(code: tonic::Code) -> String {
    let text = format!("{code:?}");
    let mut name = String::new();
    for (i, c) in text.chars().enumerate() {
        if c.is_uppercase() && i > 0 {
            name.push('_');
        }
        name.push(c.to_ascii_uppercase());
    }
    match name.as_str() {
        "O_K" => "OK".into(),
        _ => name,
    }
}

fn to_status(error: LookupError) -> Status {
    match error {
        LookupError::InvalidMetadata(_) | LookupError::InvalidRequest(_) => {
            Status::invalid_argument(error.to_string())
        }
        LookupError::Unavailable(_) => Status::unavailable(error.to_string()),
        LookupError::Exhausted(_) => Status::resource_exhausted(error.to_string()),
    }
}

/// The int64 fields KEDA before 2.17 reads: rounded, and a target never below 1 (a 0 target would divide by zero).
fn legacy_int(value: f64) -> i64 {
    value.round().clamp(i64::MIN as f64, i64::MAX as f64) as i64
}

fn metric_spec(spec: &TriggerSpec) -> MetricSpec {
    MetricSpec {
        metric_name: spec.metric_name.clone(),
        target_size: legacy_int(spec.target).max(1),
        target_size_float: spec.target,
    }
}

/// Whether KEDA's metric name refers to this trigger: exact, or with KEDA's `s<index>-` prefix.
fn metric_name_matches(requested: &str, ours: &str) -> bool {
    if requested.is_empty() || requested == ours {
        return true;
    }
    match requested
        .strip_prefix('s')
        .and_then(|rest| rest.split_once('-'))
    {
        Some((index, name)) => {
            index.chars().all(|c| c.is_ascii_digit()) && !index.is_empty() && name == ours
        }
        None => false,
    }
}

type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// Decrements the open-streams gauge when the stream ends (client gone, or shutdown).
struct OpenStream {
    gauge: prometheus::IntGauge,
}

impl OpenStream {
    fn new(metrics: &Metrics, rpc: &str) -> OpenStream {
        let gauge = metrics.streams_open.with_label_values(&[rpc]);
        gauge.inc();
        OpenStream { gauge }
    }
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

#[tonic::async_trait]
impl ExternalScaler for ScalerService {
    #[tracing::instrument(level = "debug", skip_all, fields(rpc = "IsActive", scaled_object))]
    async fn is_active(
        &self,
        request: Request<ScaledObjectRef>,
    ) -> Result<Response<IsActiveResponse>, Status> {
        let started = Instant::now();
        let result = async {
            let entry = self.resolve(Some(request.get_ref()))?;
            tracing::Span::current().record("scaled_object", entry.key.scaled_object.as_str());
            let (_, active) = self.registry.current(&entry).await.map_err(to_status)?;
            Ok(Response::new(IsActiveResponse { result: active }))
        }
        .await;
        self.observe("IsActive", started, &result);
        result
    }

    type StreamIsActiveStream = ResponseStream<IsActiveResponse>;

    #[tracing::instrument(
        level = "debug",
        skip_all,
        fields(rpc = "StreamIsActive", scaled_object)
    )]
    async fn stream_is_active(
        &self,
        request: Request<ScaledObjectRef>,
    ) -> Result<Response<Self::StreamIsActiveStream>, Status> {
        let started = Instant::now();
        let result = self.resolve(Some(request.get_ref()));
        self.observe("StreamIsActive", started, &result);
        let entry = result?;
        tracing::Span::current().record("scaled_object", entry.key.scaled_object.as_str());
        let guard = (
            entry.open_stream(),
            OpenStream::new(&self.metrics, "StreamIsActive"),
        );
        // The current state at once (as soon as there is one), then each change; the watch only signals changes.
        let stream = WatchStream::new(entry.subscribe_active())
            .filter_map(|state| async move { state.map(|result| Ok(IsActiveResponse { result })) })
            .take_until(self.shutdown.clone().cancelled_owned())
            .map(move |item| {
                let _keep_open = &guard;
                item
            });
        Ok(Response::new(Box::pin(stream)))
    }

    #[tracing::instrument(
        level = "debug",
        skip_all,
        fields(rpc = "GetMetricSpec", scaled_object)
    )]
    async fn get_metric_spec(
        &self,
        request: Request<ScaledObjectRef>,
    ) -> Result<Response<GetMetricSpecResponse>, Status> {
        let started = Instant::now();
        // Never depends on the source: KEDA's fallback needs the spec even while the source is down.
        let result = self.resolve(Some(request.get_ref())).map(|entry| {
            tracing::Span::current().record("scaled_object", entry.key.scaled_object.as_str());
            Response::new(GetMetricSpecResponse {
                metric_specs: vec![metric_spec(&entry.spec())],
            })
        });
        self.observe("GetMetricSpec", started, &result);
        result
    }

    #[tracing::instrument(level = "debug", skip_all, fields(rpc = "GetMetrics", scaled_object))]
    async fn get_metrics(
        &self,
        request: Request<GetMetricsRequest>,
    ) -> Result<Response<GetMetricsResponse>, Status> {
        let started = Instant::now();
        let result = async {
            let request = request.get_ref();
            let entry = self.resolve(request.scaled_object_ref.as_ref())?;
            tracing::Span::current().record("scaled_object", entry.key.scaled_object.as_str());
            if !metric_name_matches(&request.metric_name, &entry.key.metric_name) {
                return Err(Status::invalid_argument(format!(
                    "metricName {:?} is not this trigger's metric; its metricName is {:?} (as returned by GetMetricSpec)",
                    request.metric_name, entry.key.metric_name
                )));
            }
            let (value, _) = self.registry.current(&entry).await.map_err(to_status)?;
            let metric_name = if request.metric_name.is_empty() {
                entry.key.metric_name.clone()
            } else {
                request.metric_name.clone()
            };
            Ok(Response::new(GetMetricsResponse {
                metric_values: vec![MetricValue {
                    metric_name,
                    metric_value: legacy_int(value),
                    metric_value_float: value,
                }],
            }))
        }
        .await;
        self.observe("GetMetrics", started, &result);
        result
    }

    type StreamMetricSpecStream = ResponseStream<GetMetricSpecResponse>;

    #[tracing::instrument(
        level = "debug",
        skip_all,
        fields(rpc = "StreamMetricSpec", scaled_object)
    )]
    async fn stream_metric_spec(
        &self,
        request: Request<ScaledObjectRef>,
    ) -> Result<Response<Self::StreamMetricSpecStream>, Status> {
        let started = Instant::now();
        let result = self.resolve(Some(request.get_ref()));
        self.observe("StreamMetricSpec", started, &result);
        let entry = result?;
        let guard = (
            entry.open_stream(),
            OpenStream::new(&self.metrics, "StreamMetricSpec"),
        );
        let mut last_sent: Option<MetricSpec> = None;
        let stream = WatchStream::new(entry.subscribe_spec())
            .filter_map(move |spec| {
                // Only target changes matter to KEDA; other spec changes keep the same metric spec.
                let spec = metric_spec(&spec);
                let item = (last_sent.as_ref() != Some(&spec)).then(|| {
                    last_sent = Some(spec.clone());
                    Ok(GetMetricSpecResponse {
                        metric_specs: vec![spec],
                    })
                });
                async move { item }
            })
            .take_until(self.shutdown.clone().cancelled_owned())
            .map(move |item| {
                let _keep_open = &guard;
                item
            });
        Ok(Response::new(Box::pin(stream)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_names_are_canonical() {
        assert_eq!(code_name(tonic::Code::Ok), "OK");
        assert_eq!(code_name(tonic::Code::InvalidArgument), "INVALID_ARGUMENT");
        assert_eq!(code_name(tonic::Code::Unavailable), "UNAVAILABLE");
        assert_eq!(
            code_name(tonic::Code::ResourceExhausted),
            "RESOURCE_EXHAUSTED"
        );
    }

    #[test]
    fn keda_metric_name_prefixes_are_accepted() {
        assert!(metric_name_matches("request-rate-abc", "request-rate-abc"));
        assert!(metric_name_matches(
            "s0-request-rate-abc",
            "request-rate-abc"
        ));
        assert!(metric_name_matches(
            "s12-request-rate-abc",
            "request-rate-abc"
        ));
        assert!(metric_name_matches("", "request-rate-abc"));
        assert!(!metric_name_matches(
            "sx-request-rate-abc",
            "request-rate-abc"
        ));
        assert!(!metric_name_matches("latency", "request-rate-abc"));
    }

    #[test]
    fn legacy_fields_round_and_keep_target_positive() {
        assert_eq!(legacy_int(2.6), 3);
        assert_eq!(legacy_int(f64::NAN), 0);
        let mut meta = std::collections::HashMap::new();
        meta.insert("trigger".to_string(), "latency".to_string());
        meta.insert("target".to_string(), "0.25".to_string());
        let spec = metric_spec(&TriggerSpec::from_metadata(&meta).unwrap());
        assert_eq!(spec.target_size, 1);
        assert_eq!(spec.target_size_float, 0.25);
    }
}
