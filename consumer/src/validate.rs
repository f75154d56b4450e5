//! Request-body validation: the body must be a JSON object (or empty); every field is checked for type and range,
//! unknown fields are refused, and each failure becomes a 422 naming the field, the value and what is allowed.

use std::ops::RangeInclusive;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde_json::{Map, Value};

use crate::error::ApiError;

/// Sync or async execution of a load request.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Answer when the work is done.
    Sync,
    /// Queue the work and answer 202 with a job id at once.
    Async,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Sync => crate::metrics::label::SYNC,
            Mode::Async => crate::metrics::label::ASYNC,
        }
    }
}

/// The parsed JSON object of a request body (an empty body is an empty object).
#[derive(Debug, Default)]
pub struct JsonObject(pub Map<String, Value>);

impl<S: Send + Sync> FromRequest<S> for JsonObject {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                ApiError::new(rejection.status(), "invalid_body", rejection.body_text())
            })?;
        parse_object(&bytes).map(JsonObject)
    }
}

/// Parses a body into a JSON object: empty or `null` means "all defaults".
pub fn parse_object(bytes: &[u8]) -> Result<Map<String, Value>, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    let value: Value = serde_json::from_slice(bytes).map_err(|error| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            format!("request body is not valid JSON: {error}"),
        )
    })?;
    match value {
        Value::Object(map) => Ok(map),
        Value::Null => Ok(Map::new()),
        other => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_type",
            format!(
                "request body must be a JSON object, got {}",
                type_name(&other)
            ),
        )
        .with_detail("value", other)),
    }
}

/// Typed access to the fields of a request object, each check producing the documented 422.
#[derive(Debug)]
pub struct Fields {
    map: Map<String, Value>,
}

impl Fields {
    /// Refuses any field not in `allowed` (the first unknown one is named).
    pub fn new(map: Map<String, Value>, allowed: &[&str]) -> Result<Fields, ApiError> {
        if let Some((name, value)) = map
            .iter()
            .find(|(name, _)| !allowed.contains(&name.as_str()))
        {
            return Err(ApiError::field(
                "unknown_field",
                name,
                value.clone(),
                allowed.join(", "),
                format!(
                    "unknown field `{name}`; known fields: {}",
                    allowed.join(", ")
                ),
            ));
        }
        Ok(Fields { map })
    }

    fn get(&self, name: &str) -> Option<&Value> {
        self.map.get(name).filter(|value| !value.is_null())
    }

    /// An integer field within `range`, `default` when absent or null.
    pub fn integer(
        &self,
        name: &str,
        range: RangeInclusive<u64>,
        default: u64,
    ) -> Result<u64, ApiError> {
        let Some(value) = self.get(name) else {
            return Ok(default);
        };
        let allowed = format!("{}..={}", range.start(), range.end());
        let as_integer = value
            .as_u64()
            .map(i128::from)
            .or_else(|| value.as_i64().map(i128::from))
            .or_else(|| {
                // Accept 100.0 but not 100.5.
                value
                    .as_f64()
                    .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e18)
                    .map(|f| f as i128)
            });
        match as_integer {
            None if value.is_number() => Err(ApiError::field(
                "invalid_type",
                name,
                value.clone(),
                format!("integer {allowed}"),
                format!("`{name}` must be a whole number in {allowed}"),
            )),
            None => Err(ApiError::field(
                "invalid_type",
                name,
                value.clone(),
                format!("integer {allowed}"),
                format!(
                    "`{name}` must be an integer in {allowed}, got {}",
                    type_name(value)
                ),
            )),
            Some(number)
                if number < i128::from(*range.start()) || number > i128::from(*range.end()) =>
            {
                Err(ApiError::field(
                    "out_of_range",
                    name,
                    value.clone(),
                    allowed.clone(),
                    format!("`{name}` must be in {allowed}, got {number}"),
                ))
            }
            Some(number) => Ok(number as u64),
        }
    }

    /// The `mode` field: `"sync"` (default) or `"async"`.
    pub fn mode(&self) -> Result<Mode, ApiError> {
        let Some(value) = self.get("mode") else {
            return Ok(Mode::Sync);
        };
        match value.as_str() {
            Some("sync") => Ok(Mode::Sync),
            Some("async") => Ok(Mode::Async),
            _ => Err(ApiError::field(
                "invalid_value",
                "mode",
                value.clone(),
                "\"sync\" | \"async\"",
                "`mode` must be \"sync\" or \"async\"",
            )),
        }
    }

    /// An optional UUID string field.
    pub fn uuid(&self, name: &str) -> Result<Option<uuid::Uuid>, ApiError> {
        let Some(value) = self.get(name) else {
            return Ok(None);
        };
        value
            .as_str()
            .and_then(|text| uuid::Uuid::parse_str(text).ok())
            .map(Some)
            .ok_or_else(|| {
                ApiError::field(
                    "invalid_value",
                    name,
                    value.clone(),
                    "a job id (UUID string)",
                    format!("`{name}` must be a job id (a UUID string)"),
                )
            })
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields(value: Value, allowed: &[&str]) -> Result<Fields, ApiError> {
        Fields::new(value.as_object().cloned().unwrap(), allowed)
    }

    #[test]
    fn integers_are_checked_for_range_and_type() {
        let f = fields(
            json!({"a": 5, "b": 0, "c": "x", "d": 2.5, "e": -3, "g": 7.0, "h": null}),
            &["a", "b", "c", "d", "e", "g", "h"],
        )
        .unwrap();
        assert_eq!(f.integer("a", 1..=10, 3).unwrap(), 5);
        assert_eq!(f.integer("missing", 1..=10, 3).unwrap(), 3);
        assert_eq!(f.integer("h", 1..=10, 3).unwrap(), 3);
        assert_eq!(f.integer("g", 1..=10, 3).unwrap(), 7);
        let err = f.integer("b", 1..=10, 3).unwrap_err();
        assert_eq!(err.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(err.body.error, "out_of_range");
        assert_eq!(err.body.field.as_deref(), Some("b"));
        assert_eq!(err.body.allowed.as_deref(), Some("1..=10"));
        assert_eq!(
            f.integer("c", 1..=10, 3).unwrap_err().body.error,
            "invalid_type"
        );
        assert_eq!(
            f.integer("d", 1..=10, 3).unwrap_err().body.error,
            "invalid_type"
        );
        assert_eq!(
            f.integer("e", 1..=10, 3).unwrap_err().body.error,
            "out_of_range"
        );
    }

    #[test]
    fn unknown_fields_and_bad_modes_are_refused() {
        let err = fields(json!({"nope": 1}), &["a"]).unwrap_err();
        assert_eq!(err.body.error, "unknown_field");
        assert_eq!(err.body.field.as_deref(), Some("nope"));
        let f = fields(json!({"mode": "later"}), &["mode"]).unwrap();
        assert_eq!(f.mode().unwrap_err().body.field.as_deref(), Some("mode"));
        let f = fields(json!({"mode": "async"}), &["mode"]).unwrap();
        assert_eq!(f.mode().unwrap(), Mode::Async);
    }

    #[test]
    fn bodies_must_be_objects() {
        assert!(parse_object(b"").unwrap().is_empty());
        assert!(parse_object(b"null").unwrap().is_empty());
        assert_eq!(
            parse_object(b"{").unwrap_err().status,
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            parse_object(b"[1]").unwrap_err().status,
            StatusCode::UNPROCESSABLE_ENTITY
        );
    }
}
