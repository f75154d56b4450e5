//! placeholder, replaced by the consumer implementation.
