//! Where each chaos action is carried out ([`ChaosPlace`]): the lab's actions on its own processes, the cluster's
//! through the Kubernetes API by `generator run`. Each side refuses the other's actions with a usage error that names
//! the equivalent here ([`ChaosAction::check_place`]).

use std::fmt;

use crate::action::ChaosAction;

/// Where an action is carried out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChaosPlace {
    /// On the lab's own processes, by the lab.
    Lab,
    /// On Kubernetes objects, by the generator (in its Job, with the load-generator RBAC).
    Cluster,
}

impl fmt::Display for ChaosPlace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ChaosPlace::Lab => "the lab",
            ChaosPlace::Cluster => "a cluster (generator run)",
        })
    }
}

impl ChaosAction {
    /// Where the action is carried out.
    pub fn place(self) -> ChaosPlace {
        match self {
            ChaosAction::Kill
            | ChaosAction::Terminate
            | ChaosAction::Freeze
            | ChaosAction::KillScaler
            | ChaosAction::FreezeScaler
            | ChaosAction::StopBroker => ChaosPlace::Lab,
            ChaosAction::DeletePod
            | ChaosAction::EvictPod
            | ChaosAction::CordonNode
            | ChaosAction::DrainNode
            | ChaosAction::PartitionPod
            | ChaosAction::ScalerToZero => ChaosPlace::Cluster,
        }
    }

    /// The closest action of the other place, for the refusal's hint.
    pub fn counterpart(self) -> ChaosAction {
        match self {
            ChaosAction::Kill => ChaosAction::DeletePod,
            ChaosAction::Terminate => ChaosAction::EvictPod,
            ChaosAction::Freeze => ChaosAction::PartitionPod,
            ChaosAction::KillScaler | ChaosAction::FreezeScaler => ChaosAction::ScalerToZero,
            // A broker is a pod in a cluster (Strimzi's): `pod/NAME` names it.
            ChaosAction::StopBroker => ChaosAction::DeletePod,
            ChaosAction::DeletePod => ChaosAction::Kill,
            ChaosAction::EvictPod | ChaosAction::DrainNode | ChaosAction::CordonNode => {
                ChaosAction::Terminate
            }
            ChaosAction::PartitionPod => ChaosAction::Freeze,
            ChaosAction::ScalerToZero => ChaosAction::KillScaler,
        }
    }

    /// Whether `place` carries this action out; else the usage error to show (names the other place and the
    /// equivalent action).
    pub fn check_place(self, place: ChaosPlace) -> Result<(), String> {
        if self.place() == place {
            return Ok(());
        }
        Err(format!(
            "{self} runs in {}, not in {place}; use {} there, or {} here (actions here: {})",
            self.place(),
            match self.place() {
                ChaosPlace::Lab => "the lab (`lab --chaos`)",
                ChaosPlace::Cluster => "`generator run --chaos` in the cluster",
            },
            self.counterpart(),
            ChaosAction::allowed_in(place)
        ))
    }

    /// The actions carried out in `place`, for its error messages.
    pub fn allowed_in(place: ChaosPlace) -> String {
        ChaosAction::ALL
            .into_iter()
            .filter(|a| a.place() == place)
            .map(ChaosAction::as_str)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_place_refuses_the_other_places_actions_naming_the_equivalent() {
        let e = ChaosAction::Kill
            .check_place(ChaosPlace::Cluster)
            .unwrap_err();
        assert!(e.contains("the lab") && e.contains("delete-pod"), "{e}");
        let e = ChaosAction::PartitionPod
            .check_place(ChaosPlace::Lab)
            .unwrap_err();
        assert!(e.contains("generator run") && e.contains("freeze"), "{e}");
        for a in ChaosAction::ALL {
            assert!(a.check_place(a.place()).is_ok());
            assert_ne!(a.counterpart().place(), a.place(), "{a}");
        }
    }
}
