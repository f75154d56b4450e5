//! The built-in profiles (`generator profiles` lists them): the seed's named load shapes and the lab demo.

use std::time::Duration;

use super::{Profile, RequestSpec, Stage};
use chaos_spec::{ChaosAction, ChaosSpec, ChaosTarget};

pub(crate) const BUILTIN_NAMES: &[&str] = &[
    "light",
    "medium",
    "heavy",
    "burst",
    "memory-stress",
    "cpu-stress",
    "sustained",
    "demo",
    "demo-chaos",
];

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn hold(seconds: u64, rate: f64, name: &str) -> Stage {
    Stage {
        name: Some(name.to_string()),
        duration: secs(seconds),
        rate,
        ramp: false,
    }
}

fn ramp(seconds: u64, rate: f64, name: &str) -> Stage {
    Stage {
        name: Some(name.to_string()),
        duration: secs(seconds),
        rate,
        ramp: true,
    }
}

fn req(path: &str, body: serde_json::Value, weight: u32) -> RequestSpec {
    RequestSpec {
        name: None,
        method: "POST".into(),
        path: path.into(),
        body: Some(body),
        weight,
    }
}

impl Profile {
    /// Names of the built-in profiles, in the order `generator profiles` lists them.
    pub fn builtin_names() -> &'static [&'static str] {
        BUILTIN_NAMES
    }

    /// A built-in profile by name (`cpu_stress` and `cpu-stress` both work, as the seed's Jobs write either).
    pub fn builtin(name: &str) -> Option<Profile> {
        use serde_json::json;
        let name = name.trim().to_ascii_lowercase().replace('_', "-");
        let p = |n: &str, d: &str, start: f64, stages: Vec<Stage>, requests: Vec<RequestSpec>| {
            Some(Profile {
                name: n.into(),
                description: d.into(),
                start_rate: start,
                stages,
                requests,
                recycle_connections: true,
                chaos: Vec::new(),
                chaos_thresholds: None,
            })
        };
        match name.as_str() {
            "light" => p(
                "light",
                "Baseline: ~5 min at a few req/s of async work; should stay at the minimum replica count.",
                0.0,
                vec![
                    ramp(30, 5.0, "warm-up"),
                    hold(240, 5.0, "steady"),
                    ramp(30, 0.0, "ramp-down"),
                ],
                vec![
                    req("/load/io", json!({"delay_ms": 100, "mode": "async"}), 6),
                    req("/load/cpu", json!({"duration_ms": 50, "mode": "async"}), 3),
                    req(
                        "/load/memory",
                        json!({"size_mb": 8, "duration_ms": 1000, "mode": "async"}),
                        1,
                    ),
                ],
            ),
            "medium" => p(
                "medium",
                "Realistic moderate load: ~8 min, ramps to 15 req/s; a small scale-up is expected.",
                0.0,
                vec![
                    ramp(60, 15.0, "ramp-up"),
                    hold(360, 15.0, "steady"),
                    ramp(60, 0.0, "ramp-down"),
                ],
                vec![
                    req("/load/io", json!({"delay_ms": 200, "mode": "async"}), 6),
                    req("/load/cpu", json!({"duration_ms": 100, "mode": "async"}), 3),
                    req(
                        "/load/memory",
                        json!({"size_mb": 16, "duration_ms": 2000, "mode": "async"}),
                        1,
                    ),
                ],
            ),
            "heavy" => p(
                "heavy",
                "Immediate scale-up: ~10 min, jumps straight to 40 req/s of async work, well past one replica.",
                40.0,
                vec![hold(540, 40.0, "peak"), ramp(60, 0.0, "ramp-down")],
                vec![
                    req("/load/io", json!({"delay_ms": 300, "mode": "async"}), 6),
                    req("/load/cpu", json!({"duration_ms": 200, "mode": "async"}), 3),
                    req(
                        "/load/memory",
                        json!({"size_mb": 16, "duration_ms": 2000, "mode": "async"}),
                        1,
                    ),
                ],
            ),
            "burst" => {
                let mut stages = Vec::new();
                for i in 0..5 {
                    stages.push(hold(30, 5.0, &format!("calm-{}", i + 1)));
                    stages.push(hold(30, 80.0, &format!("spike-{}", i + 1)));
                }
                p(
                    "burst",
                    "High-concurrency spikes: ~5 min alternating 30 s at 5 req/s and 30 s at 80 req/s.",
                    5.0,
                    stages,
                    vec![
                        req("/load/io", json!({"delay_ms": 200, "mode": "async"}), 8),
                        req("/load/cpu", json!({"duration_ms": 50, "mode": "async"}), 2),
                    ],
                )
            }
            "memory-stress" => p(
                "memory-stress",
                "Memory-based scaling: ~10 min of async 32 MiB allocations held 3 s at up to 4 req/s (~400 MiB held).",
                0.0,
                vec![
                    ramp(60, 4.0, "ramp-up"),
                    hold(480, 4.0, "steady"),
                    ramp(60, 0.0, "ramp-down"),
                ],
                vec![req(
                    "/load/memory",
                    json!({"size_mb": 32, "duration_ms": 3000, "mode": "async"}),
                    1,
                )],
            ),
            "cpu-stress" => p(
                "cpu-stress",
                "CPU-intensive blocking requests: ~10 min of sync 200 ms CPU burns at up to 8 req/s (~1.6 cores).",
                0.0,
                vec![
                    ramp(60, 8.0, "ramp-up"),
                    hold(480, 8.0, "steady"),
                    ramp(60, 0.0, "ramp-down"),
                ],
                vec![req(
                    "/load/cpu",
                    json!({"duration_ms": 200, "complexity": 5, "mode": "sync"}),
                    1,
                )],
            ),
            "sustained" => p(
                "sustained",
                "Scale-up/down cycle: ~30 min, two 10-minute peaks at 30 req/s separated by quiet phases, with \
                 sustained background CPU jobs.",
                2.0,
                vec![
                    hold(180, 2.0, "quiet-1"),
                    ramp(60, 30.0, "ramp-up-1"),
                    hold(420, 30.0, "peak-1"),
                    ramp(60, 2.0, "ramp-down-1"),
                    hold(300, 2.0, "quiet-2"),
                    ramp(60, 30.0, "ramp-up-2"),
                    hold(420, 30.0, "peak-2"),
                    ramp(60, 2.0, "ramp-down-2"),
                    hold(240, 2.0, "cool-down"),
                ],
                vec![
                    req("/load/io", json!({"delay_ms": 300, "mode": "async"}), 70),
                    req(
                        "/load/cpu",
                        json!({"duration_ms": 100, "mode": "async"}),
                        29,
                    ),
                    req(
                        "/load/cpu/sustained",
                        json!({"workers": 1, "duration_seconds": 30, "complexity": 5}),
                        1,
                    ),
                ],
            ),
            "demo" => p(
                "demo",
                "The local lab's demo: ~90 s on 2 cores. Sync 200 ms I/O requests, each holding an executor slot; 50 req/s \
                 saturates one 4-executor replica (~20 req/s) 2.5x, then back to 5 req/s, so the backlog and the latency \
                 the client sees rise on one replica and fall as replicas are added.",
                5.0,
                vec![
                    hold(10, 5.0, "baseline"),
                    ramp(5, 50.0, "ramp-up"),
                    hold(35, 50.0, "peak"),
                    ramp(5, 5.0, "ramp-down"),
                    hold(35, 5.0, "recovery"),
                ],
                vec![req("/load/io", json!({"delay_ms": 200, "mode": "sync"}), 1)],
            ),
            "demo-chaos" => {
                let mut demo = Profile::builtin("demo")?;
                demo.name = "demo-chaos".into();
                demo.description = "The demo under faults: at 30 s (the peak) one replica is killed (SIGKILL, \
                     replaced after the restart back-off), at 42 s one is frozen for 6 s (SIGSTOP: it leaves the \
                     targets when its readiness fails and returns after SIGCONT). The lab reports what each cost."
                    .into();
                // The seed's recovery targets, at the demo's scale: self-healing within 30 s, loss under 1 %.
                demo.chaos_thresholds = Some("recovery<30s,lost<1%".into());
                demo.chaos = vec![
                    ChaosSpec {
                        at: secs(30),
                        action: ChaosAction::Kill,
                        target: Some(ChaosTarget::Replica),
                        duration: None,
                    },
                    ChaosSpec {
                        at: secs(42),
                        action: ChaosAction::Freeze,
                        target: Some(ChaosTarget::Replica),
                        duration: Some(secs(6)),
                    },
                ];
                Some(demo)
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_exists_and_validates() {
        for name in Profile::builtin_names() {
            let p = Profile::builtin(name).unwrap();
            p.validate().unwrap();
            assert_eq!(&p.name, name);
        }
        assert_eq!(Profile::builtin("cpu_stress").unwrap().name, "cpu-stress");
        assert!(Profile::builtin("nope").is_none());
    }

    #[test]
    fn seed_durations() {
        let minutes = |n: &str| Profile::builtin(n).unwrap().duration().as_secs_f64() / 60.0;
        assert_eq!(minutes("light"), 5.0);
        assert_eq!(minutes("medium"), 8.0);
        assert_eq!(minutes("heavy"), 10.0);
        assert_eq!(minutes("burst"), 5.0);
        assert_eq!(minutes("memory-stress"), 10.0);
        assert_eq!(minutes("cpu-stress"), 10.0);
        assert_eq!(minutes("sustained"), 30.0);
        assert_eq!(minutes("demo"), 1.5);
        assert_eq!(minutes("demo-chaos"), 1.5);
        assert_eq!(Profile::builtin("demo-chaos").unwrap().chaos.len(), 2);
    }
}
