//! The start form and the documents the page edits, checked field by field before anything starts: a JSON body is
//! read as a plain object so a wrong type names its field, the profile and the ScaledObject go through the same
//! parsing and checks as the lab's own (`Profile::from_yaml`, `setup::scaledobject_from_text`).

use std::path::Path;

use autoscaler::ScalingConfig;
use load::profile::{Profile, ProfileError};
use serde_json::{Map, Value};

use super::error::ApiError;
use crate::scaling::SloChoice;
use crate::setup::{
    BUILTIN_SCALEDOBJECT, DEFAULT_SCALEDOBJECT_PATH, load_scaledobject, scaledobject_from_text,
};
use crate::{LabArgs, LabError};

const TIME_SCALE: (f64, f64) = (0.01, 10.0);
const RATE: (f64, f64) = (0.1, 10.0);
const DURATION: (f64, f64) = (1.0, 86_400.0);
const MAX_REPLICAS: (u64, u64) = (1, 64);
const LABEL_MAX: usize = 200;

/// A start request, checked.
#[derive(Debug, Clone)]
pub struct StartForm {
    pub profile: Profile,
    pub time_scale: f64,
    pub rate_multiplier: f64,
    pub scaledobject_yaml: Option<String>,
    pub max_replicas: Option<u32>,
    pub slo: Option<String>,
    pub label: Option<String>,
}

/// A JSON body as an object (422 `invalid_json` otherwise, with the parser's line and column).
pub fn object(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        let mut error = ApiError::new(
            axum::http::StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_json",
            format!("the body is not JSON: {e}"),
        );
        error.set_position(Some(e.line() as u64), Some(e.column() as u64));
        error
    })?;
    match value {
        Value::Object(map) => Ok(map),
        other => Err(ApiError::field(
            "body",
            other,
            "a JSON object",
            "the body must be a JSON object",
        )),
    }
}

/// Refuse keys outside `known`.
/// Refuse the first key not in `known`, naming the allowed ones.
pub fn only(map: &Map<String, Value>, known: &[&str]) -> Result<(), ApiError> {
    match map.keys().find(|k| !known.contains(&k.as_str())) {
        Some(key) => Err(ApiError::field(
            key,
            map[key].clone(),
            &known.join(", "),
            format!("unknown field {key:?}"),
        )),
        None => Ok(()),
    }
}

fn string(map: &Map<String, Value>, key: &str) -> Result<Option<String>, ApiError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(ApiError::field(
            key,
            other.clone(),
            "a string",
            format!("{key} must be a string"),
        )),
    }
}

/// A number in `[lo, hi]`.
pub fn number(
    map: &Map<String, Value>,
    key: &str,
    (lo, hi): (f64, f64),
) -> Result<Option<f64>, ApiError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_f64() {
            Some(x) if x.is_finite() && (lo..=hi).contains(&x) => Ok(Some(x)),
            _ => Err(ApiError::field(
                key,
                v.clone(),
                &format!("{lo}..={hi}"),
                format!("{key} must be a number from {lo} to {hi}"),
            )),
        },
    }
}

fn integer(
    map: &Map<String, Value>,
    key: &str,
    (lo, hi): (u64, u64),
) -> Result<Option<u32>, ApiError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_u64() {
            Some(x) if (lo..=hi).contains(&x) => Ok(Some(x as u32)),
            _ => Err(ApiError::field(
                key,
                v.clone(),
                &format!("{lo}..={hi}"),
                format!("{key} must be a whole number from {lo} to {hi}"),
            )),
        },
    }
}

