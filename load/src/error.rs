//! The one error type of the load commands (the generator's and the Kafka load's): every failure knows its exit code (the lab-wide table
//! [`contract::exit`], docs/exit-codes.md), so `main` only prints it and exits with it.

use crate::exit;

/// Why a command did not run to its verdict.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// Bad flags, profile, thresholds or headers: nothing was sent.
    #[error("{0}")]
    Usage(String),
    /// The target's readiness wait timed out.
    #[error("TARGET NOT READY: {0}")]
    TargetNotReady(String),
    /// A signal ended the command before it had anything to report.
    #[error("interrupted: {0}")]
    Interrupted(String),
    /// Anything else at run time (cannot bind the metrics port, cannot write the report, ...).
    #[error("{0}")]
    Runtime(String),
}

impl AppError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            AppError::Usage(_) => exit::USAGE,
            AppError::TargetNotReady(_) => exit::TARGET_NOT_READY,
            AppError::Interrupted(_) => exit::INTERRUPTED,
            AppError::Runtime(_) => exit::RUNTIME_ERROR,
        }
    }

    pub fn usage(msg: impl std::fmt::Display) -> AppError {
        AppError::Usage(msg.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_cause_has_its_own_documented_code() {
        let codes = [
            AppError::Usage(String::new()).exit_code(),
            AppError::TargetNotReady(String::new()).exit_code(),
            AppError::Interrupted(String::new()).exit_code(),
            AppError::Runtime(String::new()).exit_code(),
        ];
        assert_eq!(codes, [2, 3, 5, 6]);
        for code in codes {
            assert!(exit::TABLE.iter().any(|(c, _)| *c == code));
        }
    }
}
