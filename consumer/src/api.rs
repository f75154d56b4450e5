//! Request and response bodies of the HTTP API (their OpenAPI schemas carry the ranges and defaults), and the
//! validation that turns a JSON object into a request.

use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::error::ApiError;
use crate::jobs::{JobState, JobView};
use crate::load::cpu::BurnReport;
use crate::load::memory::MemoryReport;
use crate::validate::{Fields, Mode};

/// `POST /load/cpu`: burn one core for `duration_ms` of CPU time.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({"duration_ms": 100, "complexity": 5, "mode": "sync"}))]
#[serde(deny_unknown_fields)]
pub struct CpuLoadRequest {
    /// CPU milliseconds to burn.
    #[schema(
        minimum = 1,
        maximum = 10000,
        default = 100,
        required = false,
        nullable
    )]
    pub duration_ms: u64,
    /// Work per iteration (hash rounds = complexity × 2000); does not change the duration.
    #[schema(minimum = 1, maximum = 10, default = 5, required = false, nullable)]
    pub complexity: u64,
    #[schema(default = "sync", required = false, nullable)]
    pub mode: Mode,
}

impl CpuLoadRequest {
    pub fn from_json(map: Map<String, Value>) -> Result<CpuLoadRequest, ApiError> {
        let fields = Fields::new(map, &["duration_ms", "complexity", "mode"])?;
        Ok(CpuLoadRequest {
            duration_ms: fields.integer("duration_ms", 1..=10_000, 100)?,
            complexity: fields.integer("complexity", 1..=10, 5)?,
            mode: fields.mode()?,
        })
    }
}

/// `POST /load/memory`: allocate and touch `size_mb` MiB, hold it for `duration_ms`, free it.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({"size_mb": 50, "duration_ms": 1000, "mode": "sync"}))]
#[serde(deny_unknown_fields)]
pub struct MemoryLoadRequest {
    /// MiB to allocate (bounded in total by the memory budget).
    #[schema(minimum = 1, maximum = 2048, default = 50, required = false, nullable)]
    pub size_mb: u64,
    /// Milliseconds to hold the memory.
    #[schema(
        minimum = 1,
        maximum = 120000,
        default = 1000,
        required = false,
        nullable
    )]
    pub duration_ms: u64,
    #[schema(default = "sync", required = false, nullable)]
    pub mode: Mode,
}

impl MemoryLoadRequest {
    pub fn from_json(map: Map<String, Value>) -> Result<MemoryLoadRequest, ApiError> {
        let fields = Fields::new(map, &["size_mb", "duration_ms", "mode"])?;
        Ok(MemoryLoadRequest {
            size_mb: fields.integer("size_mb", 1..=2048, 50)?,
            duration_ms: fields.integer("duration_ms", 1..=120_000, 1000)?,
            mode: fields.mode()?,
        })
    }
}

/// `POST /load/io`: wait `delay_ms` without CPU while holding an executor slot.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({"delay_ms": 100, "mode": "sync"}))]
#[serde(deny_unknown_fields)]
pub struct IoLoadRequest {
    #[schema(
        minimum = 1,
        maximum = 60000,
        default = 100,
        required = false,
        nullable
    )]
    pub delay_ms: u64,
    #[schema(default = "sync", required = false, nullable)]
    pub mode: Mode,
}

impl IoLoadRequest {
    pub fn from_json(map: Map<String, Value>) -> Result<IoLoadRequest, ApiError> {
        let fields = Fields::new(map, &["delay_ms", "mode"])?;
        Ok(IoLoadRequest {
            delay_ms: fields.integer("delay_ms", 1..=60_000, 100)?,
            mode: fields.mode()?,
        })
    }
}

/// `POST /load/cpu/sustained`: burn `workers` cores for `duration_seconds`.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({"workers": 1, "duration_seconds": 30, "complexity": 5}))]
#[serde(deny_unknown_fields)]
pub struct SustainedLoadRequest {
    #[schema(minimum = 1, maximum = 4, default = 1, required = false, nullable)]
    pub workers: u64,
    #[schema(minimum = 1, maximum = 300, default = 30, required = false, nullable)]
    pub duration_seconds: u64,
    #[schema(minimum = 1, maximum = 10, default = 5, required = false, nullable)]
    pub complexity: u64,
}

