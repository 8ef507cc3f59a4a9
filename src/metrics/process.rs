//! The standard `process_*` metrics, read from `/proc/self` at scrape time.
//!
//! Names and meanings are those of the Prometheus client libraries'
//! process collectors, so existing dashboards work unchanged.

use super::encode_gauge as gauge;
use crate::sys;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;

/// Collects `process_*` metrics on every scrape.
#[derive(Debug)]
pub struct ProcessCollector {
    ticks_per_second: f64,
    page_size: f64,
    boot_time_seconds: f64,
}

impl Default for ProcessCollector {
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

impl ProcessCollector {
    /// Reads the constants (tick rate, page size, boot time) once.
    #[must_use]
    pub fn new() -> Self {
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

fn count_open_fds() -> Option<f64> {
    #[allow(clippy::cast_precision_loss)] // fd counts are far below 2^52
    std::fs::read_dir("/proc/self/fd")
        .ok()
        .map(|dir| dir.count() as f64)
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        if let Some(stat) = read_stat() {
            let cpu = ConstCounter::new(stat.cpu_ticks / self.ticks_per_second);
            cpu.encode(encoder.encode_descriptor(
                "process_cpu_seconds",
                "Total user and system CPU time spent in seconds.",
                None,
                cpu.metric_type(),
            )?)?;
            gauge(
                &mut encoder,
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds.",
                self.boot_time_seconds + stat.start_ticks / self.ticks_per_second,
            )?;
            gauge(
                &mut encoder,
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
                stat.resident_pages * self.page_size,
            )?;
            gauge(
                &mut encoder,
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes.",
                stat.virtual_bytes,
            )?;
        }
        if let Some(open) = count_open_fds() {
            gauge(
                &mut encoder,
                "process_open_fds",
                "Number of open file descriptors.",
                open,
            )?;
        }
        if let Ok((soft, _)) = sys::nofile_limit() {
            #[allow(clippy::cast_precision_loss)] // limits are far below 2^52 or are RLIM_INFINITY
            gauge(
                &mut encoder,
                "process_max_fds",
                "Maximum number of open file descriptors.",
                soft as f64,
            )?;
        }
        Ok(())
    }
}
