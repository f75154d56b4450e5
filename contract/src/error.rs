//! The project's one JSON error shape over HTTP, used by the consumer and the lab's console:
//! `{"error", "message", "field"?, "value"?, "allowed"?, ...details}`. A bad field names itself, echoes the value as
//! it came and says what is allowed; figures beyond those (a memory budget, a YAML line and column) are details at
//! the top level of the same object.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The JSON error body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    /// Machine-readable code, e.g. `out_of_range`, `invalid_type`, `unknown_field`, `invalid_json`, `invalid_yaml`,
    /// `queue_full`, `memory_budget_exceeded`, `draining`, `run_active`, `unauthorized`, `not_found`.
    pub error: String,
    /// Human-readable explanation.
    pub message: String,
    /// The request field at fault, when one is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// The value given for that field, echoed as it came: a string, number, boolean, array, object or null.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(schema_with = any_json_value))]
    pub value: Option<Value>,
    /// The allowed range or set for that field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed: Option<String>,
    /// Extra figures for some errors (e.g. `budget_bytes`, `held_bytes`, `requested_bytes`; `line`, `column`).
    #[serde(flatten)]
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub details: Map<String, Value>,
}

impl ErrorBody {
    pub fn new(code: &str, message: impl Into<String>) -> ErrorBody {
        ErrorBody {
            error: code.to_owned(),
            message: message.into(),
            field: None,
            value: None,
            allowed: None,
            details: Map::new(),
        }
    }

    /// The field at fault, the value given and what is allowed.
    pub fn at_field(mut self, field: &str, value: Value, allowed: impl Into<String>) -> ErrorBody {
        self.field = Some(field.to_owned());
        self.value = Some(value);
        self.allowed = Some(allowed.into());
        self
    }

    /// Sets a detail, or removes it with `None`.
    pub fn set_detail(&mut self, key: &str, value: Option<impl Into<Value>>) {
        match value {
            Some(v) => {
                self.details.insert(key.to_owned(), v.into());
            }
            None => {
                self.details.remove(key);
            }
        }
    }

    /// A detail that is a whole number (a line, a byte count).
    pub fn detail_u64(&self, key: &str) -> Option<u64> {
        self.details.get(key).and_then(Value::as_u64)
    }
}

/// Any JSON value (no `type`): what a client sent, echoed back.
#[cfg(feature = "openapi")]
fn any_json_value() -> utoipa::openapi::schema::Object {
    utoipa::openapi::schema::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::SchemaType::AnyValue)
        .description(Some(
            "The value given for that field, echoed as it came (any JSON value).",
        ))
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn details_sit_beside_the_fields_and_absent_ones_are_left_out() {
        let mut body = ErrorBody::new("invalid_yaml", "bad").at_field(
            "profile_yaml",
            Value::from("x: ["),
            "a profile",
        );
        body.set_detail("line", Some(3u64));
        body.set_detail("column", None::<u64>);
        let json = serde_json::to_value(&body).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"error": "invalid_yaml", "message": "bad", "field": "profile_yaml",
                "value": "x: [", "allowed": "a profile", "line": 3})
        );
        assert_eq!(body.detail_u64("line"), Some(3));
        let back: ErrorBody = serde_json::from_value(json).unwrap();
        assert_eq!(back, body);
        let plain = serde_json::to_value(ErrorBody::new("not_found", "no run")).unwrap();
        assert_eq!(
            plain,
            serde_json::json!({"error": "not_found", "message": "no run"})
        );
    }
}
