//! placeholder, replaced by the scaler implementation.
