//! The fault spec, written once for a profile's `chaos:` list and the `--chaos` flag
//! (`at=20s,action=kill,target=replica`): faults at given times of the load (`at`), what to do (`action`), to whom
//! (`target`) and for how long (`duration`), with the same checks in both forms. Times are profile times:
//! `--time-scale` scales them with the stages.
//!
//! Actions run in one of two places ([`ChaosPlace`]): lab actions act on the lab's own processes (the lab carries them
//! out), cluster actions act on Kubernetes objects (the generator carries them out through the API, with the
//! load-generator component's RBAC). Each side refuses the other's with a usage error naming the equivalent. This
//! crate carries nothing out and measures nothing: the load core reads the list (`load::profile`) and measures each
//! fault's cost (`load::chaos`), the lab and the generator execute it.

mod action;
mod place;
mod spec;

pub use action::{ChaosAction, ChaosTarget, TARGETS_ALLOWED};
pub use place::ChaosPlace;
pub use spec::{ChaosSpec, FlagError};
