//! GET /api/events: the live feed as Server-Sent Events.
//!
//! One subscriber of the coordinator's feed per page. What arrives within
//! [`COALESCE`] goes out as one `update` message (metric points as
//! `[job, attempt, name, step, value]` rows, log text of the followed job, and the
//! research-log events written), so a fast stream costs the browser a few messages a
//! second, not one per batch. Filters keep the message small: `stage` (jobs of that
//! stage), `metric` (that metric's points) and `job` (its log pieces, all its points).
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
const COALESCE: Duration = Duration::from_millis(150);
/// The most feed items one message carries (the rest go in the next).
const MAX_ITEMS: usize = 2048;

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

/// One message in the making.
#[derive(Default)]
struct Batch {
    metrics: Vec<Value>,
    logs: Vec<Value>,
    events: Vec<Value>,
    leased: usize,
    items: usize,
}

impl Batch {
    fn add(&mut self, filter: &Filter, event: LiveEvent) {
        self.items += 1;
        match event {
            LiveEvent::Metrics(points) => {
                let job = points.job.as_str();
                for (name, step, value) in &points.points {
                    if filter.wants_metric(job, name) {
                        self.metrics
                            .push(json!([job, points.attempt, name, step, value]));
                    }
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
        self.metrics.is_empty()
            && self.logs.is_empty()
            && self.events.is_empty()
            && self.leased == 0
    }

    fn message(self) -> Event {
        Event::default().event("update").data(
            json!({"metrics": self.metrics, "logs": self.logs, "events": self.events, "leased": self.leased})
                .to_string(),
        )
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
