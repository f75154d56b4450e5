//! What a fault cost, the same for the lab's faults and the cluster's: [`measure`] the one loss and recovery formula,
//! [`threshold`] the chaos thresholds (`recovery<30s,lost<0.1%`), [`observed`] the autoscaler's reaction in a fault's
//! window. Where a fault runs lives on either side: the lab's replicas, the generator's cluster executors.

pub mod measure;
pub mod observed;
pub mod threshold;

pub use threshold::Threshold;
