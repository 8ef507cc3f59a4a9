//! The standard `process_*` metrics, read from `/proc/self` at scrape time.
//!
//! Names and meanings are those of the Prometheus client libraries'
//! process collectors, so existing dashboards work unchanged.

#![forbid(unsafe_code)]

use super::exposition::{Kind, Value, Writer};
use crate::sys;

/// Writes the `process_*` metrics, read anew on every scrape.
#[derive(Debug)]
pub(crate) struct ProcessMetrics {
    ticks_per_second: f64,
    page_size: f64,
    boot_time_seconds: f64,
}

impl Default for ProcessMetrics {
    fn default() -> Self {
        Self::new()
    }
}

/// The fields of `/proc/self/stat` that the metrics need.
struct Stat {
    cpu_ticks: f64,
    start_ticks: f64,
    virtual_bytes: f64,
    resident_pages: f64,
}

impl ProcessMetrics {
    /// Reads the constants (tick rate, page size, boot time) once.
    pub(crate) fn new() -> Self {
        #[allow(clippy::cast_precision_loss)] // small constants
        Self {
            ticks_per_second: sys::clock_ticks_per_second() as f64,
            page_size: sys::page_size() as f64,
            boot_time_seconds: read_boot_time().unwrap_or(0.0),
        }
    }
}

fn read_boot_time() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    stat.lines()
        .find_map(|line| line.strip_prefix("btime "))
        .and_then(|value| value.trim().parse().ok())
}

fn read_stat() -> Option<Stat> {
    let text = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name may hold spaces and parentheses; fields follow the last ')'.
    let (_, after_name) = text.rsplit_once(')')?;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let field = |index: usize| fields.get(index)?.parse::<f64>().ok();
    // Indices count from field 3 (state) of proc(5).
    Some(Stat {
        cpu_ticks: field(11)? + field(12)?,
        start_ticks: field(19)?,
        virtual_bytes: field(20)?,
        resident_pages: field(21)?,
    })
}

fn count_open_fds() -> Option<usize> {
    std::fs::read_dir("/proc/self/fd").ok().map(Iterator::count)
}

impl ProcessMetrics {
    /// Writes every `process_*` metric that can be read now.
    pub(crate) fn write(&self, writer: &mut Writer<'_>) {
        if let Some(stat) = read_stat() {
            writer.family(
                "process_cpu_seconds",
                Kind::Counter,
                "Total user and system CPU time spent in seconds.",
            );
            let cpu = stat.cpu_ticks / self.ticks_per_second;
            writer.sample("process_cpu_seconds", "_total", &[], Value::Float(cpu));
            writer.gauge(
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds.",
                self.boot_time_seconds + stat.start_ticks / self.ticks_per_second,
            );
            writer.gauge(
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
                stat.resident_pages * self.page_size,
            );
            writer.gauge(
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes.",
                stat.virtual_bytes,
            );
        }
        if let Some(open) = count_open_fds() {
            writer.gauge("process_open_fds", "Number of open file descriptors.", open);
        }
        if let Ok((soft, _)) = sys::nofile_limit() {
            writer.gauge(
                "process_max_fds",
                "Maximum number of open file descriptors.",
                soft,
            );
        }
    }
}
