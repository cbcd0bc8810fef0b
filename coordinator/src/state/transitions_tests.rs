//! Every transition of the job state machine, as tables a reader can scan: the
//! lifecycle (queued → leased → running → succeeded / failed / requeued / preempted /
//! cancelled), which reports a running attempt accepts (fencing), the retry backoff,
//! and when a gang's lease is lost. What the operations do around each transition
//! (logging, slots, spools) is tested in `crate::ops`.

use crate::state::gang::Gang;
use crate::state::lifecycle::{retry_backoff, Fence, JobEvent, JobState};
use expcluster_core::WorkerId;
use std::time::{Duration, Instant};

fn worker(name: &str) -> WorkerId {
    WorkerId(name.to_owned())
}

/// A state by its name in the table (attempt 1, on worker `w`).
fn state(name: &str, now: Instant) -> JobState {
    match name {
        "queued" => JobState::Queued { not_before: None },
        "running" => JobState::Running {
            worker: worker("w"),
            attempt: 1,
            lease_deadline: now,
        },
        "succeeded" => JobState::Succeeded { attempt: 1 },
        "failed" => JobState::Failed {
            reason: "exit 1".into(),
        },
        "cancelled" => JobState::Cancelled,
        other => panic!("no state {other} in the table"),
    }
}

/// An event by its name in the table.
fn event(name: &str, now: Instant) -> JobEvent {
    match name {
        "leased" => JobEvent::Leased {
            worker: worker("w"),
            attempt: 2,
            lease_deadline: now,
        },
        "renewed" => JobEvent::Renewed {
            lease_deadline: now,
        },
        "reattached" => JobEvent::Reattached {
            worker: worker("w2"),
            lease_deadline: now,
        },
        "succeeded" => JobEvent::Succeeded,
        "failed, budget left" => JobEvent::AttemptFailed {
            reason: "exit 1".into(),
            retry_at: Some(now),
        },
        "failed, budget spent" => JobEvent::AttemptFailed {
            reason: "exit 1".into(),
            retry_at: None,
        },
        "lost or preempted" => JobEvent::Interrupted,
        "cancel" => JobEvent::Cancel,
        other => panic!("no event {other} in the table"),
    }
}

const EVENTS: [&str; 8] = [
    "leased",
    "renewed",
    "reattached",
    "succeeded",
    "failed, budget left",
    "failed, budget spent",
    "lost or preempted",
    "cancel",
];

/// (state, event) → the next state, or `-` when the event is refused. Every pair
/// of the five states and eight events is here: a pair missing from the table
/// fails the test.
const LIFECYCLE: &[(&str, &str, &str)] = &[
    ("queued", "leased", "running"),
    ("queued", "renewed", "-"),
    ("queued", "reattached", "-"),
    ("queued", "succeeded", "-"),
    ("queued", "failed, budget left", "-"),
    ("queued", "failed, budget spent", "-"),
    ("queued", "lost or preempted", "-"),
    ("queued", "cancel", "cancelled"),
    ("running", "leased", "-"),
    ("running", "renewed", "running"),
    ("running", "reattached", "running"),
    ("running", "succeeded", "succeeded"),
    ("running", "failed, budget left", "queued"),
    ("running", "failed, budget spent", "failed"),
    ("running", "lost or preempted", "queued"),
    ("running", "cancel", "cancelled"),
    ("succeeded", "leased", "-"),
    ("succeeded", "renewed", "-"),
    ("succeeded", "reattached", "-"),
    ("succeeded", "succeeded", "-"),
    ("succeeded", "failed, budget left", "-"),
    ("succeeded", "failed, budget spent", "-"),
    ("succeeded", "lost or preempted", "-"),
    ("succeeded", "cancel", "-"),
    ("failed", "leased", "-"),
    ("failed", "renewed", "-"),
    ("failed", "reattached", "-"),
    ("failed", "succeeded", "-"),
    ("failed", "failed, budget left", "-"),
    ("failed", "failed, budget spent", "-"),
    ("failed", "lost or preempted", "-"),
    ("failed", "cancel", "-"),
    ("cancelled", "leased", "-"),
    ("cancelled", "renewed", "-"),
    ("cancelled", "reattached", "-"),
    ("cancelled", "succeeded", "-"),
    ("cancelled", "failed, budget left", "-"),
    ("cancelled", "failed, budget spent", "-"),
    ("cancelled", "lost or preempted", "-"),
    ("cancelled", "cancel", "-"),
];

