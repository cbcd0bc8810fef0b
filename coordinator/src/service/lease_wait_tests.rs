//! Waiting lease calls on a real coordinator (no sockets): a queued job is handed to
//! the first waiting call that can take it, in the lock that queued it, and no other
//! call is woken. The runtime has one thread, so no waiting task runs between the
//! submission and the checks after it: a job found running right after the submit
//! returned was handed out by the submit itself, not by a call's periodic re-check.

use super::worker_service::lease_waiting;
use crate::state::lifecycle::JobState;
use crate::state::records::Settings;
use crate::Coordinator;
use expcluster_core::{Stage, WorkerId};
use expcluster_proto::v1;
use std::sync::Arc;
use std::time::Instant;
use tokio::task::JoinHandle;

fn workspace(resources: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = format!(
        "name: t\nprimary_metric: {{name: acc, goal: max}}\nmetrics: [acc]\n\
         job:\n  command: [python, runfile.py]\nmethods:\n  proposed: {{}}\n\
         stages:\n  implementation: {{seeds: 1}}\n{resources}"
    );
    std::fs::write(dir.path().join("config.yaml"), config).expect("config");
    std::fs::write(dir.path().join("runfile.py"), "print('acc: 1')\n").expect("runfile");
    dir
}

fn open(dir: &tempfile::TempDir) -> Arc<Coordinator> {
    Coordinator::open(dir.path(), Settings::default(), false).expect("open")
}

fn register(coordinator: &Coordinator, name: &str, slots: u32) -> WorkerId {
    coordinator
        .lock()
        .register_worker(name, slots, Instant::now())
        .expect("register")
}

/// A lease call of `worker` for `free_slots` jobs, waiting up to 20 s.
fn waiting(
    coordinator: &Arc<Coordinator>,
    worker: &WorkerId,
    free_slots: u32,
) -> JoinHandle<v1::LeaseResponse> {
    let coordinator = coordinator.clone();
    let request = v1::LeaseRequest {
        worker_id: worker.0.clone(),
        free_slots,
        wait_ms: 20_000,
    };
    tokio::spawn(async move { lease_waiting(&coordinator, request).await.expect("lease") })
}

/// Lets the spawned calls run until `count` of them wait in line.
async fn until_in_line(coordinator: &Coordinator, count: usize) {
    while coordinator.lock().lease_waiters.len() < count {
        tokio::task::yield_now().await;
    }
}

/// Lease calls of each (worker, free slots), in line in that order.
async fn in_line(
    coordinator: &Arc<Coordinator>,
    calls: &[(&WorkerId, u32)],
) -> Vec<JoinHandle<v1::LeaseResponse>> {
    let mut handles = Vec::new();
    for (worker, free_slots) in calls {
        handles.push(waiting(coordinator, worker, *free_slots));
        until_in_line(coordinator, handles.len()).await;
    }
    handles
}

fn submit(coordinator: &Coordinator) {
    coordinator
        .submit_stage(Stage::Implementation, false)
        .expect("submit");
}

fn holder(coordinator: &Coordinator) -> Option<WorkerId> {
    let state = coordinator.lock();
    let job = state.jobs.values().next()?;
    match &job.state {
        JobState::Running { worker, .. } => Some(worker.clone()),
        _ => None,
    }
}

#[tokio::test]
async fn a_job_queued_while_workers_wait_goes_to_the_first_in_line_and_wakes_no_other() {
    let dir = workspace("");
    let coordinator = open(&dir);
    let workers: Vec<WorkerId> = (0..3)
        .map(|i| register(&coordinator, &format!("n{i}"), 1))
        .collect();
    let line: Vec<(&WorkerId, u32)> = workers.iter().map(|w| (w, 1)).collect();
    let calls = in_line(&coordinator, &line).await;
    submit(&coordinator);
    assert_eq!(holder(&coordinator), Some(workers[0].clone()));
    assert_eq!(coordinator.lock().lease_waiters.len(), 2);
    let mut calls = calls.into_iter();
    let first = calls.next().expect("first call").await.expect("join");
    assert_eq!(first.jobs.len(), 1);
    // The others still wait, in line.
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    for call in calls {
        assert!(!call.is_finished(), "a call with nothing to start answered");
        call.abort();
    }
}

