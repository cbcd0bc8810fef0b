//! Finishing a stage off the state lock: a serving coordinator hands a stage whose
//! jobs are all final to its finisher once, aggregates it without the lock, and
//! records it; a stage whose aggregation fails is handed over again later.

use crate::ops::recovery_tests::{succeeded, workspace_with};
use crate::ops::CoordinatorState;
use crate::stage::aggregate::StageToFinish;
use crate::state::records::Settings;
use crate::Coordinator;
use expcluster_core::Stage;
use std::time::Instant;
use tokio::sync::mpsc;

const CONFIG: &str = "name: t\nprimary_metric: {name: acc, goal: max}\nmetrics: [acc]\n\
job:\n  command: [python, runfile.py]\nmethods:\n  proposed: {}\n  other: {}\n\
stages:\n  implementation: {seeds: 2}\n";

fn workspace() -> tempfile::TempDir {
    workspace_with(CONFIG)
}

/// Installs a finisher channel, then runs every job of the implementation stage to
/// success; returns the channel's receiving end.
fn run_stage_with_finisher(state: &mut CoordinatorState) -> mpsc::UnboundedReceiver<StageToFinish> {
    let (sender, ready) = mpsc::unbounded_channel();
    state.stage_finisher = Some(sender);
    let now = Instant::now();
    state
        .submit_stage(Stage::Implementation, false)
        .expect("submit");
    let worker = state.register_worker("host", 8, now).expect("register");
    let leases = state.lease(&worker, 8, now).expect("lease");
    assert_eq!(leases.len(), 2, "one job per method");
    for lease in &leases {
        state
            .complete(&worker, &lease.job, 1, succeeded(0), now)
            .expect("complete");
    }
    ready
}

fn completed_events(state: &CoordinatorState) -> usize {
    std::fs::read_to_string(state.workspace.research_log_path())
        .expect("research log")
        .lines()
        .filter(|line| line.contains("\"type\":\"experiment_completed\""))
        .count()
}

#[test]
fn a_finished_stage_is_handed_over_once_and_recorded_after_aggregating_without_the_lock() {
    let dir = workspace();
    let coordinator = Coordinator::open(dir.path(), Settings::default(), false).expect("open");
    let mut ready = run_stage_with_finisher(&mut coordinator.lock());
    let stage = ready
        .try_recv()
        .expect("the stage was handed to the finisher");
    {
        let mut state = coordinator.lock();
        let run = state.latest_run(Stage::Implementation).expect("run");
        assert!(
            run.finishing && !run.finished,
            "finishing, not yet finished"
        );
        assert_eq!(
            completed_events(&state),
            0,
            "nothing recorded before aggregating"
        );
        state.finish_stages_if_done().expect("check again");
        assert!(
            ready.try_recv().is_err(),
            "a finishing stage is not handed over twice"
        );
    }
    // Aggregated while nothing holds the state lock, as the finisher does.
    let run_id = stage.run_id;
    let aggregated = stage.aggregate();
    let mut state = coordinator.lock();
    state
        .finish_aggregated(run_id, aggregated)
        .expect("recorded");
    let run = state.latest_run(Stage::Implementation).expect("run");
    assert!(run.finished && !run.finishing);
    assert!(
        run.outputs
            .iter()
            .any(|output| output.ends_with("index.json")),
        "the stage's results index is listed: {:?}",
        run.outputs
    );
    for output in &run.outputs {
        assert!(dir.path().join(output).exists(), "{output} was written");
    }
    assert_eq!(completed_events(&state), 1);
    state.finish_stages_if_done().expect("check again");
    assert!(
        ready.try_recv().is_err(),
        "a finished stage is not handed over again"
    );
}

#[test]
fn a_stage_whose_aggregation_fails_is_handed_over_again_on_the_retry() {
    let dir = workspace();
    let coordinator = Coordinator::open(dir.path(), Settings::default(), false).expect("open");
    let mut ready = run_stage_with_finisher(&mut coordinator.lock());
    let stage = ready.try_recv().expect("handed over");
    let run_id = stage.run_id;
    // The config is unreadable while the finisher aggregates.
    std::fs::remove_file(dir.path().join("config.yaml")).expect("remove config");
    let aggregated = stage.aggregate();
    let mut state = coordinator.lock();
    let failed = state
        .finish_aggregated(run_id, aggregated)
        .expect_err("no config to aggregate with");
    assert!(failed.to_string().contains("config"), "{failed}");
    assert!(state.stage_finish_pending, "the reaper retries it");
    let run = state.latest_run(Stage::Implementation).expect("run");
    assert!(!run.finishing && !run.finished);
    std::fs::write(dir.path().join("config.yaml"), CONFIG).expect("config back");
    // What the reaper does on its next tick.
    state.stage_finish_pending = false;
    state.finish_stages_if_done().expect("retry");
    let stage = ready.try_recv().expect("handed over again");
    assert_eq!(stage.run_id, run_id);
    drop(state);
    let aggregated = stage.aggregate();
    let mut state = coordinator.lock();
    state
        .finish_aggregated(run_id, aggregated)
        .expect("recorded");
    assert!(
        state
            .latest_run(Stage::Implementation)
            .expect("run")
            .finished
    );
    assert_eq!(completed_events(&state), 1);
}
