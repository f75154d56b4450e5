//! A profile's `chaos:` list read from YAML: the fields and checks of `chaos_spec`, each error named with its line.

use std::time::Duration;

use chaos_spec::ChaosTarget;

use crate::profile::Profile;

fn demo_with(chaos: &str) -> String {
    format!(
        "name: x\nstages:\n  - duration: 30s\n    rate: 5\nrequests:\n  - path: /load/io\nchaos:\n{chaos}"
    )
}

#[test]
fn a_chaos_list_parses_with_defaults() {
    let p = Profile::from_yaml(&demo_with(
            "  - at: 10s\n    action: kill\n  - {at: 12s, action: freeze, target: replica-2, duration: 3s}\n  - at: 15s\n    action: kill-scaler\n",
        ))
        .unwrap();
    assert_eq!(p.chaos.len(), 3);
    assert_eq!(p.chaos[0].target(), ChaosTarget::Replica);
    assert_eq!(p.chaos[1].target(), ChaosTarget::ReplicaN(2));
    assert_eq!(p.chaos[1].duration, Some(Duration::from_secs(3)));
    assert_eq!(p.chaos[2].target(), ChaosTarget::Scaler);
    assert_eq!(Profile::from_yaml(&p.to_yaml()).unwrap(), p);
    let scaled = p.scale_time(0.5);
    assert_eq!(scaled.chaos[1].at, Duration::from_secs(6));
    assert_eq!(scaled.chaos[1].duration, Some(Duration::from_millis(1500)));
}

#[test]
fn bad_chaos_fields_are_named_with_their_line() {
    let err = |chaos: &str| {
        Profile::from_yaml(&demo_with(chaos))
            .unwrap_err()
            .to_string()
    };
    let e = err("  - at: 10s\n    action: explode\n");
    assert!(e.contains("explode") && e.contains("kill-scaler"), "{e}");
    let e = err("  - at: soon\n    action: kill\n");
    assert!(e.contains("invalid duration \"soon\""), "{e}");
    let e = err("  - at: 40s\n    action: kill\n");
    assert!(
        e.contains("chaos[0].at") && e.contains("line 8") && e.contains("not inside the load"),
        "{e}"
    );
    let e = err("  - at: 10s\n    action: kill\n  - at: 11s\n    action: freeze\n");
    assert!(
        e.contains("chaos[1].duration") && e.contains("line 10") && e.contains("required"),
        "{e}"
    );
    let e = err("  - {at: 10s, action: terminate, duration: 2s}\n");
    assert!(
        e.contains("chaos[0].duration") && e.contains("not allowed"),
        "{e}"
    );
    let e = err("  - {at: 10s, action: kill-scaler, target: replica}\n");
    assert!(
        e.contains("chaos[0].target") && e.contains("does not fit"),
        "{e}"
    );
    let e = err("  - {at: 10s, action: kill, target: pod-1}\n");
    assert!(e.contains("invalid target \"pod-1\""), "{e}");
    let e = err("  - {at: 10s, action: freeze, duration: 0s}\n");
    assert!(e.contains("chaos[0].duration") && e.contains("> 0"), "{e}");
}

#[test]
fn stop_broker_in_yaml_needs_a_duration_and_fits_only_the_broker() {
    let yaml = |chaos: &str| Profile::from_yaml(&demo_with(chaos));
    let p = yaml("  - {at: 5s, action: stop-broker, duration: 4s}\n").unwrap();
    assert_eq!(p.chaos[0].target(), ChaosTarget::Broker);
    assert_eq!(Profile::from_yaml(&p.to_yaml()).unwrap(), p);
    let e = yaml("  - at: 5s\n    action: stop-broker\n")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("chaos[0].duration") && e.contains("line 8") && e.contains("stays down"),
        "{e}"
    );
    let e = yaml("  - {at: 5s, action: freeze, target: broker, duration: 1s}\n")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("chaos[0].target") && e.contains("does not fit"),
        "{e}"
    );
}
