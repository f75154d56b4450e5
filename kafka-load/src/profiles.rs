//! The built-in Kafka profiles: the seed's three scenarios (1k messages at 100/s, 10k at 1k/s, 1M at 10k/s) plus a
//! ramp and a burst. They are [`Profile`]s so the HTTP engine's schedule drives them; their request mix is empty
//! because a Kafka message has no endpoint.

use std::time::Duration;

use load::profile::{Profile, Stage};

/// Names of the built-in Kafka profiles, in `generator profiles` order.
pub const NAMES: [&str; 5] = [
    "kafka-light",
    "kafka-medium",
    "kafka-heavy",
    "kafka-ramp",
    "kafka-burst",
];

fn stage(secs: u64, rate: f64, ramp: bool) -> Stage {
    Stage {
        name: None,
        duration: Duration::from_secs(secs),
        rate,
        ramp,
    }
}

fn profile(name: &str, description: &str, stages: Vec<Stage>) -> Profile {
    Profile {
        name: name.to_string(),
        description: description.to_string(),
        start_rate: 0.0,
        stages,
        requests: Vec::new(),
        recycle_connections: false,
        chaos: Vec::new(),
        chaos_thresholds: None,
    }
}

/// A built-in Kafka profile by name.
pub fn builtin(name: &str) -> Option<Profile> {
    Some(match name {
        "kafka-light" => profile(
            name,
            "The seed's light scenario: 1,000 messages at 100/s.",
            vec![stage(10, 100.0, false)],
        ),
        "kafka-medium" => profile(
            name,
            "The seed's medium scenario: 10,000 messages at 1,000/s.",
            vec![stage(10, 1000.0, false)],
        ),
        "kafka-heavy" => profile(
            name,
            "The seed's heavy scenario: 1,000,000 messages at 10,000/s.",
            vec![stage(100, 10_000.0, false)],
        ),
        "kafka-ramp" => profile(
            name,
            "Ramp 0 to 2,000/s over 60s, hold 60s, ramp down over 60s: consumer lag grows, then drains.",
            vec![
                stage(60, 2000.0, true),
                stage(60, 2000.0, false),
                stage(60, 0.0, true),
            ],
        ),
        "kafka-burst" => profile(
            name,
            "200/s, a 20s burst at 5,000/s, back to 200/s: lag spikes and the consumers must catch up.",
            vec![
                stage(30, 200.0, false),
                stage(20, 5000.0, false),
                stage(60, 200.0, false),
            ],
        ),
        _ => return None,
    })
}

/// The `generator profiles` rows of the Kafka profiles.
pub fn table() -> String {
    let mut s = format!(
        "\n{:<14} {:>9} {:>10} {:>10}  {}\n",
        "kafka profile", "duration", "peak msg/s", "messages", "stages"
    );
    for name in NAMES {
        let p = builtin(name).expect("builtin");
        s.push_str(&format!(
            "{:<14} {:>9} {:>10.0} {:>10.0}  {}\n{:<14} {:>9} {:>10} {:>10}  {}\n",
            p.name,
            humantime::format_duration(p.duration()).to_string(),
            p.peak_rate(),
            p.expected_requests(),
            p.stages_summary(),
            "",
            "",
            "",
            "",
            p.description
        ));
    }
    s.push_str("`generator produce --test NAME` runs one against a topic.\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_scenarios_send_what_they_say() {
        let count = |n: &str| builtin(n).unwrap().expected_requests().round() as u64;
        assert_eq!(count("kafka-light"), 1_000);
        assert_eq!(count("kafka-medium"), 10_000);
        assert_eq!(count("kafka-heavy"), 1_000_000);
        assert_eq!(builtin("kafka-heavy").unwrap().peak_rate(), 10_000.0);
        assert!(builtin("heavy").is_none());
        let t = table();
        for n in NAMES {
            assert!(t.contains(n), "{n} not listed");
        }
    }
}