impl SustainedLoadRequest {
    pub fn from_json(map: Map<String, Value>) -> Result<SustainedLoadRequest, ApiError> {
        let fields = Fields::new(map, &["workers", "duration_seconds", "complexity"])?;
        Ok(SustainedLoadRequest {
            workers: fields.integer("workers", 1..=4, 1)?,
            duration_seconds: fields.integer("duration_seconds", 1..=300, 30)?,
            complexity: fields.integer("complexity", 1..=10, 5)?,
        })
    }
}

/// `POST /load/cpu/sustained/stop`: stop one job (`job_id`) or all.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SustainedStopRequest {
    /// The job to stop; all sustained jobs when absent or null.
    #[schema(required = false)]
    pub job_id: Option<Uuid>,
}

impl SustainedStopRequest {
    pub fn from_json(map: Map<String, Value>) -> Result<SustainedStopRequest, ApiError> {
        let fields = Fields::new(map, &["job_id"])?;
        Ok(SustainedStopRequest {
            job_id: fields.uuid("job_id")?,
        })
    }
}

/// What an I/O wait measured.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct IoReport {
    pub delay_ms: u64,
    /// Wall seconds actually waited.
    pub waited_seconds: f64,
    /// False if cut short (cancelled).
    pub completed: bool,
}

/// Declares the sync response of one kind of work: the request as understood, the queue wait, and what the work
/// measured. One struct per kind, so each route's 200 documents its own report.
macro_rules! sync_response {
    ($(#[$doc:meta])* $name:ident, $report:ty, $kind:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Serialize, ToSchema)]
        pub struct $name {
            /// The kind of work.
            #[schema(example = $kind)]
            pub kind: String,
            /// Seconds waited for an executor slot.
            pub queue_wait_seconds: f64,
            /// Seconds of work.
            pub run_seconds: f64,
            pub served_by: String,
            /// The validated request, defaults filled in.
            #[schema(value_type = Object)]
            pub request: Value,
            pub result: $report,
        }
    };
}

sync_response!(
    /// Sync `/load/cpu` response.
    CpuLoadResponse,
    BurnReport,
    "cpu"
);
sync_response!(
    /// Sync `/load/memory` response.
    MemoryLoadResponse,
    MemoryReport,
    "memory"
);
sync_response!(
    /// Sync `/load/io` response.
    IoLoadResponse,
    IoReport,
    "io"
);

/// 202 for async and sustained work.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct JobAccepted {
    pub job_id: Uuid,
    pub state: JobState,
    /// Where to follow the job: `/jobs/{id}`.
    pub location: String,
    pub served_by: String,
}

/// `GET /load/cpu/sustained/status`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SustainedStatus {
    /// Sustained worker threads running now on this replica.
    pub active_workers: u32,
    pub max_workers: u32,
    pub jobs: Vec<JobView>,
}

/// `POST /load/cpu/sustained/stop`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SustainedStopped {
    /// Jobs asked to stop (their threads stop within about 50 ms).
    pub stopped: Vec<Uuid>,
}

/// `GET /`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ServiceInfo {
    pub name: String,
    pub version: String,
    /// Pod name (HOSTNAME).
    pub pod: String,
    pub uptime_seconds: f64,
    pub started_at: String,
    pub draining: bool,
    /// Whether `/load/*` and `/jobs/*` need a bearer token.
    pub auth_required: bool,
    pub limits: Limits,
    pub load: LoadNow,
}

/// Limits in force.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Limits {
    pub memory_budget_bytes: u64,
    pub executors: u32,
    pub queue_size: u32,
    pub max_sustained_workers: u32,
    pub slot_wait_timeout_seconds: f64,
    pub shutdown_grace_seconds: f64,
    pub job_retention_seconds: f64,
}

/// Load on this replica now.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LoadNow {
    pub jobs_queued: u32,
    pub jobs_running: u32,
    pub memory_reserved_bytes: u64,
    pub sustained_workers: u32,
}

/// `GET /health` and `GET /ready`.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct Status {
    /// `ok` (health), `ready`, `draining` or (Kafka mode) `waiting for a partition assignment` (readiness).
    pub status: String,
    /// Kafka mode, once ready: how many partitions the group assigned this member.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kafka_partitions: Option<u32>,
    /// Kafka mode: why a ready member does no work (the group assigned it no partition).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kafka: Option<String>,
}
