//! The autoscaler's integration tests, one binary: the HPA's documented rules, KEDA's rules and ScaledObject parsing,
//! each table-driven against the public API.

mod hpa_rules;
mod keda_rules;
mod spec_parsing;
mod support;
