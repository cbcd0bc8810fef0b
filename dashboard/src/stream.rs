//! GET /api/events: the live feed as Server-Sent Events.
//!
//! One subscriber of the coordinator's feed per page. What arrives within
//! [`COALESCE`] goes out as one `update` message: per series (job, attempt, metric)
//! an even sample of at most [`SERIES_POINTS`] of the points that arrived, the last
//! one always, as `[job, attempt, name, [steps], [values]]`; the log text of the
//! followed job; and the research-log events written. So a page costs the
//! coordinator a few small messages a second whatever the ingestion rate: a series
//! fed a million points a second and one fed a point a minute both send at most
//! [`SERIES_POINTS`] points per message, and only those are written as JSON (W&B
//! shows a sampled curve the same way; a reload gets the snapshot's thinned series).
//! Filters keep the message small: `stage` (jobs of that stage), `metric` (that
//! metric's points) and `job` (its log pieces, all its points).
//! A subscriber that falls more than the feed's capacity behind gets `resync` and
//! reloads its snapshot: the coordinator never waits for a page.

use crate::AppState;
use axum::extract::{Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use expcluster_coordinator::store::live_feed::LiveEvent;
use futures::Stream;
use serde_json::{json, Value};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::sync::broadcast::Receiver;

/// How long changes are gathered into one message.
const COALESCE: Duration = Duration::from_millis(250);
/// The most feed items one message gathers (the rest go in the next).
const MAX_ITEMS: usize = 4096;
/// The most points of one series one message carries. A job that prints faster
/// than a page can draw is thinned on the way to the page, never in the
/// coordinator's store.
const SERIES_POINTS: usize = 32;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thinning_keeps_at_most_the_cap_and_always_the_last_point() {
        for len in [0, 1, 5, 31, 32, 33, 64, 65, 1000, 1001] {
            let points: Vec<usize> = (0..len).collect();
            let kept: Vec<usize> = thinned(&points).copied().collect();
            assert!(kept.len() <= SERIES_POINTS, "{len}: {}", kept.len());
            assert_eq!(kept.last().copied(), len.checked_sub(1), "{len}");
            if len <= SERIES_POINTS {
                assert_eq!(kept, points, "short series are whole");
            } else {
                assert!(kept.len() >= SERIES_POINTS / 2, "{len}: {}", kept.len());
                let gaps: Vec<usize> = kept.windows(2).map(|w| w[1] - w[0]).collect();
                assert!(gaps.windows(2).all(|g| g[0] == g[1]), "{len}: even stride");
            }
        }
    }

    fn metrics(job: &str, attempt: u32, points: &[(&str, u64, f64)]) -> LiveEvent {
        let job = expcluster_core::JobId::parse(job).expect("job id");
        LiveEvent::Metrics(std::sync::Arc::new(
            expcluster_coordinator::store::live_feed::MetricPoints::gather(
                &job,
                attempt,
                points.iter().copied(),
            ),
        ))
    }

    #[test]
    fn an_update_message_is_json_with_each_series_points() {
        let filter = Filter::default();
        let mut batch = Batch::default();
        batch.add(
            &filter,
            metrics(
                "full.m.s0",
                2,
                &[("loss", 0, 0.5), ("acc", 0, f64::NAN), ("loss", 1, 0.25)],
            ),
        );
        batch.add(&filter, metrics("full.m.s0", 2, &[("loss", 2, 0.125)]));
        batch.add(&filter, metrics("full.a.s1", 1, &[("loss", 7, 1.0)]));
        let message: Value = serde_json::from_str(&batch.data()).expect("JSON");
        assert_eq!(
            message["metrics"],
            json!([
                ["full.a.s1", 1, "loss", [7], [1.0]],
                ["full.m.s0", 2, "loss", [0, 1, 2], [0.5, 0.25, 0.125]],
                ["full.m.s0", 2, "acc", [0], [null]]
            ])
        );
        assert_eq!(message["leased"], 0);
    }

    #[test]
    fn a_message_carries_a_bounded_sample_of_a_fast_series_with_its_last_point() {
        let filter = Filter::default();
        let mut batch = Batch::default();
        for first in (0..10_000u64).step_by(50) {
            let points: Vec<(&str, u64, f64)> = (first..first + 50)
                .map(|step| ("loss", step, step as f64))
                .collect();
            batch.add(&filter, metrics("full.m.s0", 1, &points));
        }
        let message: Value = serde_json::from_str(&batch.data()).expect("JSON");
        let series = &message["metrics"][0];
        let steps = series[3].as_array().expect("steps");
        assert!(steps.len() <= SERIES_POINTS && steps.len() >= SERIES_POINTS / 2);
        assert_eq!(steps.last(), Some(&json!(9999)));
        let values = series[4].as_array().expect("values");
        assert!(
            steps
                .iter()
                .zip(values)
                .all(|(s, v)| s.as_f64() == v.as_f64()),
            "each value is its step: {series}"
        );
    }

    #[test]
    fn filters_pick_the_stage_metric_or_job() {
        let stage = Filter {
            stage: Some("full".into()),
            metric: Some("loss".into()),
            job: None,
        };
        assert!(stage.wants_metric("full.m.s0", "loss"));
        assert!(!stage.wants_metric("full.m.s0", "acc"));
        assert!(!stage.wants_metric("fuller.m.s0", "loss"));
        assert!(!stage.wants_metric("baselines.m.s0", "loss"));
        let job = Filter {
            job: Some("full.m.s0".into()),
            ..Filter::default()
        };
        assert!(job.wants_metric("full.m.s0", "acc"));
        assert!(!job.wants_metric("full.m.s1", "acc"));
    }
}

