//! The `listening` log line: once a listener is bound, every binary of the lab logs an event with message `listening`
//! and the fields `kind` and `addr`, so whoever started it (the lab, a test) learns an ephemeral port by reading its
//! stdout. With the JSON formatter of `tracing-subscriber` the line reads
//! `{"fields":{"message":"listening","kind":"http","addr":"127.0.0.1:1234"}, ...}`.

use std::net::SocketAddr;

/// The event's message.
pub const MESSAGE: &str = "listening";

/// The `kind` of a listener.
pub mod kind {
    /// An HTTP API (consumer, the scaler's HTTP side, the lab console).
    pub const HTTP: &str = "http";
    /// A gRPC server (the scaler).
    pub const GRPC: &str = "grpc";
    /// A metrics-only HTTP server (the generator's `--metrics-port`).
    pub const METRICS: &str = "metrics";
}

/// One parsed `listening` event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listening {
    /// `http`, `grpc` or `metrics` (see [`kind`]).
    pub kind: String,
    /// The bound address.
    pub addr: SocketAddr,
}

impl Listening {
    /// Parses one output line; `None` when it is not a `listening` event (any other log line, a partial line, text).
    /// Accepts the event's fields nested under `fields` (tracing's JSON formatter) or at the top level.
    pub fn parse(line: &str) -> Option<Listening> {
        let value: serde_json::Value = serde_json::from_str(line.trim()).ok()?;
        let fields = value.get("fields").unwrap_or(&value);
        if fields.get("message")?.as_str()? != MESSAGE {
            return None;
        }
        let kind = fields.get("kind")?.as_str()?.to_string();
        let addr = fields.get("addr")?.as_str()?.parse().ok()?;
        Some(Listening { kind, addr })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_tracing_json_and_flat_lines() {
        let line = r#"{"timestamp":"x","level":"INFO","fields":{"message":"listening","kind":"grpc","addr":"127.0.0.1:4000"},"target":"scaler"}"#;
        assert_eq!(
            Listening::parse(line),
            Some(Listening {
                kind: "grpc".into(),
                addr: "127.0.0.1:4000".parse().unwrap()
            })
        );
        let flat = r#"{"message":"listening","kind":"http","addr":"[::1]:80"}"#;
        assert_eq!(Listening::parse(flat).unwrap().addr.port(), 80);
    }

    #[test]
    fn ignores_everything_else() {
        for line in [
            "",
            "listening on 127.0.0.1:80",
            r#"{"fields":{"message":"stopped"}}"#,
            r#"{"fields":{"message":"listening","kind":"http","addr":"nope"}}"#,
            r#"{"fields":{"message":"listening","addr":"127.0.0.1:1"}}"#,
            r#"{"fields":{"message":"listen"#,
        ] {
            assert_eq!(Listening::parse(line), None, "{line}");
        }
    }
}
