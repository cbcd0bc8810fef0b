//! The results line and the `job_completed` event are serialized from typed views of a
//! job's record; these check them byte for byte against the `json!` trees they
//! replaced, so files written before and after read the same.

use crate::ops::completion::{AttemptEvent, SuccessFields};
use crate::state::records::JobRecord;
use crate::store::job_metrics::{render, AttemptResult};
use expcluster_core::config::{ExperimentConfig, LoadedConfig};
use expcluster_core::expand::{expand_stage, StageRequest};
use expcluster_core::json_float::{map_to_json, series_to_json};
use expcluster_core::{JobDefinition, Stage, WorkerId};
use serde_json::json;
use std::path::Path;

/// The config `text` and the jobs of its full stage.
pub(crate) fn expand_full(text: &str) -> (LoadedConfig, Vec<JobDefinition>) {
    let loaded = ExperimentConfig::parse(text, Path::new("config.yaml")).expect("valid");
    let definitions = expand_stage(
        &loaded,
        StageRequest {
            stage: Stage::Full,
            code_digest: "digest",
        },
    )
    .expect("expands");
    (loaded, definitions)
}

/// A job of a swept stage, with two series (one ending in NaN) and a result file.
fn job() -> JobRecord {
    let text = "name: x\nprimary_metric: {name: acc, goal: max}\n\
                job: {command: [python, runfile.py], params: {lr: 0.1}}\n\
                methods: {proposed-1: {}}\n\
                stages: {full: {seeds: 1, sweep: {params.lr: [1.5e-7]}}}\n";
    let (_, definitions) = expand_full(text);
    let def = definitions.into_iter().next().expect("one job");
    let mut job = JobRecord::new(def, 3, std::time::Duration::from_secs(60), 4);
    job.record_point("acc", 0, 0.5);
    job.record_point("acc", 2, 0.75);
    job.record_point("loss", 0, f64::NAN);
    job.artifacts = vec!["preds.npy".to_owned()];
    job.duration_s = 1.25;
    job.exit_code = 0;
    job
}

#[test]
fn the_results_line_matches_the_former_json_tree() {
    let job = job();
    let def = &job.def;
    let result = AttemptResult {
        stage_run: 4,
        attempt: 2,
        artifacts: &job.artifacts,
        duration_s: job.duration_s,
    };
    let former = json!({
        "job_id": def.id,
        "stage_run": result.stage_run,
        "stage": def.stage,
        "variant": def.variant,
        "kind": def.kind,
        "seed": def.seed,
        "sweep_point": def.sweep_point,
        "fingerprint": def.fingerprint,
        "attempt": result.attempt,
        "series": series_to_json(&job.series),
        "final_metrics": map_to_json(&job.final_metrics()),
        "artifacts": result.artifacts,
        "duration_s": result.duration_s,
    });
    let mut expected = serde_json::to_vec(&former).expect("former");
    expected.push(b'\n');
    assert_eq!(
        String::from_utf8(render(def, &result, &job.series).expect("render")).expect("utf-8"),
        String::from_utf8(expected).expect("utf-8")
    );
}

#[test]
fn the_success_event_matches_the_former_json_tree() {
    let job = job();
    let worker = WorkerId("w-3".to_owned());
    let former = json!({
        "job_id": job.def.id,
        "stage_run": job.stage_run,
        "stage": job.def.stage,
        "method": job.def.variant,
        "seed": job.def.seed,
        "sweep_point": job.def.sweep_point,
        "fingerprint": job.def.fingerprint,
        "attempt": 2,
        "worker_id": worker.0,
        "exit_code": job.exit_code,
        "status": "succeeded",
        "metrics": map_to_json(&job.final_metrics()),
        "artifacts": job.artifacts,
        "duration_s": job.duration_s,
    });
    let success = SuccessFields {
        metrics: map_to_json(&job.final_metrics()),
        artifacts: &job.artifacts,
        duration_s: job.duration_s,
    };
    let event = AttemptEvent::new(&job, 2, &worker, "succeeded", success);
    assert_eq!(
        serde_json::to_string(&event).expect("event"),
        serde_json::to_string(&former).expect("former")
    );
}

#[test]
fn the_lease_record_matches_the_former_json_tree() {
    use crate::ops::workers::{LeaseRecord, LeasedAttempt};
    let job = job();
    let id = &job.def.id;
    let worker = WorkerId("w1-node-00ff".to_owned());
    let other = WorkerId("w2-node-0aa0".to_owned());
    let gang = vec![(worker.clone(), 2), (other.clone(), 1)];
    let record = LeaseRecord {
        worker_id: &worker.0,
        leases: vec![
            LeasedAttempt::new(id, 3, 4, None),
            LeasedAttempt::new(id, 1, 7, Some(&gang)),
        ],
    };
    // The tree the lease path built before (workers.rs).
    let former = json!({
        "worker_id": worker.0,
        "leases": [
            {"job_id": id, "attempt": 3, "stage_run": 4},
            {"job_id": id, "attempt": 1, "stage_run": 7,
             "gang": [worker.0, worker.0, other.0]},
        ],
    });
    assert_eq!(
        serde_json::to_string(&record).expect("record"),
        former.to_string()
    );
}