#[derive(Debug, Default, Clone, serde::Deserialize)]
pub(crate) struct Filter {
    stage: Option<String>,
    metric: Option<String>,
    job: Option<String>,
}

impl Filter {
    fn wants_job(&self, job: &str) -> bool {
        if self.job.as_deref() == Some(job) {
            return true;
        }
        self.stage.as_deref().is_none_or(|stage| {
            job.strip_prefix(stage)
                .is_some_and(|rest| rest.starts_with('.'))
        })
    }

    fn wants_metric(&self, job: &str, name: &str) -> bool {
        if self.job.as_deref() == Some(job) {
            return true;
        }
        self.job.is_none()
            && self.wants_job(job)
            && self.metric.as_deref().is_none_or(|metric| metric == name)
    }
}

/// The points of one series that arrived for the next message.
struct SeriesPoints {
    attempt: u32,
    name: String,
    /// (step, value) in arrival order.
    points: Vec<(u64, f64)>,
}

/// One message in the making.
#[derive(Default)]
struct Batch {
    /// By job id: each series of the job with its points (a job has few series, so
    /// a list is searched; a job is looked up by `&str`, without a copy of its id).
    series: std::collections::HashMap<String, Vec<SeriesPoints>>,
    points: usize,
    logs: Vec<Value>,
    events: Vec<Value>,
    leased: usize,
    items: usize,
}

impl Batch {
    fn add(&mut self, filter: &Filter, event: LiveEvent) {
        self.items += 1;
        match event {
            LiveEvent::Metrics(batch) => {
                let job = batch.job.as_str();
                for (index, name) in batch.names.iter().enumerate() {
                    if !filter.wants_metric(job, name) {
                        continue;
                    }
                    if !self.series.contains_key(job) {
                        self.series.insert(job.to_owned(), Vec::new());
                    }
                    let Some(series) = self.series.get_mut(job) else {
                        continue;
                    };
                    let position = series
                        .iter()
                        .position(|s| s.attempt == batch.attempt && s.name == *name)
                        .unwrap_or_else(|| {
                            series.push(SeriesPoints {
                                attempt: batch.attempt,
                                name: name.clone(),
                                points: Vec::new(),
                            });
                            series.len() - 1
                        });
                    let before = series[position].points.len();
                    series[position].points.extend(
                        batch
                            .points
                            .iter()
                            .filter(|point| point.0 as usize == index)
                            .map(|&(_, step, value)| (step, value)),
                    );
                    self.points += series[position].points.len() - before;
                }
            }
            LiveEvent::Log(piece) => {
                if filter.job.as_deref() == Some(piece.job.as_str()) {
                    self.logs.push(json!({
                        "job": piece.job.as_str(), "attempt": piece.attempt,
                        "stream": piece.stream, "offset": piece.offset,
                        "text": String::from_utf8_lossy(&piece.content),
                    }));
                }
            }
            LiveEvent::Leased(jobs) => {
                self.leased += jobs
                    .iter()
                    .filter(|job| filter.wants_job(job.as_str()))
                    .count();
            }
            LiveEvent::Logged(logged) => {
                let payload: Value = serde_json::from_str(&logged.payload).unwrap_or(Value::Null);
                self.events.push(json!({
                    "seq": logged.seq, "type": logged.event_type,
                    "job_id": payload.get("job_id"), "stage": payload.get("stage"),
                }));
            }
        }
    }

    fn is_empty(&self) -> bool {
        self.points == 0 && self.logs.is_empty() && self.events.is_empty() && self.leased == 0
    }

    fn message(self) -> Event {
        Event::default().event("update").data(self.data())
    }

