//! KEDA external scaler: generated gRPC code for `externalscaler.proto`.
pub mod proto {
    //! tonic/prost code generated from `proto/externalscaler.proto` (package `externalscaler`).
    #![allow(missing_docs, clippy::all)]
    tonic::include_proto!("externalscaler");
}
