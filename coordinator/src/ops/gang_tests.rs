//! Gang scheduling on the state itself (no sockets): placement across workers,
//! rendezvous, a lost rank requeuing the whole gang, and a restart keeping a gang.

use crate::state::gang::RendezvousAnswer;
use crate::state::lifecycle::JobState;
use crate::state::records::Settings;
use crate::state::reports::{Completion, Outcome};
use crate::Coordinator;
use expcluster_core::Stage;
use std::time::{Duration, Instant};

const CONFIG: &str = "name: t\nprimary_metric: {name: acc, goal: max}\nmetrics: [acc]\n\
job:\n  command: [python, runfile.py]\nmethods:\n  proposed: {}\n\
stages:\n  implementation: {seeds: 1}\nresources: {data_parallel: 3}\n";

fn workspace() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("config.yaml"), CONFIG).expect("config");
    std::fs::write(dir.path().join("runfile.py"), "print('acc: 1')\n").expect("runfile");
    dir
}

fn queued_job(state: &crate::ops::CoordinatorState) -> &crate::state::records::JobRecord {
    state.jobs.values().next().expect("one job")
}

/// A coordinator on `dir` with the one-job stage submitted.
fn submitted(dir: &tempfile::TempDir) -> std::sync::Arc<Coordinator> {
    let coordinator = Coordinator::open(dir.path(), Settings::default(), false).expect("open");
    coordinator
        .lock()
        .submit_stage(Stage::Implementation, false)
        .expect("submit");
    coordinator
}

fn ended(outcome: Outcome, rank: u32) -> Completion {
    Completion {
        outcome,
        exit_code: if outcome == Outcome::Succeeded { 0 } else { 1 },
        error: String::new(),
        stderr_tail: String::new(),
        metric_count: 0,
        duration_s: 0.1,
        rank,
    }
}

#[test]
fn a_gang_is_placed_whole_across_workers_and_a_lost_rank_requeues_all_of_it() {
    let dir = workspace();
    let now = Instant::now();
    let coordinator = submitted(&dir);
    let mut state = coordinator.lock();
    let a = state.register_worker("a", 2, now).expect("register");
    // Alone, worker a (2 slots) cannot hold a gang of 3: nothing starts, and the
    // status says why.
    assert!(state.lease(&a, 2, now).expect("lease").is_empty());
    let reason = state
        .gang_wait_reason(queued_job(&state), now)
        .expect("a reason");
    assert!(
        reason.contains("3 slots at once") && reason.contains("have 2"),
        "{reason}"
    );
    let b = state.register_worker("b", 2, now).expect("register");
    let leases = state.lease(&a, 2, now).expect("lease");
    assert_eq!(
        leases.iter().map(|l| l.rank).collect::<Vec<_>>(),
        vec![0, 1]
    );
    let job = leases[0].job.clone();
    // Rank 2 waits for worker b's next lease call.
    let for_b = state.lease(&b, 2, now).expect("lease");
    assert_eq!(for_b.len(), 1);
    assert_eq!(for_b[0].rank, 2);
    assert_eq!(state.workers[&a].free_slots(), 0);
    assert_eq!(state.workers[&b].free_slots(), 1);

    // Rendezvous: rank 2 waits until rank 0 publishes; only rank 0 may publish.
    assert_eq!(
        state.rendezvous(&b, &job, 1, 2, b"").expect("wait"),
        RendezvousAnswer::NotYet
    );
    assert!(state.rendezvous(&b, &job, 1, 2, b"x").is_err());
    assert!(
        state.rendezvous(&b, &job, 1, 0, b"").is_err(),
        "b does not hold rank 0"
    );
    state
        .rendezvous(&a, &job, 1, 0, b"127.0.0.1:1234")
        .expect("publish");
    assert_eq!(
        state.rendezvous(&b, &job, 1, 2, b"").expect("fetch"),
        RendezvousAnswer::Ready(b"127.0.0.1:1234".to_vec())
    );

    // Worker a keeps heartbeating, b goes silent: its rank's lease runs out.
    let later = now + Duration::from_secs(4);
    assert!(state
        .heartbeat(&a, &[(job.clone(), 1)], later)
        .expect("hb")
        .is_empty());
    let expired = now + Duration::from_secs(6);
    assert_eq!(state.expire_leases(expired).expect("expire"), 1);
    assert!(matches!(state.jobs[&job].state, JobState::Queued { .. }));
    assert_eq!(
        state.jobs[&job].failures, 0,
        "a lost rank is not the job's fault"
    );
    // Every slot of the gang is free again, and a's surviving ranks are told to stop.
    assert_eq!(state.workers[&a].free_slots(), 2);
    assert_eq!(
        state
            .heartbeat(&a, &[(job.clone(), 1)], expired)
            .expect("hb"),
        vec![(job.clone(), 1)]
    );
    let requeued: Vec<_> = crate::ops::recovery_tests::logged_events(&state)
        .into_iter()
        .filter(|e| e["type"] == "job_requeued")
        .collect();
    assert_eq!(requeued.len(), 1);
    assert_eq!(requeued[0]["worker_id"], b.0.as_str());
}

