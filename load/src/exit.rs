//! The generator's exit codes: the lab-wide table of [`contract::exit`], re-exported so the generator's code reads
//! `exit::THRESHOLDS_BREACHED`.

pub use contract::exit::*;
