//! Restart tests on the state itself (no sockets): what a coordinator rebuilds from
//! its journal and research log after it is dropped mid-stage and opened again.

use crate::state::lifecycle::JobState;
use crate::state::records::Settings;
use crate::state::reports::{Completion, MetricPoint, Outcome};
use crate::Coordinator;
use expcluster_core::Stage;
use std::time::Instant;

const CONFIG: &str = "name: t\nprimary_metric: {name: acc, goal: max}\nmetrics: [acc]\n\
job:\n  command: [python, runfile.py]\nmethods:\n  proposed: {}\n\
stages:\n  implementation: {seeds: 2}\n";

pub(crate) fn workspace() -> tempfile::TempDir {
    workspace_with(CONFIG)
}

/// A workspace with `config` as its `config.yaml` and a runfile.
pub(crate) fn workspace_with(config: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("config.yaml"), config).expect("config");
    std::fs::write(dir.path().join("runfile.py"), "print('acc: 1')\n").expect("runfile");
    dir
}

pub(crate) fn succeeded(metric_count: u64) -> Completion {
    Completion {
        outcome: Outcome::Succeeded,
        exit_code: 0,
        error: String::new(),
        stderr_tail: String::new(),
        metric_count,
        duration_s: 0.1,
        rank: 0,
    }
}

fn point(seq: u64, value: f64) -> MetricPoint {
    MetricPoint {
        seq,
        name: "acc".into(),
        step: seq,
        value,
    }
}

/// Submits the implementation stage and leases both its jobs to a new 2-slot worker.
pub(crate) fn submit_and_lease_both(
    state: &mut crate::ops::CoordinatorState,
    now: Instant,
) -> (expcluster_core::WorkerId, Vec<crate::state::reports::Lease>) {
    state
        .submit_stage(Stage::Implementation, false)
        .expect("submit");
    let worker = state.register_worker("host", 2, now).expect("register");
    let leases = state.lease(&worker, 2, now).expect("lease");
    (worker, leases)
}

#[test]
fn a_restart_keeps_running_attempts_metrics_and_completion_answers() {
    let dir = workspace();
    let now = Instant::now();
    let (worker, done, running) = {
        let coordinator = Coordinator::open(dir.path(), Settings::default(), false).expect("open");
        let mut state = coordinator.lock();
        let (worker, leases) = submit_and_lease_both(&mut state, now);
        assert_eq!(leases.len(), 2);
        let (done, running) = (leases[0].job.clone(), leases[1].job.clone());
        state
            .report_metrics(&worker, &done, 1, &[point(0, 0.5)])
            .expect("metrics");
        assert!(!state
            .complete(&worker, &done, 1, succeeded(1), now)
            .expect("complete"));
        state
            .report_metrics(&worker, &running, 1, &[point(0, 0.25), point(1, 0.75)])
            .expect("metrics");
        (worker, done, running)
    };
    // Opened again, as after a crash.
    let coordinator = Coordinator::open(dir.path(), Settings::default(), false).expect("reopen");
    let mut state = coordinator.lock();
    assert!(matches!(
        state.job(&done).expect("job").state,
        JobState::Succeeded { attempt: 1 }
    ));
    let job = state.job(&running).expect("job");
    assert!(matches!(&job.state, JobState::Running { worker: w, attempt: 1, .. } if *w == worker));
    assert_eq!(job.next_seq, 2, "acknowledged points survive");
    assert_eq!(job.series["acc"], vec![0.25, 0.75]);
    // The same worker id still works, and a resend is stored once.
    assert!(state
        .heartbeat(&worker, &[(running.clone(), 1)], Instant::now())
        .expect("heartbeat")
        .is_empty());
    assert_eq!(
        state
            .report_metrics(&worker, &running, 1, &[point(1, 0.75), point(2, 1.0)])
            .expect("resend"),
        3
    );
    // A replayed completion gets the original answer; a different one is refused.
    assert!(!state
        .complete(&worker, &done, 1, succeeded(1), Instant::now())
        .expect("replay"));
    let mut failed = succeeded(1);
    failed.outcome = Outcome::Failed;
    failed.exit_code = 1;
    assert!(state
        .complete(&worker, &done, 1, failed, Instant::now())
        .is_err());
    assert!(!state
        .complete(&worker, &running, 1, succeeded(3), Instant::now())
        .expect("complete"));
    let run = state.latest_run(Stage::Implementation).expect("run");
    assert!(run.finished, "the stage finishes after the restart");
    let completions = logged_events(&state)
        .iter()
        .filter(|e| e["type"] == "job_completed")
        .count();
    assert_eq!(
        completions, 2,
        "one completion per job, none replayed into the log"
    );
}

