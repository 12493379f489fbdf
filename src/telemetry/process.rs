//! The process's own resources, read from `/proc/self` at each scrape under the names every
//! Prometheus client library uses (`process_cpu_seconds_total`, `process_resident_memory_bytes`,
//! …), without the `pagegate_` prefix, so stock dashboards and alerts find them. Read with the
//! `procfs` crate, as linkerd2-proxy does; where `/proc` cannot be read, the series are absent.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Unit;

/// The collector; see the module docs.
#[derive(Debug, Default)]
pub(super) struct Process;

/// One reading of `/proc/self`.
struct Reading {
    cpu_seconds: f64,
    resident: u64,
    virtual_bytes: u64,
    open_fds: Option<usize>,
    max_fds: Option<u64>,
    start_seconds: Option<f64>,
    threads: i64,
}

fn read() -> Option<Reading> {
    let me = procfs::process::Process::myself().ok()?;
    let stat = me.stat().ok()?;
    let ticks = procfs::ticks_per_second() as f64;
    let max_fds = me
        .limits()
        .ok()
        .and_then(|l| match l.max_open_files.soft_limit {
            procfs::process::LimitValue::Value(n) => Some(n),
            procfs::process::LimitValue::Unlimited => None,
        });
    let start_seconds = procfs::boot_time_secs()
        .ok()
        .map(|boot| boot as f64 + stat.starttime as f64 / ticks);
    Some(Reading {
        cpu_seconds: (stat.utime + stat.stime) as f64 / ticks,
        resident: stat.rss * procfs::page_size(),
        virtual_bytes: stat.vsize,
        open_fds: me.fd_count().ok(),
        max_fds,
        start_seconds,
        threads: stat.num_threads,
    })
}

impl Collector for Process {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let Some(reading) = read() else {
            return Ok(());
        };
        let cpu = ConstCounter::new(reading.cpu_seconds);
        cpu.encode(encoder.encode_descriptor(
            "process_cpu",
            "User and system CPU time spent",
            Some(&Unit::Seconds),
            cpu.metric_type(),
        )?)?;
        let gauges = [
            (
                "process_resident_memory",
                "Resident memory size",
                Some(Unit::Bytes),
                Some(reading.resident as f64),
            ),
            (
                "process_virtual_memory",
                "Virtual memory size",
                Some(Unit::Bytes),
                Some(reading.virtual_bytes as f64),
            ),
            (
                "process_open_fds",
                "Open file descriptors",
                None,
                reading.open_fds.map(|n| n as f64),
            ),
            (
                "process_max_fds",
                "The open-files limit (soft)",
                None,
                reading.max_fds.map(|n| n as f64),
            ),
            (
                "process_start_time",
                "Start time since the Unix epoch",
                Some(Unit::Seconds),
                reading.start_seconds,
            ),
            (
                "process_threads",
                "Operating-system threads",
                None,
                Some(reading.threads as f64),
            ),
        ];
        for (name, help, unit, value) in gauges {
            let Some(value) = value else { continue };
            let gauge = ConstGauge::new(value);
            gauge.encode(encoder.encode_descriptor(
                name,
                help,
                unit.as_ref(),
                gauge.metric_type(),
            )?)?;
        }
        Ok(())
    }
}
