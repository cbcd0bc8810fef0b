//! Plain-text tables for the terminal.

use expcluster_proto::v1;

/// Formats a metric value compactly (nan and inf as such).
pub fn format_value(value: f64) -> String {
    if value.is_nan() {
        "nan".to_owned()
    } else if value.is_infinite() {
        if value > 0.0 { "inf".to_owned() } else { "-inf".to_owned() }
    } else if value != 0.0 && (value.abs() < 1e-3 || value.abs() >= 1e6) {
        format!("{value:.4e}")
    } else {
        format!("{value:.4}")
    }
}

pub fn state_name(state: i32) -> &'static str {
    match v1::JobState::try_from(state) {
        Ok(v1::JobState::Queued) => "queued",
        Ok(v1::JobState::Running) => "running",
        Ok(v1::JobState::Succeeded) => "succeeded",
        Ok(v1::JobState::Failed) => "failed",
        Ok(v1::JobState::Cancelled) => "cancelled",
        Ok(v1::JobState::Unspecified) | Err(_) => "unknown",
    }
}

/// A table of a stage's jobs with the last value of each metric.
pub fn jobs_table(status: &v1::StageStatusResponse) -> String {
    let mut metrics: Vec<&String> = status.jobs.iter().flat_map(|job| job.final_metrics.keys()).collect();
    metrics.sort();
    metrics.dedup();
    let mut rows: Vec<Vec<String>> = vec![["job", "method", "seed", "state", "attempt"]
        .iter()
        .map(|s| (*s).to_owned())
        .chain(metrics.iter().map(|m| (*m).clone()))
        .collect()];
    for job in &status.jobs {
        let mut row = vec![
            job.job_id.clone(),
            job.method.clone(),
            job.seed.to_string(),
            state_name(job.state).to_owned(),
            job.attempt.to_string(),
        ];
        row.extend(metrics.iter().map(|m| job.final_metrics.get(*m).map_or("-".to_owned(), |v| format_value(*v))));
        rows.push(row);
    }
    render(&rows)
}

pub fn render(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| rows.iter().filter_map(|r| r.get(c)).map(|cell| cell.chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let line: Vec<String> = row.iter().enumerate().map(|(c, cell)| format!("{cell:<width$}", width = widths[c])).collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}