#[test]
fn a_failed_rank_fails_the_attempt_once_and_a_late_rank_completion_is_harmless() {
    let dir = workspace();
    let now = Instant::now();
    let coordinator = submitted(&dir);
    let mut state = coordinator.lock();
    let a = state.register_worker("a", 3, now).expect("register");
    let leases = state.lease(&a, 3, now).expect("lease");
    assert_eq!(leases.len(), 3);
    let job = leases[0].job.clone();
    // Rank 1 succeeding frees its slot but does not end the job.
    assert!(!state
        .complete(&a, &job, 1, ended(Outcome::Succeeded, 1), now)
        .expect("rank 1"));
    assert!(matches!(state.jobs[&job].state, JobState::Running { .. }));
    // Rank 2 failing ends the attempt: one failure, retried.
    assert!(state
        .complete(&a, &job, 1, ended(Outcome::Failed, 2), now)
        .expect("rank 2"));
    assert_eq!(state.jobs[&job].failures, 1);
    assert_eq!(state.workers[&a].free_slots(), 3);
    // Rank 0 reporting its own end afterwards changes nothing.
    assert!(state
        .complete(&a, &job, 1, ended(Outcome::Failed, 0), now)
        .is_err());
    assert_eq!(state.jobs[&job].failures, 1);
}

/// A gang of 3 over workers a (ranks 0, 1) and b (rank 2), all running.
fn gang_on_two_workers(
    state: &mut crate::ops::CoordinatorState,
    now: Instant,
) -> (
    expcluster_core::WorkerId,
    expcluster_core::WorkerId,
    expcluster_core::JobId,
) {
    let a = state.register_worker("a", 2, now).expect("register");
    let b = state.register_worker("b", 1, now).expect("register");
    let leases = state.lease(&a, 2, now).expect("lease");
    assert_eq!(leases.len(), 2);
    assert_eq!(state.lease(&b, 1, now).expect("lease").len(), 1);
    (a, b, leases[0].job.clone())
}

#[test]
fn ranks_that_lost_a_peer_wait_for_the_peer_whose_lease_then_requeues_the_gang_uncounted() {
    let dir = workspace();
    let now = Instant::now();
    let coordinator = submitted(&dir);
    let mut state = coordinator.lock();
    let (a, _b, job) = gang_on_two_workers(&mut state, now);
    // Worker b dies: ranks 0 and 1 see their ring break and stop.
    for rank in [0, 1] {
        assert!(!state
            .complete(&a, &job, 1, ended(Outcome::PeerLost, rank), now)
            .expect("peer lost"));
        assert!(
            matches!(state.jobs[&job].state, JobState::Running { .. }),
            "a lost peer alone does not end the attempt"
        );
    }
    assert_eq!(state.workers[&a].free_slots(), 2, "their slots are free");
    // Worker a heartbeats on without the job; b is silent: b's lease runs out.
    let expired = now + Duration::from_secs(6);
    state.heartbeat(&a, &[], expired).expect("heartbeat");
    assert_eq!(state.expire_leases(expired).expect("expire"), 1);
    assert!(matches!(state.jobs[&job].state, JobState::Queued { .. }));
    assert_eq!(
        state.jobs[&job].failures, 0,
        "a dead peer is no one's failure"
    );
    assert!(
        state.jobs[&job].error.contains("lease expired"),
        "{}",
        state.jobs[&job].error
    );
}

