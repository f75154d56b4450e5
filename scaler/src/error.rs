//! The scaler's top-level error: why it could not start or run.

use crate::client;

/// Why the scaler could not start or run.
#[derive(Debug, thiserror::Error)]
pub enum ScalerError {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("gRPC server: {0}")]
    Grpc(#[from] tonic::transport::Error),
    #[error("telemetry: {0}")]
    Telemetry(String),
    #[error("{0}")]
    Client(#[from] client::ClientError),
}
