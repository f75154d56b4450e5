//! Chaos thresholds (`recovery<30s`, `lost<0.1%`, ...): one parser and judge for the lab and `generator run`, kept in
//! the generator (`load::chaos::threshold`), re-exported here where the lab's chaos run looks for it.

pub use load::chaos::threshold::Threshold;
