//! The run report: its schema ([`types`]), assembled from the engine's [`RunData`](crate::engine::RunData)
//! ([`analysis`]), and its renderings: JSON and files here, the terminal summary and timeline ([`text`]), the SVG chart
//! ([`svg`]).

pub mod analysis;
pub mod chaos;
pub mod scaling_input;
pub mod scaling_timeline;
pub mod svg;
pub mod text;
pub mod types;

pub use crate::engine::RunData;
pub use crate::model::TimelinePoint;
pub use chaos::{AutoscalerReaction, ChaosReport, FaultReport, KafkaFaultReport};
pub use text::sparkline;
pub use types::{
    PhaseStats, REPORT_SCHEMA, Report, RunSelfCheck, ScalingReport, TargetCpu, ThresholdResult,
};

impl Report {
    /// Pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("report serializes")
    }

    /// Write the JSON report to `path` and the SVG chart next to it (same name, `.svg`); returns the SVG path.
    pub fn write_files(&self, path: &std::path::Path) -> std::io::Result<std::path::PathBuf> {
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, self.to_json())?;
        let svg_path = path.with_extension("svg");
        std::fs::write(&svg_path, self.render_svg())?;
        Ok(svg_path)
    }
}
