//! A pod as the agent sees it ([`View`]) and the PodStatus it posts: phase, conditions (PodReadyToStartContainers,
//! Initialized, ContainersReady, Ready) with their transition times, addresses, and each container's state,
//! last state, readiness, restart count and id, following the kubelet's rules for the phase.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
    ContainerStatus, HostIP, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use super::container::Exit;

/// A container's state as the agent tracks it.
#[derive(Debug, Clone, PartialEq)]
pub enum State {
    Waiting {
        reason: String,
        message: Option<String>,
    },
    Running {
        started_at: Timestamp,
    },
    Terminated {
        exit: Exit,
        container_id: String,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct ContainerView {
    pub name: String,
    pub image: String,
    pub state: State,
    pub last: Option<State>,
    pub ready: bool,
    pub started: bool,
    pub restart_count: u32,
    pub container_id: Option<String>,
}

impl ContainerView {
    pub fn new(name: &str, image: &str) -> ContainerView {
        ContainerView {
            name: name.to_string(),
            image: image.to_string(),
            state: State::Waiting {
                reason: "ContainerCreating".into(),
                message: None,
            },
            last: None,
            ready: false,
            started: false,
            restart_count: 0,
            container_id: None,
        }
    }

    fn terminated(&self) -> Option<&Exit> {
        match &self.state {
            State::Terminated { exit, .. } => Some(exit),
            _ => None,
        }
    }
}

/// The phase the pod ends in, once it ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Ended {
    pub phase: &'static str,
    pub reason: Option<String>,
    pub message: Option<String>,
}

/// The whole pod.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct View {
    pub restart_policy: String,
    pub pod_ip: Option<String>,
    pub host_ip: String,
    pub start_time: Option<Timestamp>,
    pub sandbox_ready: bool,
    pub init: Vec<ContainerView>,
    pub containers: Vec<ContainerView>,
    /// Set when the pod reached a terminal phase (or the agent failed it, e.g. activeDeadlineSeconds).
    pub ended: Option<Ended>,
    /// A pod-level problem shown as the pod's message while it waits.
    pub message: Option<String>,
    /// When each condition last changed, and to what.
    pub transitions: BTreeMap<String, (bool, Timestamp)>,
}

fn time(t: Timestamp) -> Time {
    Time(t)
}

fn state_of(state: &State) -> ContainerState {
    match state {
        State::Waiting { reason, message } => ContainerState {
            waiting: Some(ContainerStateWaiting {
                reason: Some(reason.clone()),
                message: message.clone(),
            }),
            ..ContainerState::default()
        },
        State::Running { started_at } => ContainerState {
            running: Some(ContainerStateRunning {
                started_at: Some(time(*started_at)),
            }),
            ..ContainerState::default()
        },
        State::Terminated { exit, container_id } => ContainerState {
            terminated: Some(ContainerStateTerminated {
                exit_code: exit.exit_code,
                signal: exit.signal,
                reason: Some(exit.reason.to_string()),
                message: exit.message.clone(),
                started_at: Some(time(exit.started_at)),
                finished_at: Some(time(exit.finished_at)),
                container_id: Some(container_id.clone()),
            }),
            ..ContainerState::default()
        },
    }
}

fn container_status(c: &ContainerView) -> ContainerStatus {
    ContainerStatus {
        name: c.name.clone(),
        image: c.image.clone(),
        image_id: String::new(),
        container_id: c.container_id.clone(),
        state: Some(state_of(&c.state)),
        last_state: Some(c.last.as_ref().map(state_of).unwrap_or_default()),
        ready: c.ready,
        started: Some(c.started),
        restart_count: c.restart_count as i32,
        ..ContainerStatus::default()
    }
}

impl View {
    /// Have all init containers completed?
    pub fn initialized(&self) -> bool {
        self.init.iter().all(|c| {
            c.terminated().is_some_and(|e| e.exit_code == 0)
                // A sidecar (restartPolicy: Always) counts once it started.
                || c.started
        })
    }

    pub fn containers_ready(&self) -> bool {
        !self.containers.is_empty() && self.containers.iter().all(|c| c.ready)
    }

