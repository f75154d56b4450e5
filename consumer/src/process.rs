//! The standard `process_*` metrics, read from `/proc` at scrape time. Unlike the `prometheus` crate's collector,
//! which rounds CPU time down to whole seconds, `process_cpu_seconds_total` here keeps clock-tick resolution
//! (10 ms), so `rate()` over a short window is meaningful.

use std::sync::Mutex;

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{Counter, Gauge, Opts};

use contract::metrics::consumer as def;

use crate::sys;

fn opts(metric: contract::metrics::MetricDef) -> Opts {
    Opts::new(metric.name, metric.help)
}

/// Collects the contract's six `process_*` metrics (CPU seconds, resident and virtual memory, open and max file
/// descriptors, start time).
#[derive(Debug)]
pub struct ProcessCollector {
    cpu: Counter,
    resident: Gauge,
    virtual_memory: Gauge,
    open_fds: Gauge,
    max_fds: Gauge,
    start_time: Gauge,
    descs: Vec<Desc>,
    /// Serialises updates so two concurrent scrapes cannot add the same CPU delta twice.
    update: Mutex<()>,
}

impl Default for ProcessCollector {
    fn default() -> Self {
        ProcessCollector::new()
    }
}

impl ProcessCollector {
    pub fn new() -> ProcessCollector {
        let cpu = Counter::with_opts(opts(def::PROCESS_CPU_SECONDS_TOTAL)).expect("valid");
        let resident = Gauge::with_opts(opts(def::PROCESS_RESIDENT_MEMORY_BYTES)).expect("valid");
        let virtual_memory =
            Gauge::with_opts(opts(def::PROCESS_VIRTUAL_MEMORY_BYTES)).expect("valid");
        let open_fds = Gauge::with_opts(opts(def::PROCESS_OPEN_FDS)).expect("valid");
        let max_fds = Gauge::with_opts(opts(def::PROCESS_MAX_FDS)).expect("valid");
        let start_time = Gauge::with_opts(opts(def::PROCESS_START_TIME_SECONDS)).expect("valid");
        let mut descs = Vec::new();
        for collector in [&resident, &virtual_memory, &open_fds, &max_fds, &start_time] {
            descs.extend(collector.desc().into_iter().cloned());
        }
        descs.extend(cpu.desc().into_iter().cloned());
        if let Some(start) = start_time_seconds() {
            start_time.set(start);
        }
        if let Some(limit) = max_open_files() {
            max_fds.set(limit);
        }
        ProcessCollector {
            cpu,
            resident,
            virtual_memory,
            open_fds,
            max_fds,
            start_time,
            descs,
            update: Mutex::new(()),
        }
    }
}

/// Fields of `/proc/self/stat` after the command name: index 0 is field 3 (state).
fn stat_fields() -> Option<Vec<u64>> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let after_name = &stat[stat.rfind(')')? + 1..];
    Some(
        after_name
            .split_whitespace()
            .map(|field| field.parse().unwrap_or(0))
            .collect(),
    )
}

fn start_time_seconds() -> Option<f64> {
    let fields = stat_fields()?;
    let start_ticks = *fields.get(19)?;
    let proc_stat = std::fs::read_to_string("/proc/stat").ok()?;
    let boot: f64 = proc_stat
        .lines()
        .find_map(|line| line.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    Some(boot + start_ticks as f64 / sys::clock_ticks_per_second() as f64)
}

fn max_open_files() -> Option<f64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

impl Collector for ProcessCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let guard = self
            .update
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(fields) = stat_fields() {
            let ticks = fields.get(11).copied().unwrap_or(0) + fields.get(12).copied().unwrap_or(0);
            let cpu_seconds = ticks as f64 / sys::clock_ticks_per_second() as f64;
            let delta = cpu_seconds - self.cpu.get();
            if delta > 0.0 {
                self.cpu.inc_by(delta);
            }
            self.virtual_memory
                .set(fields.get(20).copied().unwrap_or(0) as f64);
            self.resident
                .set((fields.get(21).copied().unwrap_or(0) * sys::page_size() as u64) as f64);
        }
        if let Ok(entries) = std::fs::read_dir("/proc/self/fd") {
            // The directory handle itself is one of the entries; it is not the process' own.
            self.open_fds.set(entries.count().saturating_sub(1) as f64);
        }
        drop(guard);
        let mut families = Vec::new();
        for collector in [
            &self.resident,
            &self.virtual_memory,
            &self.open_fds,
            &self.max_fds,
            &self.start_time,
        ] {
            families.extend(collector.collect());
        }
        families.extend(self.cpu.collect());
        families
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_figures_are_read_with_sub_second_cpu_resolution() {
        let collector = ProcessCollector::new();
        // Burn a little CPU between readings so the counter has something below one second to show. One reading can
        // land on a whole second by chance (10 ms ticks, other tests burning too), so look at a few: a collector that
        // rounds to whole seconds would never show a fraction.
        let mut cpu_readings = Vec::new();
        let mut families = collector.collect();
        for _ in 0..5 {
            let started = std::time::Instant::now();
            let mut x = 0u64;
            while started.elapsed() < std::time::Duration::from_millis(30) {
                x = std::hint::black_box(x.wrapping_add(1));
            }
            families = collector.collect();
            let cpu = families
                .iter()
                .find(|family| family.name() == def::PROCESS_CPU_SECONDS_TOTAL.name)
                .map(|family| family.get_metric()[0].get_counter().value())
                .expect(def::PROCESS_CPU_SECONDS_TOTAL.name);
            cpu_readings.push(cpu);
        }
        let value = |name: &str| {
            let family = families
                .iter()
                .find(|family| family.name() == name)
                .unwrap_or_else(|| panic!("{name}"));
            let metric = &family.get_metric()[0];
            if name.ends_with("_total") {
                metric.get_counter().value()
            } else {
                metric.get_gauge().value()
            }
        };
        assert!(
            cpu_readings.iter().all(|cpu| *cpu > 0.0)
                && cpu_readings.iter().any(|cpu| cpu.fract() != 0.0),
            "cpu readings {cpu_readings:?}"
        );
        assert!(value(def::PROCESS_CPU_SECONDS_TOTAL.name) > 0.0);
        assert!(value(def::PROCESS_RESIDENT_MEMORY_BYTES.name) > 1e6);
        assert!(value(def::PROCESS_VIRTUAL_MEMORY_BYTES.name) > 1e6);
        assert!(value(def::PROCESS_OPEN_FDS.name) >= 3.0);
        assert!(value(def::PROCESS_MAX_FDS.name) >= 64.0);
        assert!(value(def::PROCESS_START_TIME_SECONDS.name) > 1.6e9);
    }
}
