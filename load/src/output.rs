//! How a command prints its progress and report.

/// Progress output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum OutputFormat {
    /// Human-readable lines on stderr and a summary table on stdout.
    #[default]
    Text,
    /// JSON lines (one per interval, then the report) on stdout: what a Job's logs want.
    Json,
}