    fn data(self) -> String {
        let rest =
            json!({"logs": self.logs, "events": self.events, "leased": self.leased}).to_string();
        // `{"metrics":[…],` + the rest of the object after its `{`. The series are
        // written directly: sorted, so a message does not depend on hashing.
        let mut jobs: Vec<(&String, &Vec<SeriesPoints>)> = self.series.iter().collect();
        jobs.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let mut metrics = String::new();
        for (job, series) in jobs {
            let job = Value::from(job.as_str()).to_string();
            for one in series {
                if one.points.is_empty() {
                    continue;
                }
                if !metrics.is_empty() {
                    metrics.push(',');
                }
                metrics.push('[');
                metrics.push_str(&job);
                metrics.push(',');
                metrics.push_str(itoa::Buffer::new().format(one.attempt));
                metrics.push(',');
                metrics.push_str(&Value::from(one.name.as_str()).to_string());
                metrics.push_str(",[");
                for (i, (step, _)) in thinned(&one.points).enumerate() {
                    if i > 0 {
                        metrics.push(',');
                    }
                    metrics.push_str(itoa::Buffer::new().format(*step));
                }
                metrics.push_str("],[");
                for (i, (_, value)) in thinned(&one.points).enumerate() {
                    if i > 0 {
                        metrics.push(',');
                    }
                    if value.is_finite() {
                        metrics.push_str(ryu::Buffer::new().format_finite(*value));
                    } else {
                        metrics.push_str("null");
                    }
                }
                metrics.push_str("]]");
            }
        }
        format!("{{\"metrics\":[{metrics}],{}", &rest[1..])
    }
}

/// At most [`SERIES_POINTS`] of `points`, by a stride that keeps the last.
fn thinned<T>(points: &[T]) -> impl Iterator<Item = &T> {
    expcluster_coordinator::store::live_feed::sample(points, SERIES_POINTS)
}

/// What a stage page's stream makes of what `receiver` holds now: drained into
/// messages of at most [`MAX_ITEMS`] items, as [`next_message`] gathers them, each
/// written as JSON; returns (messages, bytes). `expcluster-bench dashboard` times it
/// with the publishing, on one thread, to tell what watching costs per stored point
/// apart from other load on the machine.
pub fn drain_as_messages(receiver: &mut Receiver<LiveEvent>, stage: &str) -> (usize, usize) {
    let filter = Filter {
        stage: Some(stage.to_owned()),
        ..Filter::default()
    };
    let (mut messages, mut bytes) = (0, 0);
    loop {
        let mut batch = Batch::default();
        while batch.items < MAX_ITEMS {
            match receiver.try_recv() {
                Ok(event) => batch.add(&filter, event),
                Err(TryRecvError::Lagged(_)) => {}
                Err(TryRecvError::Empty | TryRecvError::Closed) => break,
            }
        }
        if batch.items == 0 {
            return (messages, bytes);
        }
        if !batch.is_empty() {
            messages += 1;
            bytes += batch.data().len();
        }
    }
}

fn resync(missed: u64) -> Event {
    Event::default().event("resync").data(missed.to_string())
}

/// The next message: waits for a change, gathers what follows within [`COALESCE`].
/// `None` when the coordinator is gone.
async fn next_message(receiver: &mut Receiver<LiveEvent>, filter: &Filter) -> Option<Event> {
    loop {
        let mut batch = Batch::default();
        match receiver.recv().await {
            Ok(event) => batch.add(filter, event),
            Err(RecvError::Lagged(missed)) => return Some(resync(missed)),
            Err(RecvError::Closed) => return None,
        }
        tokio::time::sleep(COALESCE).await;
        while batch.items < MAX_ITEMS {
            match receiver.try_recv() {
                Ok(event) => batch.add(filter, event),
                Err(TryRecvError::Lagged(missed)) => return Some(resync(missed)),
                Err(TryRecvError::Empty | TryRecvError::Closed) => break,
            }
        }
        if !batch.is_empty() {
            return Some(batch.message());
        }
    }
}

pub(crate) async fn events(
    State(state): State<Arc<AppState>>,
    Query(filter): Query<Filter>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let receiver = state.coordinator.subscribe();
    // The first message says the stream is open: the page loads its snapshot after
    // it, so nothing falls between the snapshot and the stream.
    let opened = Event::default().event("open").data("{}");
    let stream = futures::stream::unfold(
        (Some(opened), receiver, filter),
        |(first, mut receiver, filter)| async move {
            if let Some(opened) = first {
                return Some((Ok(opened), (None, receiver, filter)));
            }
            let message = next_message(&mut receiver, &filter).await?;
            Some((Ok(message), (None, receiver, filter)))
        },
    );
    let mut stopping = state.stopping.clone();
    let stopped = async move {
        let _ = stopping.wait_for(|stop| *stop).await;
    };
    Sse::new(futures::StreamExt::take_until(stream, Box::pin(stopped)))
        .keep_alive(KeepAlive::default())
}
