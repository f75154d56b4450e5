//! What a run is made of, before anything starts: the ScaledObject (a file, the repository's default, or the copy
//! built in), the load profile, both time-scaled, and how long to watch the scale-down after the load.

use std::time::Duration;

use autoscaler::ScalingConfig;
use chaos_spec::ChaosSpec;
use load::profile::Profile;

use crate::keda::check_trigger;
use crate::{LabArgs, LabError};

/// The project's default ScaledObject, built in so the lab runs from any directory.
pub(crate) const BUILTIN_SCALEDOBJECT: &str =
    include_str!("../../manifests/components/keda/scaledobject.yaml");
/// Where the default ScaledObject lives in the repository (preferred when it exists: edits take effect).
pub(crate) const DEFAULT_SCALEDOBJECT_PATH: &str = "manifests/components/keda/scaledobject.yaml";

/// The Kafka scenario's ScaledObject (the consumer in Kafka mode, this scaler's `kafka` trigger), built in.
pub(crate) const BUILTIN_KAFKA_SCALEDOBJECT: &str =
    include_str!("../../manifests/components/keda/scaledobject-kafka.yaml");
/// Where the Kafka scenario's ScaledObject lives in the repository.
pub(crate) const KAFKA_SCALEDOBJECT_PATH: &str =
    "manifests/components/keda/scaledobject-kafka.yaml";

/// Resolve the ScaledObject: the given file, the repository's default, or the built-in copy.
pub(crate) fn load_scaledobject(args: &LabArgs) -> Result<(String, ScalingConfig), LabError> {
    load_scaledobject_from(args, DEFAULT_SCALEDOBJECT_PATH, BUILTIN_SCALEDOBJECT)
}

/// [`load_scaledobject`] with another default (the Kafka scenario's).
pub(crate) fn load_scaledobject_from(
    args: &LabArgs,
    default_path: &str,
    builtin: &str,
) -> Result<(String, ScalingConfig), LabError> {
    let (origin, text) = match &args.scaledobject {
        Some(path) => (
            path.display().to_string(),
            std::fs::read_to_string(path).map_err(|e| {
                LabError::Usage(format!(
                    "cannot read --scaledobject {}: {e}",
                    path.display()
                ))
            })?,
        ),
        None => match std::fs::read_to_string(default_path) {
            Ok(text) => (default_path.to_string(), text),
            Err(_) => (
                format!("{default_path} (built-in copy)"),
                builtin.to_string(),
            ),
        },
    };
    let config = scaledobject_from_text(&origin, &text, args)?;
    Ok((origin, config))
}

/// A ScaledObject's text checked as every run checks it (the CRD's and webhook's rules, the lab's trigger kinds),
/// with `--max-replicas` applied and time-scaled.
pub(crate) fn scaledobject_from_text(
    origin: &str,
    text: &str,
    args: &LabArgs,
) -> Result<ScalingConfig, LabError> {
    let spec_error = |source| LabError::Spec {
        path: origin.to_string(),
        source,
    };
    let mut config = ScalingConfig::from_yaml(text).map_err(spec_error)?;
    for trigger in &config.triggers {
        check_trigger(trigger).map_err(|m| LabError::Usage(format!("{origin}: {m}")))?;
    }
    if let Some(max) = args.max_replicas {
        config.max_replica_count = max;
        config.min_replica_count = config.min_replica_count.min(max);
    }
    config.time_scaled(args.time_scale).map_err(spec_error)
}

pub(crate) fn load_profile(args: &LabArgs) -> Result<Profile, LabError> {
    let profile = match Profile::builtin(&args.test) {
        Some(p) => p,
        None => {
            let path = std::path::Path::new(&args.test);
            if path.is_file() {
                Profile::from_file(path).map_err(|e| LabError::Usage(e.to_string()))?
            } else {
                return Err(LabError::Usage(format!(
                    "--test {:?} is neither a built-in profile ({}) nor a profile file",
                    args.test,
                    Profile::builtin_names().join(", ")
                )));
            }
        }
    };
    let mut profile = profile;
    for text in &args.chaos {
        let spec = ChaosSpec::parse_flag(text).map_err(|e| LabError::Usage(e.to_string()))?;
        profile.chaos.push(spec);
    }
    // The flag's faults get the profile's checks too (inside the load).
    profile
        .validate()
        .map_err(|e| LabError::Usage(format!("--chaos: {e}")))?;
    Ok(profile.scale_time(args.time_scale))
}

/// How long to watch after the load for the scale-down: stabilization, enough policy periods to halve
/// from max to min, the cooldown when scaling to zero, and a few polls.
pub(crate) fn default_settle(config: &ScalingConfig) -> Duration {
    let down = &config.scale_down;
    let halvings = (config.max_replica_count.max(2) as f64).log2().ceil() as u32;
    let mut settle =
        down.stabilization_window + down.longest_period() * halvings + config.polling_interval * 4;
    if config.min_replica_count == 0 {
        settle += config.cooldown_period;
    }
    settle.max(Duration::from_secs(5)) + Duration::from_secs(3)
}