/// A job reused by a later run of its stage keeps its earlier run's results line; if
/// a crash lost that line, the restart rebuilds it from the spool and the event.
#[test]
fn a_lost_results_line_of_a_job_reused_by_a_later_run_is_rebuilt() {
    let dir = workspace();
    let now = Instant::now();
    {
        let coordinator = Coordinator::open(dir.path(), Settings::default(), false).expect("open");
        let mut state = coordinator.lock();
        let (worker, leases) = submit_and_lease_both(&mut state, now);
        for lease in leases {
            let value = if lease.job.as_str().ends_with("s0") {
                0.5
            } else {
                0.75
            };
            state
                .report_metrics(&worker, &lease.job, 1, &[point(0, value)])
                .expect("metrics");
            state
                .complete(&worker, &lease.job, 1, succeeded(1), now)
                .expect("complete");
        }
        // The second run reuses both jobs.
        state
            .submit_stage(Stage::Implementation, false)
            .expect("resubmit");
        assert_eq!(state.stage_runs.len(), 2);
    }
    // The crash lost the lines (the log's events reached the disk first).
    let results = dir.path().join("experiment_results/job_results.jsonl");
    assert_eq!(
        std::fs::read_to_string(&results)
            .expect("read")
            .lines()
            .count(),
        2
    );
    std::fs::write(&results, "").expect("truncate");
    let coordinator = Coordinator::open(dir.path(), Settings::default(), false).expect("reopen");
    let state = coordinator.lock();
    let mut finals: Vec<f64> = state
        .completed
        .values()
        .filter_map(|done| done.line)
        .map(|at| {
            state.results.read(at).expect("line")["final_metrics"]["acc"]
                .as_f64()
                .expect("acc")
        })
        .collect();
    finals.sort_by(f64::total_cmp);
    assert_eq!(
        finals,
        vec![0.5, 0.75],
        "both lines rebuilt from their spools"
    );
}

/// The events of the state's research log, read from its file (a serving state keeps
/// none in memory).
pub(crate) fn logged_events(state: &crate::ops::CoordinatorState) -> Vec<serde_json::Value> {
    std::fs::read_to_string(state.workspace.research_log_path())
        .expect("the research log is readable")
        .lines()
        .map(|line| serde_json::from_str(line).expect("every logged line is JSON"))
        .collect()
}

/// A lease whose answer was never sent goes back to the queue at once, recorded as
/// `lease_not_delivered`; a lease named by an attempt that is no longer running is
/// left alone; and a restart reads the job as queued, not as running on the worker.
#[test]
fn an_undelivered_lease_is_requeued_at_once_and_a_restart_agrees() {
    let dir = workspace();
    let now = Instant::now();
    let (returned, kept) = {
        let coordinator = Coordinator::open(dir.path(), Settings::default(), false).expect("open");
        let mut state = coordinator.lock();
        let (_worker, leases) = submit_and_lease_both(&mut state, now);
        let (returned, kept) = (leases[0].job.clone(), leases[1].job.clone());
        state
            .return_undelivered(&[(returned.clone(), 1), (kept.clone(), 2)])
            .expect("return");
        assert_returned_and_kept(&state, &returned, &kept);
        let requeued: Vec<_> = logged_events(&state)
            .into_iter()
            .filter(|event| event["type"] == "job_requeued")
            .collect();
        assert_eq!(requeued.len(), 1, "{requeued:?}");
        assert_eq!(requeued[0]["job_id"], returned.as_str());
        assert_eq!(requeued[0]["reason"], "lease_not_delivered");
        (returned, kept)
    };
    let coordinator = Coordinator::open(dir.path(), Settings::default(), false).expect("reopen");
    let state = coordinator.lock();
    assert_returned_and_kept(&state, &returned, &kept);
}

/// `returned` is queued again; `kept` still runs its first attempt.
fn assert_returned_and_kept(
    state: &crate::ops::CoordinatorState,
    returned: &expcluster_core::JobId,
    kept: &expcluster_core::JobId,
) {
    assert!(matches!(
        state.job(returned).expect("job").state,
        JobState::Queued { .. }
    ));
    assert!(matches!(
        state.job(kept).expect("job").state,
        JobState::Running { attempt: 1, .. }
    ));
}
