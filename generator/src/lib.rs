//! placeholder, replaced by the generator implementation.
