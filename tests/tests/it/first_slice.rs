//! The first vertical slice (issue 2): a coordinator and two workers as real
//! processes on loopback, command jobs printing `NAME: VALUE` lines and writing
//! `.npy` files, everything checked in the workspace with numpy.

use expcluster_tests::{
    assert_success, expcluster, numpy_load, start_coordinator, start_worker, submit_to, wait_until,
    TestWorkspace,
};
use serde_json::Value;
use std::time::Duration;

const RUNFILE: &str = r#"
import json, os, sys, time
import numpy as np
config = json.loads(os.environ["EXP_CONFIG"])
params = config["params"]
seed = int(os.environ["EXP_SEED"])
out = os.environ["EXP_OUTPUT_DIR"]
print("starting job", os.environ["EXP_JOB_ID"], "stage", os.environ["EXP_STAGE"], "method", os.environ["EXP_METHOD"])
for step in range(params["steps"]):
    print(f"train_loss: {1.0 / (step + 1 + seed)}")
print(f"test_accuracy: {params['base'] + seed / 100}")
print("weird: nan")
print("blowup: inf")
print("not a metric line")
release = params.get("release")
if release:
    while not os.path.exists(release):
        time.sleep(0.05)
if params.get("fail"):
    print("something went wrong in the model", file=sys.stderr)
    print("Traceback: ValueError: bad shape", file=sys.stderr)
    sys.exit(3)
np.save(os.path.join(out, "curve.npy"), np.arange(seed + 3) * 0.5)
np.save(os.path.join(out, "matrix.npy"), np.full((2, 3), float(seed)))
"#;

fn config(extra_params: &str, stages: &str) -> String {
    format!(
        "name: slice\nprimary_metric: {{name: test_accuracy, goal: max}}\nmetrics: [train_loss, test_accuracy]\n\
         job:\n  command: [python, runfile.py]\n  params: {{steps: 4, base: 0.5{extra_params}}}\n\
         methods:\n  proposed: {{}}\n  baseline: {{params.base: 0.25}}\n\
         stages:\n{stages}\nresources: {{max_attempts: 2, timeout: 2m}}\n"
    )
}