/// `POST /api/runs`'s body.
pub fn start_form(body: &[u8]) -> Result<StartForm, ApiError> {
    let map = object(body)?;
    only(
        &map,
        &[
            "profile",
            "profile_yaml",
            "time_scale",
            "rate_multiplier",
            "duration_s",
            "scaledobject_yaml",
            "max_replicas",
            "slo",
            "label",
        ],
    )?;
    let name = string(&map, "profile")?;
    let yaml = string(&map, "profile_yaml")?;
    let mut profile = match (name, yaml) {
        (Some(_), Some(_)) => {
            return Err(ApiError::field(
                "profile_yaml",
                map["profile_yaml"].clone(),
                "either profile or profile_yaml",
                "give a built-in profile name or a profile's YAML, not both",
            ));
        }
        (None, Some(yaml)) => profile_from_yaml("profile_yaml", &yaml)?,
        (name, None) => {
            let name = name.unwrap_or_else(|| "demo".into());
            Profile::builtin(&name).ok_or_else(|| {
                ApiError::field(
                    "profile",
                    Value::String(name.clone()),
                    &Profile::builtin_names().join(", "),
                    format!("{name:?} is not a built-in profile"),
                )
            })?
        }
    };
    if let Some(seconds) = number(&map, "duration_s", DURATION)? {
        profile = profile.with_duration(std::time::Duration::from_secs_f64(seconds));
    }
    let time_scale = number(&map, "time_scale", TIME_SCALE)?.unwrap_or(0.5);
    let rate_multiplier = number(&map, "rate_multiplier", RATE)?.unwrap_or(1.0);
    let max_replicas = integer(&map, "max_replicas", MAX_REPLICAS)?;
    let slo = string(&map, "slo")?;
    if let Some(text) = &slo {
        SloChoice::resolve(Some(text)).map_err(|e| {
            ApiError::field(
                "slo",
                Value::String(text.clone()),
                "e.g. p95<500ms,errors<1% (p50, p90, p95, p99, p99.9 in ms or s; errors in %)",
                e.to_string(),
            )
        })?;
    }
    let label = string(&map, "label")?;
    if let Some(text) = label.as_ref().filter(|l| l.chars().count() > LABEL_MAX) {
        return Err(ApiError::field(
            "label",
            Value::String(text.clone()),
            &format!("at most {LABEL_MAX} characters"),
            "the label is too long",
        ));
    }
    let scaledobject_yaml = string(&map, "scaledobject_yaml")?;
    Ok(StartForm {
        profile,
        time_scale,
        rate_multiplier,
        scaledobject_yaml,
        max_replicas,
        slo,
        label,
    })
}

/// A profile's YAML parsed and checked as `--test FILE` is.
pub fn profile_from_yaml(field: &str, yaml: &str) -> Result<Profile, ApiError> {
    Profile::from_yaml(yaml).map_err(|e| {
        let mut error = ApiError::yaml(field, e.to_string());
        if let ProfileError::Invalid {
            field: at, line, ..
        } = &e
        {
            error.set_position(line.map(|l| l as u64), None);
            error.body.message = format!("{at}: {}", error.body.message);
        }
        error
    })
}

/// The ScaledObject a run would use: `yaml` when given, else the lab's default; checked as the lab checks it.
pub fn scaledobject(
    base: &LabArgs,
    yaml: Option<&str>,
    max_replicas: Option<u32>,
    time_scale: f64,
) -> Result<ScalingConfig, ApiError> {
    let mut args = base.clone();
    args.max_replicas = max_replicas.or(base.max_replicas);
    args.time_scale = time_scale;
    let result = match yaml {
        Some(text) => scaledobject_from_text("scaledobject_yaml", text, &args),
        None => load_scaledobject(&args).map(|(_, config)| config),
    };
    result.map_err(|e| {
        let mut error = match &e {
            LabError::Spec { source, .. } => {
                ApiError::yaml("scaledobject_yaml", source.to_string())
            }
            other => ApiError::yaml("scaledobject_yaml", other.to_string()),
        };
        if let Some(text) = yaml
            && error.line().is_none()
        {
            let (line, column) = match &e {
                LabError::Spec {
                    source: autoscaler::SpecError::Invalid { field, .. },
                    ..
                } => (find_key(text, field), None),
                // The spec's own parse goes through a YAML value and loses the position; parsing the document
                // straight into the same type finds it.
                _ => match serde_norway::from_str::<autoscaler::ScaledObject>(text) {
                    Err(parse) => parse.location().map_or((None, None), |l| {
                        (Some(l.line() as u64), Some(l.column() as u64))
                    }),
                    Ok(_) => (None, None),
                },
            };
            error.set_position(line, column);
        }
        error
    })
}

