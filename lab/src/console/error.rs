//! The console's HTTP errors in the project's one JSON shape (the consumer's: `error`, `message`, and `field`,
//! `value`, `allowed` when one field is at fault), plus `line`/`column` for YAML the parser located.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::Value;

pub use contract::error::ErrorBody;

/// An HTTP error: status and body.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub body: Box<ErrorBody>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            body: Box::new(ErrorBody::new(code, message)),
        }
    }

    /// 422 for one field: what was given and what is allowed.
    pub fn field(field: &str, value: Value, allowed: &str, message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            body: Box::new(
                ErrorBody::new("invalid_field", message).at_field(field, value, allowed),
            ),
        }
    }

    /// 422 for a YAML document that does not parse or validate; line and column when the message carries them
    /// (serde_norway says `at line L column C`).
    pub fn yaml(field: &str, message: impl Into<String>) -> ApiError {
        let message = message.into();
        let mut e = ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_yaml",
            message.clone(),
        );
        e.body.field = Some(field.into());
        let (line, column) = locate(&message);
        e.set_position(line, column);
        e
    }

    /// Where in a document the error is (`line`, `column` beside the fields); `None` removes one.
    pub fn set_position(&mut self, line: Option<u64>, column: Option<u64>) {
        self.body.set_detail("line", line);
        self.body.set_detail("column", column);
    }

    /// The document line of the error, when known.
    pub fn line(&self) -> Option<u64> {
        self.body.detail_u64("line")
    }

    pub fn not_found(id: &str) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("no run {id:?}"))
    }

    pub fn conflict(code: &str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, code, message)
    }

    pub fn io(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "io", message)
    }
}

impl From<std::io::Error> for ApiError {
    fn from(e: std::io::Error) -> ApiError {
        ApiError::io(format!("writing the run's files: {e}"))
    }
}

/// `line N` and `column M` in a parser's message.
fn locate(message: &str) -> (Option<u64>, Option<u64>) {
    let after = |word: &str| {
        message
            .rfind(word)
            .and_then(|i| {
                message[i + word.len()..]
                    .split(|c: char| !c.is_ascii_digit())
                    .next()
            })
            .and_then(|n| n.parse().ok())
    };
    (after("line "), after("column "))
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(*self.body)).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_errors_carry_line_and_column() {
        let e = ApiError::yaml(
            "profile_yaml",
            "stages[0]: invalid type: string \"x\", expected f64 at line 3 column 9",
        );
        assert_eq!((e.line(), e.body.detail_u64("column")), (Some(3), Some(9)));
        let e = ApiError::yaml(
            "profile_yaml",
            "profile field `stages` at line 4: must not be empty",
        );
        assert_eq!((e.line(), e.body.detail_u64("column")), (Some(4), None));
        assert_eq!(ApiError::yaml("x", "no position").line(), None);
    }
}