#[test]
fn a_rank_that_failed_is_counted_once_whatever_its_peers_reported_first() {
    let dir = workspace();
    let now = Instant::now();
    let coordinator = submitted(&dir);
    let mut state = coordinator.lock();
    let (a, b, job) = gang_on_two_workers(&mut state, now);
    assert!(!state
        .complete(&a, &job, 1, ended(Outcome::PeerLost, 0), now)
        .expect("rank 0"));
    assert!(state
        .complete(&b, &job, 1, ended(Outcome::Failed, 2), now)
        .expect("rank 2 failed"));
    assert_eq!(state.jobs[&job].failures, 1);
    // Rank 1's late report changes nothing.
    assert!(state
        .complete(&a, &job, 1, ended(Outcome::PeerLost, 1), now)
        .is_err());
    assert_eq!(state.jobs[&job].failures, 1);
}

#[test]
fn every_rank_losing_its_peers_with_every_worker_alive_is_one_failed_attempt() {
    let dir = workspace();
    let now = Instant::now();
    let coordinator = submitted(&dir);
    let mut state = coordinator.lock();
    let (a, b, job) = gang_on_two_workers(&mut state, now);
    for (worker, rank) in [(&a, 0), (&a, 1)] {
        assert!(!state
            .complete(worker, &job, 1, ended(Outcome::PeerLost, rank), now)
            .expect("peer lost"));
    }
    assert!(state
        .complete(&b, &job, 1, ended(Outcome::PeerLost, 2), now)
        .expect("the last rank"));
    assert!(matches!(state.jobs[&job].state, JobState::Queued { .. }));
    assert_eq!(state.jobs[&job].failures, 1, "counted once, not per rank");
    assert!(state.jobs[&job].error.contains("every rank lost its peers"));
}

#[test]
fn a_restart_keeps_the_placement_and_the_rendezvous_of_a_running_gang() {
    let dir = workspace();
    let now = Instant::now();
    let (a, b, job) = {
        let coordinator = submitted(&dir);
        let mut state = coordinator.lock();
        let a = state.register_worker("a", 2, now).expect("register");
        let b = state.register_worker("b", 1, now).expect("register");
        let leases = state.lease(&a, 2, now).expect("lease");
        let job = leases[0].job.clone();
        state
            .rendezvous(&a, &job, 1, 0, b"127.0.0.1:4321")
            .expect("publish");
        (a, b, job)
    };
    let coordinator = Coordinator::open(dir.path(), Settings::default(), false).expect("reopen");
    let mut state = coordinator.lock();
    let gang = state.jobs[&job].gang.clone().expect("the gang is restored");
    let workers: Vec<_> = gang.ranks.iter().map(|r| r.worker.clone()).collect();
    assert_eq!(workers, vec![a.clone(), a.clone(), b.clone()]);
    assert_eq!(state.workers[&a].free_slots(), 0);
    assert_eq!(state.workers[&b].free_slots(), 0);
    // Rank 2 still gets the id rank 0 published before the restart.
    assert_eq!(
        state.rendezvous(&b, &job, 1, 2, b"").expect("fetch"),
        RendezvousAnswer::Ready(b"127.0.0.1:4321".to_vec())
    );
    // Rank 2's worker heartbeats its rank after the restart: it is still current.
    assert!(state
        .heartbeat(&b, &[(job.clone(), 1)], Instant::now())
        .expect("hb")
        .is_empty());
}

#[test]
fn time_the_coordinator_could_not_hear_workers_is_given_back_to_their_leases() {
    let dir = workspace();
    let now = Instant::now();
    let coordinator = submitted(&dir);
    let mut state = coordinator.lock();
    let lease = state.settings.lease_timeout;
    let a = state.register_worker("a", 2, now).expect("register");
    let b = state.register_worker("b", 2, now).expect("register");
    let job = state.lease(&a, 2, now).expect("lease")[0].job.clone();
    assert_eq!(state.lease(&b, 2, now).expect("lease").len(), 1);

    // Deaf for 3 leases, from just after the last beats: every lease has run out
    // by the clock, but none of it is the workers' doing.
    let deaf = lease * 3;
    let back = now + deaf + Duration::from_millis(10);
    state.excuse_deaf_period(deaf, back);
    assert_eq!(state.expire_leases(back).expect("expire"), 0);
    assert!(matches!(state.jobs[&job].state, JobState::Running { .. }));

    // Never more than a fresh lease: silent for a whole lease after coming back,
    // the gang is lost as usual.
    state.excuse_deaf_period(deaf, back);
    assert_eq!(state.expire_leases(back + lease).expect("expire"), 1);
    assert!(matches!(state.jobs[&job].state, JobState::Queued { .. }));
    assert_eq!(state.jobs[&job].failures, 0);
}