/// The line (1-based) of the first key named as the last segment of a field path like `spec.triggers[0].type`.
fn find_key(text: &str, field: &str) -> Option<u64> {
    let key = field.rsplit('.').next()?.split('[').next()?;
    if key.is_empty() {
        return None;
    }
    text.lines()
        .position(|line| {
            let line = line.trim_start().trim_start_matches("- ");
            line.strip_prefix(key)
                .is_some_and(|rest| rest.starts_with(':'))
        })
        .map(|i| i as u64 + 1)
}

/// The repository's ScaledObject as the lab would read it: (where from, text).
pub fn default_scaledobject(base: &LabArgs) -> (String, String) {
    if let Some(path) = &base.scaledobject
        && let Ok(text) = std::fs::read_to_string(path)
    {
        return (path.display().to_string(), text);
    }
    match std::fs::read_to_string(DEFAULT_SCALEDOBJECT_PATH) {
        Ok(text) => (DEFAULT_SCALEDOBJECT_PATH.to_string(), text),
        Err(_) => ("built-in".to_string(), BUILTIN_SCALEDOBJECT.to_string()),
    }
}

/// The lab's arguments for a console-started run whose files go to `dir`: the profile (and the ScaledObject, when
/// edited) written there, the results too.
pub fn lab_args(base: &LabArgs, form: &StartForm, dir: &Path) -> std::io::Result<LabArgs> {
    let mut args = base.clone();
    let profile_path = dir.join("profile.yaml");
    std::fs::write(&profile_path, form.profile.to_yaml())?;
    args.test = profile_path.display().to_string();
    if let Some(yaml) = &form.scaledobject_yaml {
        let path = dir.join("scaledobject.yaml");
        std::fs::write(&path, yaml)?;
        args.scaledobject = Some(path);
    }
    args.time_scale = form.time_scale;
    args.max_replicas = form.max_replicas.or(base.max_replicas);
    if form.slo.is_some() {
        args.slo = form.slo.clone();
    }
    args.out = dir.to_path_buf();
    args.live = "off".into();
    args.scenario = "http".into();
    Ok(args)
}

/// `POST /api/validate`: (kind, summary).
pub fn validate(base: &LabArgs, body: &[u8]) -> Result<String, ApiError> {
    let map = object(body)?;
    only(&map, &["kind", "yaml"])?;
    let yaml = string(&map, "yaml")?
        .ok_or_else(|| ApiError::field("yaml", Value::Null, "a string", "yaml is required"))?;
    match string(&map, "kind")?.as_deref() {
        Some("profile") => {
            let p = profile_from_yaml("yaml", &yaml)?;
            Ok(format!(
                "profile {}: {} stages, {:.0} s, peak {:.1} req/s, {}",
                p.name,
                p.stages.len(),
                p.duration().as_secs_f64(),
                p.peak_rate(),
                p.mix_summary()
            ))
        }
        Some("scaledobject") => {
            let c = scaledobject(base, Some(&yaml), None, 1.0).map_err(|mut e| {
                e.body.field = Some("yaml".into());
                e
            })?;
            Ok(format!(
                "ScaledObject {}: replicas {}..{}, triggers {}",
                c.name,
                c.min_replica_count,
                c.max_replica_count,
                c.triggers
                    .iter()
                    .map(|t| format!("{} ({})", t.name, t.metric_type))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        }
        other => Err(ApiError::field(
            "kind",
            other.map_or(Value::Null, |k| Value::String(k.into())),
            "profile, scaledobject",
            "kind must be profile or scaledobject",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_found_by_the_last_segment_of_their_path() {
        let text = "spec:\n  minReplicaCount: 1\n  triggers:\n  - type: cpu\n";
        assert_eq!(find_key(text, "spec.minReplicaCount"), Some(2));
        assert_eq!(find_key(text, "spec.triggers[0].type"), Some(4));
        assert_eq!(find_key(text, "spec.maxReplicaCount"), None);
    }
}
