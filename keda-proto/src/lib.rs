//! KEDA's `externalscaler.proto` (package `externalscaler`) and the tonic/prost code generated from it with the
//! pure-Rust `protox` compiler (no system `protoc`): the client (`external_scaler_client::ExternalScalerClient`), the
//! server trait (`external_scaler_server`) and the messages.
//!
//! Only the scaler (server) and the lab (client, playing KEDA) depend on this crate; the consumer and the generator
//! never link gRPC.

#![allow(missing_docs, clippy::all)]
tonic::include_proto!("externalscaler");