#[test]
fn a_stage_of_command_jobs_lands_every_metric_and_array_in_the_workspace() {
    let ws = TestWorkspace::new(
        "slice",
        &config("", "  baselines: {seeds: 3}"),
        &[("runfile.py", RUNFILE)],
    );
    let (_coordinator, address) = start_coordinator(&ws.root, &[]);
    let scratch = tempfile::tempdir().unwrap();
    let _w1 = start_worker(&address, 1, &scratch.path().join("w1"));
    let _w2 = start_worker(&address, 1, &scratch.path().join("w2"));

    let stdout = submit_to(&address, "baselines", &[]);
    assert!(
        stdout.contains("test_accuracy"),
        "submit prints the metrics: {stdout}"
    );

    let completed = ws.events_of("job_completed");
    assert_eq!(completed.len(), 6, "2 methods x 3 seeds");
    for event in &completed {
        assert_eq!(event["status"], "succeeded");
        let seed = event["seed"].as_u64().unwrap() as f64;
        let record = ws.job_results(event);
        // Every metric line, in order, as a series.
        let losses: Vec<f64> = record["series"]["train_loss"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        let expected: Vec<f64> = (0..4)
            .map(|step| 1.0 / (step as f64 + 1.0 + seed))
            .collect();
        assert_eq!(losses, expected);
        let base = if event["method"] == "proposed" {
            0.5
        } else {
            0.25
        };
        assert_eq!(
            record["final_metrics"]["test_accuracy"].as_f64().unwrap(),
            base + seed / 100.0
        );
        // nan and inf are kept as such (as strings in JSON, as floats in the arrays).
        assert_eq!(record["series"]["weird"], serde_json::json!(["nan"]));
        assert_eq!(record["series"]["blowup"], serde_json::json!(["inf"]));
        // The job's own arrays, loaded by numpy.
        let dir = ws.path(&format!(
            "experiment_results/jobs/{}/{}",
            event["job_id"].as_str().unwrap(),
            event["fingerprint"].as_str().unwrap()
        ));
        let curve = numpy_load(&dir.join("curve.npy"));
        assert_eq!(curve["shape"], serde_json::json!([seed as usize + 3]));
        let want: Vec<f64> = (0..seed as usize + 3).map(|i| i as f64 * 0.5).collect();
        assert_eq!(curve["values"], serde_json::json!(want));
        let matrix = numpy_load(&dir.join("matrix.npy"));
        assert_eq!(matrix["shape"], serde_json::json!([2, 3]));
        assert_eq!(matrix["values"], serde_json::json!(vec![seed; 6]));
        // The worker spooled every point to its local disk before sending it.
        let spool = ["w1", "w2"]
            .iter()
            .map(|w| {
                scratch
                    .path()
                    .join(w)
                    .join("jobs")
                    .join(event["job_id"].as_str().unwrap())
                    .join("a1/metrics.spool.jsonl")
            })
            .find(|path| path.exists())
            .expect("a metric spool in the job directory");
        assert_eq!(
            std::fs::read_to_string(spool).unwrap().lines().count(),
            7,
            "4 losses, accuracy, nan, inf"
        );
        // A log per job under logs/.
        let stdout_log = ws.path(&format!(
            "logs/{}.a1.stdout.log",
            event["job_id"].as_str().unwrap()
        ));
        assert!(std::fs::read_to_string(&stdout_log)
            .unwrap()
            .contains("train_loss:"));
    }

    // Per-stage arrays: final values per seed, learning curves [seeds, steps].
    let finals = numpy_load(&ws.path("experiment_results/baseline_proposed_test_accuracy.npy"));
    assert_eq!(finals["values"], serde_json::json!([0.5, 0.51, 0.52]));
    let curves = numpy_load(&ws.path("experiment_results/baseline_baseline_train_loss_curves.npy"));
    assert_eq!(curves["shape"], serde_json::json!([3, 4]));
    let weird = numpy_load(&ws.path("experiment_results/baseline_proposed_weird.npy"));
    assert_eq!(weird["values"], serde_json::json!(["nan", "nan", "nan"]));
    let blowup = numpy_load(&ws.path("experiment_results/baseline_proposed_blowup.npy"));
    assert_eq!(blowup["values"], serde_json::json!(["inf", "inf", "inf"]));

    let types: Vec<String> = ws
        .events()
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(types.first().map(String::as_str), Some("stage_started"));
    assert_eq!(
        types.last().map(String::as_str),
        Some("experiment_completed")
    );
    for event in ws.events() {
        assert_eq!(
            event["idea_version"], 1,
            "every event carries the idea version"
        );
    }
    assert!(ws.path("baseline_summary.json").exists());
}

#[test]
fn a_failing_job_is_reported_with_its_stderr_and_the_stage_says_so() {
    let ws = TestWorkspace::new(
        "failing",
        &config(", fail: true", "  implementation: {seeds: 1}"),
        &[("runfile.py", RUNFILE)],
    );
    let (_coordinator, address) = start_coordinator(&ws.root, &[]);
    let scratch = tempfile::tempdir().unwrap();
    let _worker = start_worker(&address, 1, scratch.path());

    let output = expcluster(&[
        "submit",
        "--stage",
        "implementation",
        "--coordinator",
        &address,
    ]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(!output.status.success(), "a failed job makes submit fail");
    assert!(
        stdout.contains("failed after 2 attempt(s): exited with status 3"),
        "{stdout}"
    );
    assert!(
        stdout.contains("ValueError: bad shape"),
        "the stderr tail is shown: {stdout}"
    );

    let attempts = ws.events_of("job_attempt_failed");
    assert_eq!(attempts.len(), 1, "first attempt failed and was retried");
    let completed = ws.events_of("job_completed");
    assert_eq!(completed.len(), 1);
    assert_eq!(completed[0]["status"], "failed");
    assert!(completed[0]["stderr_tail"]
        .as_str()
        .unwrap()
        .contains("something went wrong"));
    let stage = ws.events_of("experiment_completed");
    assert_eq!(stage[0]["jobs_failed"], 1);
}

#[test]
fn non_metric_lines_are_ignored_with_a_warning_in_the_job_log() {
    let ws = TestWorkspace::new(
        "warnings",
        &config("", "  implementation: {seeds: 1}"),
        &[("runfile.py", RUNFILE)],
    );
    let output = expcluster(&[
        "submit",
        "--stage",
        "implementation",
        "--workspace",
        ws.root.to_str().unwrap(),
    ]);
    assert_success(&output);
    let notes =
        std::fs::read_to_string(ws.path("logs/implementation.proposed.s0.a1.worker.log")).unwrap();
    assert!(
        notes.contains("not `NAME: VALUE`, ignored: not a metric line"),
        "{notes}"
    );
    assert!(notes.contains("ignored: starting job"), "{notes}");
    // The seed protocol's names for the implementation stage.
    let losses = numpy_load(&ws.path("experiment_results/train_losses.npy"));
    assert_eq!(losses["shape"], serde_json::json!([4]));
    assert!(
        ws.path("experiment_results/curve.npy").exists(),
        "the job's own files are copied too"
    );
}

#[test]
fn metrics_stream_while_the_job_runs() {
    let release = tempfile::tempdir().unwrap();
    let release_file = release.path().join("go");
    let params = format!(", release: {:?}", release_file.display().to_string());
    let ws = TestWorkspace::new(
        "streaming",
        &config(&params, "  implementation: {seeds: 1}"),
        &[("runfile.py", RUNFILE)],
    );
    let (_coordinator, address) = start_coordinator(&ws.root, &[]);
    let scratch = tempfile::tempdir().unwrap();
    let _worker = start_worker(&address, 1, scratch.path());
    let submit = std::thread::spawn({
        let address = address.clone();
        move || {
            expcluster(&[
                "submit",
                "--stage",
                "implementation",
                "--coordinator",
                &address,
            ])
        }
    });
    // The job blocks until the release file exists; its metrics must already be in.
    wait_until(
        Duration::from_secs(60),
        "test_accuracy reported while the job still runs",
        || {
            let output = expcluster(&[
                "status",
                "--stage",
                "implementation",
                "--json",
                "--coordinator",
                &address,
            ]);
            let Ok(status) = serde_json::from_slice::<Value>(&output.stdout) else {
                return false;
            };
            let job = &status["jobs"][0];
            job["state"] == "running" && job["metrics"]["test_accuracy"].as_f64() == Some(0.5)
        },
    );
    std::fs::write(&release_file, b"go").unwrap();
    let output = submit.join().unwrap();
    assert_success(&output);
}

/// Waits (up to 20 s) until `count` jobs have started, so it only finishes if they ran
/// at the same time; prints the GPU its slot was given.
const SHARED_GPU_RUNFILE: &str = r#"
import json, os, time
params = json.loads(os.environ["EXP_CONFIG"])["params"]
rendezvous = params["rendezvous"]
open(os.path.join(rendezvous, os.environ["EXP_JOB_ID"]), "w").close()
deadline = time.time() + 20
while len(os.listdir(rendezvous)) < params["count"] and time.time() < deadline:
    time.sleep(0.05)
print(f"together: {len(os.listdir(rendezvous))}")
print(f"gpu: {os.environ['CUDA_VISIBLE_DEVICES']}")
"#;

#[test]
fn slots_per_gpu_runs_several_jobs_on_one_gpu_at_once() {
    let rendezvous = tempfile::tempdir().unwrap();
    let config = format!(
        "name: shared\nprimary_metric: {{name: together, goal: max}}\nmetrics: [together, gpu]\n\
         job:\n  command: [python, runfile.py]\n  params: {{count: 2, rendezvous: {:?}}}\n\
         methods:\n  proposed: {{}}\nstages:\n  implementation: {{seeds: 2}}\n",
        rendezvous.path().display().to_string()
    );
    let ws = TestWorkspace::new("shared", &config, &[("runfile.py", SHARED_GPU_RUNFILE)]);
    let (_coordinator, address) = start_coordinator(&ws.root, &[]);
    let scratch = tempfile::tempdir().unwrap();
    let _worker = expcluster_tests::Proc {
        child: std::process::Command::new(expcluster_tests::expcluster_bin())
            .args([
                "worker",
                "--coordinator",
                &address,
                "--gpus",
                "3",
                "--slots-per-gpu",
                "2",
                "--work-dir",
            ])
            .arg(scratch.path())
            .env("PATH", expcluster_tests::path_with_venv())
            .env(
                "EXPCLUSTER_TOKEN_FILE",
                expcluster_tests::token_file(&ws.root, "worker"),
            )
            .spawn()
            .unwrap(),
    };
    submit_to(&address, "implementation", &[]);
    let completed = ws.events_of("job_completed");
    assert_eq!(completed.len(), 2);
    for event in completed {
        assert_eq!(
            event["metrics"]["together"], 2.0,
            "both jobs ran at once on the shared GPU"
        );
        assert_eq!(event["metrics"]["gpu"], 3.0, "each slot sees only its GPU");
    }
}