    /// The kubelet's phase rules.
    pub fn phase(&self) -> &'static str {
        if let Some(ended) = &self.ended {
            return ended.phase;
        }
        if !self.initialized() {
            return "Pending";
        }
        let (mut running, mut waiting, mut stopped, mut succeeded) = (0, 0, 0, 0);
        for c in &self.containers {
            match &c.state {
                State::Running { .. } => running += 1,
                State::Terminated { exit, .. } => {
                    stopped += 1;
                    if exit.exit_code == 0 {
                        succeeded += 1;
                    }
                }
                State::Waiting { .. } => {
                    if c.last.is_some() {
                        // Restarting: it ran before.
                        running += 1;
                    } else {
                        waiting += 1;
                    }
                }
            }
        }
        let total = self.containers.len();
        if waiting > 0 {
            "Pending"
        } else if running > 0 {
            "Running"
        } else if stopped == total && total > 0 {
            if self.restart_policy == "Always" {
                "Running"
            } else if succeeded == total {
                "Succeeded"
            } else if self.restart_policy == "Never" {
                "Failed"
            } else {
                "Running"
            }
        } else {
            "Pending"
        }
    }

    /// Records a condition's value, keeping its transition time when it did not change.
    pub fn condition(&mut self, name: &str, value: bool) -> Timestamp {
        match self.transitions.get(name) {
            Some((v, t)) if *v == value => *t,
            _ => {
                let t = Timestamp::now();
                self.transitions.insert(name.to_string(), (value, t));
                t
            }
        }
    }

    /// The PodStatus to post.
    pub fn status(&mut self) -> PodStatus {
        let initialized = self.initialized();
        let containers_ready = initialized && self.containers_ready() && self.ended.is_none();
        let conditions = [
            (
                "PodReadyToStartContainers",
                self.sandbox_ready && self.ended.is_none(),
            ),
            ("Initialized", initialized),
            ("ContainersReady", containers_ready),
            ("Ready", containers_ready),
        ]
        .into_iter()
        .map(|(name, value)| {
            let at = self.condition(name, value);
            let reason = match (name, value) {
                ("Initialized", false) => Some("ContainersNotInitialized".to_string()),
                ("ContainersReady" | "Ready", false) if self.ended.is_some() => {
                    Some("PodCompleted".to_string())
                }
                ("ContainersReady" | "Ready", false) => Some("ContainersNotReady".to_string()),
                _ => None,
            };
            let message = match (name, value) {
                ("ContainersReady" | "Ready", false) if self.ended.is_none() => {
                    let unready: Vec<&str> = self
                        .containers
                        .iter()
                        .filter(|c| !c.ready)
                        .map(|c| c.name.as_str())
                        .collect();
                    Some(format!(
                        "containers with unready status: [{}]",
                        unready.join(" ")
                    ))
                }
                ("Initialized", false) => {
                    let pending: Vec<&str> = self
                        .init
                        .iter()
                        .filter(|c| {
                            !(c.started || c.terminated().is_some_and(|e| e.exit_code == 0))
                        })
                        .map(|c| c.name.as_str())
                        .collect();
                    Some(format!(
                        "containers with incomplete status: [{}]",
                        pending.join(" ")
                    ))
                }
                _ => None,
            };
            PodCondition {
                type_: name.to_string(),
                status: if value { "True" } else { "False" }.to_string(),
                last_transition_time: Some(time(at)),
                reason,
                message,
                ..PodCondition::default()
            }
        })
        .collect();
        let phase = self.phase();
        PodStatus {
            phase: Some(phase.to_string()),
            conditions: Some(conditions),
            host_ip: Some(self.host_ip.clone()),
            host_ips: Some(vec![HostIP {
                ip: self.host_ip.clone(),
            }]),
            pod_ip: self.pod_ip.clone(),
            pod_ips: self.pod_ip.clone().map(|ip| vec![PodIP { ip }]),
            start_time: self.start_time.map(time),
            init_container_statuses: (!self.init.is_empty())
                .then(|| self.init.iter().map(container_status).collect()),
            container_statuses: Some(self.containers.iter().map(container_status).collect()),
            reason: self.ended.as_ref().and_then(|e| e.reason.clone()),
            message: self
                .ended
                .as_ref()
                .and_then(|e| e.message.clone())
                .or_else(|| self.message.clone()),
            ..PodStatus::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exit(code: i32) -> State {
        State::Terminated {
            exit: Exit {
                exit_code: code,
                signal: None,
                reason: if code == 0 { "Completed" } else { "Error" },
                message: None,
                started_at: Timestamp::now(),
                finished_at: Timestamp::now(),
            },
            container_id: "node-agent://x".into(),
        }
    }

    fn view(policy: &str, states: Vec<State>) -> View {
        View {
            restart_policy: policy.into(),
            containers: states
                .into_iter()
                .enumerate()
                .map(|(i, s)| ContainerView {
                    state: s,
                    ..ContainerView::new(&format!("c{i}"), "img")
                })
                .collect(),
            ..View::default()
        }
    }

    #[test]
    fn phases_follow_the_kubelet() {
        let running = State::Running {
            started_at: Timestamp::now(),
        };
        assert_eq!(view("Always", vec![running.clone()]).phase(), "Running");
        assert_eq!(view("Never", vec![exit(0), exit(0)]).phase(), "Succeeded");
        assert_eq!(view("Never", vec![exit(0), exit(3)]).phase(), "Failed");
        assert_eq!(
            view("OnFailure", vec![exit(3)]).phase(),
            "Running",
            "OnFailure restarts it"
        );
        assert_eq!(view("Never", vec![exit(0), running]).phase(), "Running");
        let waiting = State::Waiting {
            reason: "ContainerCreating".into(),
            message: None,
        };
        assert_eq!(view("Always", vec![waiting]).phase(), "Pending");
        let mut v = view("Never", vec![exit(1)]);
        v.init = vec![ContainerView::new("init", "img")];
        assert_eq!(v.phase(), "Pending", "init containers not done");
    }

    #[test]
    fn conditions_keep_their_transition_times() {
        let mut v = view(
            "Always",
            vec![State::Running {
                started_at: Timestamp::now(),
            }],
        );
        v.sandbox_ready = true;
        let first = v.status();
        let ready = |s: &PodStatus| {
            s.conditions
                .as_ref()
                .unwrap()
                .iter()
                .find(|c| c.type_ == "Ready")
                .cloned()
                .unwrap()
        };
        assert_eq!(ready(&first).status, "False");
        assert!(ready(&first).message.unwrap().contains("[c0]"));
        let again = v.status();
        assert_eq!(
            ready(&first).last_transition_time,
            ready(&again).last_transition_time
        );
        v.containers[0].ready = true;
        assert_eq!(ready(&v.status()).status, "True");
    }
}
