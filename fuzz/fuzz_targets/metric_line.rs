//! Every stdout line of a job goes through the metric-line parser: any bytes a job
//! prints must give a metric or nothing, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let line = String::from_utf8_lossy(data);
    if let Some(metric) = expcluster_core::metric_line::parse_metric_line(&line) {
        // A parsed name is always one the grammar allows.
        assert!(expcluster_core::metric_line::is_metric_name(metric.name));
    }
});
