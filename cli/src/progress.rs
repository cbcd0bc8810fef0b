//! The live view of a running stage for `submit` and `watch`: on a terminal, one
//! indicatif bar for the stage (jobs done of total, ETA) and one per method, each
//! with its queued/running/failed counts and the primary metric's latest mean;
//! elsewhere (pipes, CI logs), one plain line each time the counts change.

use crate::output::format_value;
use expcluster_proto::v1;
use indexmap::IndexMap;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;

/// Counts of jobs by state.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub queued: u64,
    pub running: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub cancelled: u64,
}

impl Counts {
    pub fn of<'a>(jobs: impl IntoIterator<Item = &'a v1::JobStatus>) -> Self {
        let mut counts = Counts::default();
        for job in jobs {
            match v1::JobState::try_from(job.state) {
                Ok(v1::JobState::Queued) => counts.queued += 1,
                Ok(v1::JobState::Running) => counts.running += 1,
                Ok(v1::JobState::Succeeded) => counts.succeeded += 1,
                Ok(v1::JobState::Failed) => counts.failed += 1,
                Ok(v1::JobState::Cancelled) => counts.cancelled += 1,
                Ok(v1::JobState::Unspecified) | Err(_) => {}
            }
        }
        counts
    }

    pub fn terminal(&self) -> u64 {
        self.succeeded + self.failed + self.cancelled
    }

    pub fn describe(&self) -> String {
        let mut text = format!(
            "{} done, {} failed, {} running, {} queued",
            self.succeeded, self.failed, self.running, self.queued
        );
        if self.cancelled > 0 {
            text.push_str(&format!(", {} cancelled", self.cancelled));
        }
        text
    }
}

/// The mean of the primary metric's latest value over the jobs that printed it.
pub fn latest_primary(jobs: &[&v1::JobStatus], metric: &str) -> Option<(f64, usize)> {
    let values: Vec<f64> = jobs
        .iter()
        .filter_map(|job| job.final_metrics.get(metric).copied())
        .filter(|v| v.is_finite())
        .collect();
    (!values.is_empty()).then(|| {
        (
            values.iter().sum::<f64>() / values.len() as f64,
            values.len(),
        )
    })
}

pub struct StageProgress {
    stage: String,
    multi: MultiProgress,
    total: Option<ProgressBar>,
    methods: IndexMap<String, ProgressBar>,
    interactive: bool,
    last_line: String,
}

impl StageProgress {
    /// Bars on a terminal (stderr), plain lines otherwise.
    pub fn new(stage: &str) -> Self {
        let interactive = std::io::stderr().is_terminal();
        let target = if interactive {
            ProgressDrawTarget::stderr_with_hz(10)
        } else {
            ProgressDrawTarget::hidden()
        };
        Self {
            stage: stage.to_owned(),
            multi: MultiProgress::with_draw_target(target),
            total: None,
            methods: IndexMap::new(),
            interactive,
            last_line: String::new(),
        }
    }

    pub fn update(&mut self, status: &v1::StageStatusResponse) {
        let counts = Counts::of(&status.jobs);
        let all: Vec<&v1::JobStatus> = status.jobs.iter().collect();
        let metric = match latest_primary(&all, &status.primary_metric) {
            Some((mean, n)) => format!(
                " · {} {} (mean of {n})",
                status.primary_metric,
                format_value(mean)
            ),
            None => String::new(),
        };
        if !self.interactive {
            let line = format!(
                "[{}] {} (of {}){metric}",
                self.stage,
                counts.describe(),
                status.jobs.len()
            );
            if line != self.last_line {
                eprintln!("{line}");
                self.last_line = line;
            }
            return;
        }
        let total = self.total.get_or_insert_with(|| {
            let bar = self.multi.add(ProgressBar::new(status.jobs.len() as u64));
            bar.set_style(style(
                "{prefix:>14.bold} [{bar:30.cyan/blue}] {pos}/{len} jobs · ETA {eta} · {msg}",
            ));
            bar.set_prefix(self.stage.clone());
            bar
        });
        total.set_length(status.jobs.len() as u64);
        total.set_position(counts.terminal());
        total.set_message(format!("{}{metric}", counts.describe()));
        let mut by_method: IndexMap<&str, Vec<&v1::JobStatus>> = IndexMap::new();
        for job in &status.jobs {
            by_method.entry(job.method.as_str()).or_default().push(job);
        }
        for (method, jobs) in by_method {
            let bar = self.methods.entry(method.to_owned()).or_insert_with(|| {
                let bar = self.multi.add(ProgressBar::new(jobs.len() as u64));
                bar.set_style(style(
                    "{prefix:>14} [{bar:30.green/white}] {pos}/{len} · {msg}",
                ));
                bar.set_prefix(shorten(method, 14));
                bar
            });
            let counts = Counts::of(jobs.iter().copied());
            bar.set_length(jobs.len() as u64);
            bar.set_position(counts.terminal());
            let metric = latest_primary(&jobs, &status.primary_metric)
                .map(|(mean, _)| format!(" · {} {}", status.primary_metric, format_value(mean)))
                .unwrap_or_default();
            bar.set_message(format!(
                "{} running, {} queued, {} failed{metric}",
                counts.running, counts.queued, counts.failed
            ));
        }
    }

    /// Leaves the final bars on screen (so the terminal shows how the stage ended).
    pub fn finish(&self) {
        for bar in self.total.iter().chain(self.methods.values()) {
            bar.finish();
        }
    }

    /// Removes the bars, for a line that must not be drawn over.
    pub fn clear(&self) {
        let _ = self.multi.clear();
    }
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let kept: String = text.chars().take(max - 1).collect();
    format!("{kept}…")
}
