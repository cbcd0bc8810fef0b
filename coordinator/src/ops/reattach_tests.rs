//! A worker restarted on the same node (reattach.rs), on the state itself: the
//! attempts it still holds carry on under its new id, the rest are requeued at once,
//! the previous id is retired, a retried registration gets the same answer, and a
//! coordinator restart agrees.

use crate::error::CoordinatorError;
use crate::ops::reattach::Restart;
use crate::ops::recovery_tests::{logged_events, submit_and_lease_both, succeeded, workspace};
use crate::state::lifecycle::JobState;
use crate::state::records::Settings;
use crate::state::reports::MetricPoint;
use crate::Coordinator;
use expcluster_core::WorkerId;
use std::time::Instant;

fn point(seq: u64) -> MetricPoint {
    MetricPoint {
        seq,
        name: "acc".into(),
        step: seq,
        value: 0.5,
    }
}

fn restart(previous: &WorkerId, held: Vec<(expcluster_core::JobId, u32)>) -> Restart {
    Restart {
        previous: previous.clone(),
        held,
    }
}

fn requeue_reasons(state: &crate::ops::CoordinatorState) -> Vec<String> {
    logged_events(state)
        .iter()
        .filter(|e| e["type"] == "job_requeued")
        .map(|e| e["reason"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[test]
fn a_restarted_worker_keeps_the_attempts_it_holds_and_the_rest_are_requeued_at_once() {
    let dir = workspace();
    let now = Instant::now();
    let coordinator = Coordinator::open(dir.path(), Settings::default(), false).expect("open");
    let mut state = coordinator.lock();
    let (old, leases) = submit_and_lease_both(&mut state, now);
    assert_eq!(leases.len(), 2);
    let (kept, lost) = (leases[0].job.clone(), leases[1].job.clone());
    state
        .report_metrics(&old, &kept, 1, &[point(0), point(1)])
        .expect("metrics");

    // The restarted worker found `kept`'s process; `lost` (say a trainer job) died
    // with the old process. A claim on an attempt that is not the running one, or
    // on a job that does not run there, is not granted.
    let held = vec![(kept.clone(), 1), (lost.clone(), 7)];
    let registration = state
        .register_restarted_worker("node", 2, &restart(&old, held.clone()), now)
        .expect("register again");
    assert_ne!(registration.worker, old, "a new incarnation gets a new id");
    assert_eq!(registration.reattached, vec![(kept.clone(), 1)]);
    assert_eq!(registration.requeued, 1);
    let new = registration.worker.clone();
    assert!(matches!(
        &state.job(&kept).expect("job").state,
        JobState::Running { worker, attempt: 1, .. } if *worker == new
    ));
    assert!(matches!(
        state.job(&lost).expect("job").state,
        JobState::Queued { .. }
    ));
    assert_eq!(requeue_reasons(&state), vec!["worker_restarted"]);
    assert_eq!(state.workers[&new].running.get(&kept), Some(&1));

    // The points carry on from the next sequence number; a resend is stored once.
    assert_eq!(
        state
            .report_metrics(&new, &kept, 1, &[point(1), point(2)])
            .expect("metrics under the new id"),
        3
    );
    // The old id is retired: whatever it sends is refused.
    assert!(matches!(
        state.heartbeat(&old, &[(kept.clone(), 1)], now),
        Err(CoordinatorError::UnknownWorker(_))
    ));
    assert!(state.report_metrics(&old, &kept, 1, &[point(3)]).is_err());

    // A retried registration (its answer lost) gets the same answer, nothing more.
    let again = state
        .register_restarted_worker("node", 2, &restart(&old, held.clone()), now)
        .expect("retry");
    assert_eq!(again.worker, new);
    assert_eq!(again.reattached, vec![(kept.clone(), 1)]);
    assert_eq!(requeue_reasons(&state).len(), 1, "nothing requeued twice");

    assert!(!state
        .complete(&new, &kept, 1, succeeded(3), Instant::now())
        .expect("completes as attempt 1"));
    assert!(matches!(
        state.job(&kept).expect("job").state,
        JobState::Succeeded { attempt: 1 }
    ));
}

#[test]
fn a_coordinator_restart_after_a_reattach_knows_the_new_holder() {
    let dir = workspace();
    let now = Instant::now();
    let (old, new, kept) = {
        let coordinator = Coordinator::open(dir.path(), Settings::default(), false).expect("open");
        let mut state = coordinator.lock();
        let (old, leases) = submit_and_lease_both(&mut state, now);
        let kept = leases[0].job.clone();
        state
            .report_metrics(&old, &kept, 1, &[point(0)])
            .expect("metrics");
        let registration = state
            .register_restarted_worker("node", 2, &restart(&old, vec![(kept.clone(), 1)]), now)
            .expect("register again");
        (old, registration.worker, kept)
    };
    let coordinator = Coordinator::open(dir.path(), Settings::default(), false).expect("reopen");
    let mut state = coordinator.lock();
    let job = state.job(&kept).expect("job");
    assert!(
        matches!(&job.state, JobState::Running { worker, attempt: 1, .. } if *worker == new),
        "{:?}",
        job.state
    );
    assert_eq!(job.next_seq, 1);
    assert!(
        !state.workers.contains_key(&old),
        "the old id stays retired"
    );
    assert_eq!(state.workers[&new].running.get(&kept), Some(&1));
    let retry = state
        .register_restarted_worker(
            "node",
            2,
            &restart(&old, vec![(kept.clone(), 1)]),
            Instant::now(),
        )
        .expect("retry after the restart");
    assert_eq!(retry.worker, new);
    assert!(state
        .heartbeat(&new, &[(kept, 1)], Instant::now())
        .expect("the new id heartbeats")
        .is_empty());
}

#[test]
fn an_unknown_previous_worker_reattaches_nothing() {
    let dir = workspace();
    let now = Instant::now();
    let coordinator = Coordinator::open(dir.path(), Settings::default(), false).expect("open");
    let mut state = coordinator.lock();
    let (holder, leases) = submit_and_lease_both(&mut state, now);
    let job = leases[0].job.clone();
    // Another node naming an id it was never given: it gets nothing, and the
    // attempt stays with its holder.
    let stranger = WorkerId("w99-node-0000000000000000".into());
    let registration = state
        .register_restarted_worker("other", 1, &restart(&stranger, vec![(job.clone(), 1)]), now)
        .expect("register");
    assert!(registration.reattached.is_empty());
    assert!(matches!(
        &state.job(&job).expect("job").state,
        JobState::Running { worker, .. } if *worker == holder
    ));
    assert!(requeue_reasons(&state).is_empty());
}