#[test]
fn the_lifecycle_table_holds_for_every_state_and_event() {
    let now = Instant::now();
    for from in ["queued", "running", "succeeded", "failed", "cancelled"] {
        for on in EVENTS {
            let row = LIFECYCLE
                .iter()
                .find(|(s, e, _)| *s == from && *e == on)
                .unwrap_or_else(|| panic!("the table has no row for {from} + {on}"));
            let got = match state(from, now).apply(event(on, now)) {
                Ok(next) => next.name(),
                Err(refused) => {
                    assert_eq!(
                        (refused.state, refused.event),
                        (from, event(on, now).name())
                    );
                    "-"
                }
            };
            assert_eq!(got, row.2, "{from} + {on}");
        }
    }
    assert_eq!(LIFECYCLE.len(), 5 * EVENTS.len());
}

#[test]
fn what_a_transition_carries_into_the_next_state() {
    let now = Instant::now();
    let later = now + Duration::from_secs(5);
    let running = state("running", now);
    // A lease starts the attempt it names, on the worker it names.
    assert_eq!(
        state("queued", now).apply(event("leased", later)),
        Ok(JobState::Running {
            worker: worker("w"),
            attempt: 2,
            lease_deadline: later,
        })
    );
    // A renewal moves only the deadline.
    assert_eq!(
        running.apply(JobEvent::Renewed {
            lease_deadline: later
        }),
        Ok(JobState::Running {
            worker: worker("w"),
            attempt: 1,
            lease_deadline: later,
        })
    );
    // A restarted worker keeps the attempt's number under its new id.
    assert_eq!(
        running.apply(event("reattached", later)),
        Ok(JobState::Running {
            worker: worker("w2"),
            attempt: 1,
            lease_deadline: later,
        })
    );
    // Success keeps the attempt that succeeded; a retry waits for its backoff; a
    // requeue after a lost worker or a preemption does not wait.
    assert_eq!(
        running.apply(JobEvent::Succeeded),
        Ok(JobState::Succeeded { attempt: 1 })
    );
    assert_eq!(
        running.apply(event("failed, budget left", later)),
        Ok(JobState::Queued {
            not_before: Some(later)
        })
    );
    assert_eq!(
        running.apply(JobEvent::Interrupted),
        Ok(JobState::Queued { not_before: None })
    );
    assert_eq!(
        running.apply(event("failed, budget spent", later)),
        Ok(JobState::Failed {
            reason: "exit 1".into()
        })
    );
}

/// (the job's state, the report's worker and attempt) → the fence. The job's attempt
/// is 1, leased to `w`.
const FENCING: &[(&str, &str, u32, Fence)] = &[
    ("running", "w", 1, Fence::Current),
    ("running", "other", 1, Fence::HeldElsewhere),
    ("running", "w", 0, Fence::Over),
    ("running", "w", 2, Fence::Over),
    ("queued", "w", 1, Fence::Over),
    ("succeeded", "w", 1, Fence::Over),
    ("failed", "w", 1, Fence::Over),
    ("cancelled", "w", 1, Fence::Over),
];

#[test]
fn only_the_current_attempt_on_its_own_worker_may_report() {
    let now = Instant::now();
    for (job, from, attempt, want) in FENCING {
        assert_eq!(
            state(job, now).fence(&worker(from), *attempt),
            *want,
            "{job}, report of attempt {attempt} from {from}"
        );
    }
}

#[test]
fn retries_back_off_from_half_a_second_to_a_minute() {
    let table = [
        (1, 500),
        (2, 1_000),
        (3, 2_000),
        (4, 4_000),
        (8, 60_000),
        (50, 60_000),
    ];
    for (failures, millis) in table {
        assert_eq!(
            retry_backoff(failures),
            Duration::from_millis(millis).min(Duration::from_secs(60)),
            "after {failures} failures"
        );
    }
}

#[test]
fn a_gang_is_lost_when_a_rank_lease_runs_out_unless_it_stopped_for_a_lost_peer() {
    let now = Instant::now();
    let mut gang = Gang::new(
        &[(worker("a"), 1), (worker("b"), 1)],
        now + Duration::from_secs(5),
    );
    assert_eq!(gang.lost_rank(now), None, "every lease is current");
    gang.ranks[1].deadline = now;
    assert_eq!(gang.lost_rank(now), Some(1), "rank 1's lease ran out");
    gang.ranks[1].peer_lost = true;
    assert_eq!(
        gang.lost_rank(now),
        None,
        "a rank that stopped for a lost peer is not the one lost"
    );
}