#[tokio::test]
async fn a_call_that_cannot_take_the_job_is_passed_over_for_one_that_can() {
    let dir = workspace("");
    let coordinator = open(&dir);
    let full = register(&coordinator, "full", 1);
    let free = register(&coordinator, "free", 1);
    // First in line, but with no free slot: it cannot take the job.
    let mut calls = in_line(&coordinator, &[(&full, 0), (&free, 1)])
        .await
        .into_iter();
    let (cannot, can) = (calls.next().expect("call"), calls.next().expect("call"));
    submit(&coordinator);
    assert_eq!(holder(&coordinator), Some(free.clone()));
    assert_eq!(can.await.expect("join").jobs.len(), 1);
    assert!(!cannot.is_finished());
    assert_eq!(coordinator.lock().lease_waiters.len(), 1);
    cannot.abort();
}

#[tokio::test]
async fn a_gang_placed_by_one_waiting_call_hands_its_other_rank_to_the_other_call() {
    let dir = workspace("resources: {data_parallel: 2}\n");
    let coordinator = open(&dir);
    let a = register(&coordinator, "a", 1);
    let b = register(&coordinator, "b", 1);
    let calls = in_line(&coordinator, &[(&a, 1), (&b, 1)]).await;
    submit(&coordinator);
    // Both ranks went out in the submission's lock.
    assert_eq!(coordinator.lock().lease_waiters.len(), 0);
    let ranks: Vec<u32> = futures::future::join_all(calls)
        .await
        .into_iter()
        .map(|answer| answer.expect("join").jobs)
        .map(|jobs| {
            assert_eq!(jobs.len(), 1);
            jobs[0].rank
        })
        .collect();
    assert_eq!(ranks, vec![0, 1]);
}

#[tokio::test]
async fn leases_handed_to_a_call_that_went_away_go_to_the_next_call() {
    let dir = workspace("");
    let coordinator = open(&dir);
    let gone = register(&coordinator, "gone", 1);
    let next = register(&coordinator, "next", 1);
    let mut calls = in_line(&coordinator, &[(&gone, 1), (&next, 1)])
        .await
        .into_iter();
    let (call_gone, call_next) = (calls.next().expect("call"), calls.next().expect("call"));
    submit(&coordinator);
    assert_eq!(holder(&coordinator), Some(gone.clone()));
    // Its session ends before the call saw its lease: the call is dropped.
    call_gone.abort();
    assert!(call_gone.await.expect_err("aborted").is_cancelled());
    let answer = call_next.await.expect("join");
    assert_eq!(answer.jobs.len(), 1);
    assert_eq!(answer.jobs[0].attempt, 2);
    assert_eq!(holder(&coordinator), Some(next));
    assert_eq!(coordinator.lock().lease_waiters.len(), 0);
}

#[tokio::test]
async fn a_call_dropped_while_waiting_leaves_the_line() {
    let dir = workspace("");
    let coordinator = open(&dir);
    let worker = register(&coordinator, "w", 1);
    let call = in_line(&coordinator, &[(&worker, 1)]).await.remove(0);
    call.abort();
    assert!(call.await.expect_err("aborted").is_cancelled());
    assert_eq!(coordinator.lock().lease_waiters.len(), 0);
    submit(&coordinator);
    assert_eq!(
        holder(&coordinator),
        None,
        "a job was handed to a call that is gone"
    );
}

#[tokio::test]
async fn a_call_of_a_worker_forgotten_while_it_waited_is_told_so_when_a_job_is_queued() {
    let dir = workspace("");
    let coordinator = open(&dir);
    let forgotten = register(&coordinator, "gone", 1);
    let request = v1::LeaseRequest {
        worker_id: forgotten.0.clone(),
        free_slots: 1,
        wait_ms: 20_000,
    };
    let call = {
        let coordinator = coordinator.clone();
        tokio::spawn(async move { lease_waiting(&coordinator, request).await })
    };
    until_in_line(&coordinator, 1).await;
    // Silent for far longer than six leases: forgotten.
    let later = Instant::now() + std::time::Duration::from_secs(24 * 3600);
    coordinator.lock().expire_leases(later).expect("expire");
    submit(&coordinator);
    assert_eq!(coordinator.lock().lease_waiters.len(), 0);
    let answer = call.await.expect("join");
    assert_eq!(
        answer.expect_err("a forgotten worker got a lease").code(),
        tonic::Code::NotFound
    );
    assert_eq!(holder(&coordinator), None);
}
