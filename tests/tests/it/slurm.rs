//! expcluster on a real Slurm (issue 8): the single-node Slurm of
//! `deploy/slurm/local-cluster.sh`, started here when it is not running. A test fails,
//! never skips, when Slurm cannot start.
//!
//! Workers are started only the way a user starts them: `sbatch` of the project's
//! batch scripts, or `expcluster slurm launch`. Preemption is Slurm's own signal
//! (`scancel --batch --signal=USR2` is what `--signal=B:USR2@<grace>` sends), and a lost
//! worker is a plain `scancel`.

use expcluster_tests::{
    assert_success, expcluster_bin, path_with_venv, python, start_coordinator, wait_until, Proc,
    TestWorkspace,
};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

/// A job holds while its marker file says so; it prints where it ran.
const RUNFILE: &str = r#"
import json, os, time
params = json.loads(os.environ["EXP_CONFIG"])["params"]
marker_dir = params["markers"]
restart = int(os.environ.get("SLURM_RESTART_COUNT", "0") or 0)
slurm_job = os.environ.get("SLURM_JOB_ID", "")
# What scancel needs to hit this task alone (an array task's own id may equal the array's).
array_job, array_task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
slurm_task = f"{array_job}_{array_task}" if array_job else slurm_job
first = os.path.join(marker_dir, f"{os.environ['EXP_JOB_ID']}.first")
print(f"score: {int(os.environ['EXP_SEED']) / 10}")
print(f"restart_count: {restart}")
print(f"slurm_job: {slurm_job or -1}")
if params.get("hold_first") and not os.path.exists(first):
    with open(first + ".tmp", "w") as f:
        f.write(slurm_task)
    os.rename(first + ".tmp", first)
    time.sleep(50)
else:
    time.sleep(params.get("sleep", 0.2))
"#;

fn config(stage: &str, params: &str, max_attempts: u32) -> String {
    format!(
        "name: slurm\nprimary_metric: {{name: score, goal: max}}\nmetrics: [score]\n\
         job:\n  command: [python, runfile.py]\n  params: {{sleep: 0.2, {params}}}\n\
         methods:\n  proposed: {{}}\n  baseline: {{params.sleep: 0.3}}\n\
         stages:\n  {stage}\nresources: {{max_attempts: {max_attempts}, timeout: 2m}}\n"
    )
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repository root")
        .to_path_buf()
}

fn script(name: &str) -> PathBuf {
    repo_root().join("deploy/slurm").join(name)
}

/// Starts the local Slurm once per test binary; panics (fails the test) when it cannot.
/// The Slurm tests share one small single-node cluster: run them one at a time, so a
/// requeued job never waits for CPUs another test's allocation holds.
fn slurm_serial() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn slurm_up() {
    static UP: OnceLock<Result<(), String>> = OnceLock::new();
    let result = UP.get_or_init(|| {
        let output = Command::new(script("local-cluster.sh"))
            .arg("up")
            .output()
            .map_err(|err| format!("cannot run local-cluster.sh: {err}"))?;
        if output.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ))
        }
    });
    if let Err(err) = result {
        panic!("the local Slurm did not start (deploy/slurm/local-cluster.sh up): {err}");
    }
}

/// A Slurm job cancelled when the test ends, whatever happened.
struct SlurmJob {
    id: String,
}

impl SlurmJob {
    /// Slurm's state of the job (of every array task), e.g. "RUNNING", "PENDING"; empty once gone.
    fn states(&self) -> Vec<String> {
        let output = Command::new("squeue")
            .args(["-h", "-j", &self.id, "-o", "%T"])
            .output()
            .expect("squeue");
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(|l| l.trim().to_owned())
            .collect()
    }
}

impl Drop for SlurmJob {
    fn drop(&mut self) {
        let _ = Command::new("scancel").arg(&self.id).status();
    }
}

/// `sbatch --parsable` of a project script with the environment the scripts read.
fn sbatch(script_name: &str, flags: &[&str], env: &[(&str, &Path)], output: &Path) -> SlurmJob {
    let mut command = Command::new("sbatch");
    command
        .arg("--parsable")
        .arg(format!("--output={}", output.display()))
        .args(flags)
        .arg(script(script_name))
        .env("PATH", path_with_venv())
        .env("EXPCLUSTER_BIN", expcluster_bin())
        .env_remove("EXPCLUSTER_COORDINATOR")
        .env_remove("EXPCLUSTER_TOKEN_FILE");
    for (name, value) in env {
        command.env(name, value);
    }
    let result = command.output().expect("run sbatch");
    assert_success(&result);
    let id = String::from_utf8_lossy(&result.stdout)
        .trim()
        .split(';')
        .next()
        .unwrap_or_default()
        .to_owned();
    assert!(!id.is_empty(), "sbatch printed no job id");
    SlurmJob { id }
}

/// `expcluster submit` in the background (it waits for the stage), with the client token.
fn start_submit(ws: &TestWorkspace, stage: &str, address: &str) -> Proc {
    let child = client_command(ws)
        .args(["submit", "--stage", stage, "--coordinator", address])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start submit");
    Proc { child }
}

fn client_command(ws: &TestWorkspace) -> Command {
    let mut command = Command::new(expcluster_bin());
    command
        .env("PATH", path_with_venv())
        .env_remove("EXPCLUSTER_COORDINATOR")
        .env_remove("EXPCLUSTER_TOKEN")
        .env("EXPCLUSTER_TOKEN_FILE", ws.path(".expcluster/client.token"));
    command
}

/// Waits for `submit` to exit; returns its exit status and its stdout + stderr.
fn finish_submit(mut submit: Proc, timeout: Duration) -> (std::process::ExitStatus, String) {
    use std::io::Read;
    let Some(status) = submit.wait_exit(timeout) else {
        panic!("submit did not finish within {timeout:?}");
    };
    let mut text = String::new();
    if let Some(mut stdout) = submit.child.stdout.take() {
        let _ = stdout.read_to_string(&mut text);
    }
    if let Some(mut stderr) = submit.child.stderr.take() {
        let _ = stderr.read_to_string(&mut text);
    }
    (status, text)
}

/// The numeric job id of an array task (`<array>_<task>`), as the runfile's metric has it.
fn job_id_of(task: &str) -> f64 {
    let output = Command::new("scontrol")
        .args(["show", "job", task])
        .output()
        .expect("scontrol");
    let text = String::from_utf8_lossy(&output.stdout);
    text.split_whitespace()
        .find_map(|word| word.strip_prefix("JobId="))
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| panic!("scontrol knows no job {task}: {text}"))
}

fn log_of(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn metric(event: &Value, name: &str) -> f64 {
    event["metrics"][name]
        .as_f64()
        .unwrap_or_else(|| panic!("no metric {name} in {event}"))
}

#[test]
fn a_stage_runs_on_workers_started_by_sbatch_of_the_cluster_script() {
    let _serial = slurm_serial();
    slurm_up();
    python();
    let ws = TestWorkspace::new(
        "slurm-stage",
        &config("baselines: {seeds: 3}", "markers: .", 2),
        &[("runfile.py", RUNFILE)],
    );
    let out = ws.path("slurm-job.out");
    let job = sbatch(
        "expcluster-cluster.sbatch",
        &["--job-name=expcluster-test-stage", "--time=5"],
        &[
            ("EXPCLUSTER_WORKSPACE", &ws.root),
            ("EXPCLUSTER_SLOTS", Path::new("2")),
        ],
        &out,
    );
    let address_file = ws.path(".expcluster/slurm_coordinator");
    wait_until(
        Duration::from_secs(40),
        "the coordinator in the allocation announces its address",
        || address_file.exists(),
    );
    let address = std::fs::read_to_string(&address_file)
        .unwrap()
        .trim()
        .to_owned();

    let (status, text) = finish_submit(
        start_submit(&ws, "baselines", &address),
        Duration::from_secs(50),
    );
    assert!(
        status.success(),
        "submit failed: {text}\nslurm log:\n{}",
        log_of(&out)
    );

    let completed = ws.events_of("job_completed");
    assert_eq!(completed.len(), 6, "2 methods x 3 seeds: {completed:?}");
    for event in &completed {
        assert_eq!(event["status"], "succeeded");
        // Every job ran under the Slurm job, on the worker `srun` started in it.
        assert_eq!(
            metric(event, "slurm_job"),
            job.id.parse::<f64>().unwrap(),
            "{event}"
        );
        assert_eq!(
            metric(event, "score"),
            event["seed"].as_f64().unwrap() / 10.0
        );
    }
    assert!(ws.path("baseline_summary.json").exists());
    let worker_logs = ws.path(&format!(".expcluster/slurm/{}", job.id));
    assert!(
        worker_logs.join("worker-0.log").exists(),
        "srun's per-task worker log is kept"
    );

    // Cancelling the allocation ends it: the workers drain, the coordinator stops.
    assert!(Command::new("scancel")
        .arg(&job.id)
        .status()
        .unwrap()
        .success());
    wait_until(
        Duration::from_secs(30),
        "the allocation is gone after scancel",
        || job.states().is_empty(),
    );
    assert!(
        !address_file.exists(),
        "the stale coordinator address is removed: {}",
        log_of(&out)
    );
}

#[test]
fn usr2_to_a_worker_mid_job_requeues_the_job_without_spending_its_budget() {
    let _serial = slurm_serial();
    slurm_up();
    python();
    let markers = tempfile::tempdir().unwrap();
    let params = format!("markers: {}, hold_first: true", markers.path().display());
    // max_attempts 1: a preemption that spent the failure budget would fail the job.
    let ws = TestWorkspace::new(
        "slurm-preempt",
        &config(
            "implementation: {methods: [proposed], seeds: 1}",
            &params,
            1,
        ),
        &[("runfile.py", RUNFILE)],
    );
    let (_coordinator, address) = start_coordinator(&ws.root, &[]);
    let out = ws.path("slurm-worker.out");
    let job = sbatch(
        "expcluster-workers.sbatch",
        &["--job-name=expcluster-test-preempt", "--time=5"],
        &[
            ("EXPCLUSTER_COORDINATOR", Path::new(&address)),
            ("EXPCLUSTER_WORKSPACE", &ws.root),
        ],
        &out,
    );
    let submit = start_submit(&ws, "implementation", &address);
    let first = markers.path().join("implementation.proposed.s0.first");
    wait_until(
        Duration::from_secs(40),
        "the job starts on the Slurm worker",
        || first.exists(),
    );
    assert_eq!(
        std::fs::read_to_string(&first).unwrap(),
        job.id,
        "the job ran inside the Slurm job"
    );

    // What `--signal=B:USR2@<grace>` delivers before the time limit.
    let signalled = Command::new("scancel")
        .args(["--batch", "--signal=USR2", &job.id])
        .status()
        .unwrap();
    assert!(signalled.success());
    wait_until(Duration::from_secs(20), "a job_preempted event", || {
        !ws.events_of("job_preempted").is_empty()
    });
    // The batch script requeued itself; skip Slurm's fixed hold on requeued jobs.
    wait_until(
        Duration::from_secs(20),
        "Slurm requeues the worker job",
        || job.states() == ["PENDING"],
    );
    assert!(Command::new("scontrol")
        .args(["update", &format!("jobid={}", job.id), "starttime=now"])
        .status()
        .unwrap()
        .success());

    let (status, text) = finish_submit(submit, Duration::from_secs(90));
    assert!(
        status.success(),
        "submit failed: {text}\nslurm log:\n{}",
        log_of(&out)
    );
    let preempted = ws.events_of("job_preempted");
    assert_eq!(preempted.len(), 1, "{preempted:?}");
    assert_eq!(preempted[0]["attempt"], 1);
    assert!(
        ws.events_of("job_failed").is_empty(),
        "a preemption is not a failure"
    );
    let completed = ws.events_of("job_completed");
    assert_eq!(completed.len(), 1);
    let done = &completed[0];
    assert_eq!(done["status"], "succeeded");
    assert_eq!(done["attempt"], 2);
    // The requeued Slurm job is a new incarnation: restart count 1, a new worker id.
    assert_eq!(metric(done, "restart_count"), 1.0);
    assert_eq!(metric(done, "slurm_job"), job.id.parse::<f64>().unwrap());
    assert_ne!(done["worker_id"], preempted[0]["worker_id"]);
    let log = log_of(&out);
    assert!(
        log.contains("USR2: draining the worker") && log.contains("restart 1"),
        "{log}"
    );
}

#[test]
fn scancel_of_a_worker_moves_its_job_to_another_worker() {
    let _serial = slurm_serial();
    slurm_up();
    python();
    let markers = tempfile::tempdir().unwrap();
    let params = format!("markers: {}, hold_first: true", markers.path().display());
    let ws = TestWorkspace::new(
        "slurm-lost",
        &config(
            "implementation: {methods: [proposed], seeds: 1}",
            &params,
            3,
        ),
        &[("runfile.py", RUNFILE)],
    );
    let (_coordinator, address) = start_coordinator(&ws.root, &[]);
    // Two workers as an array, the way a user adds them: `expcluster slurm launch`.
    let launched = client_command(&ws)
        .args([
            "slurm",
            "launch",
            "--nodes",
            "2",
            "--time",
            "5",
            "--coordinator",
            &address,
            "--workspace",
        ])
        .arg(&ws.root)
        .output()
        .unwrap();
    assert_success(&launched);
    let array = SlurmJob {
        id: String::from_utf8_lossy(&launched.stdout).trim().to_owned(),
    };
    wait_until(Duration::from_secs(30), "both array tasks run", || {
        array.states() == ["RUNNING", "RUNNING"]
    });

    let submit = start_submit(&ws, "implementation", &address);
    let first = markers.path().join("implementation.proposed.s0.first");
    wait_until(
        Duration::from_secs(40),
        "the job starts on one of the workers",
        || first.exists(),
    );
    let holder = std::fs::read_to_string(&first).unwrap();
    assert!(!holder.is_empty(), "the job ran inside a Slurm job");
    let holder_job = job_id_of(&holder);
    // A plain scancel of that one array task: the worker is gone mid-job.
    assert!(Command::new("scancel")
        .arg(&holder)
        .status()
        .unwrap()
        .success());

    let (status, text) = finish_submit(submit, Duration::from_secs(90));
    assert!(status.success(), "submit failed: {text}");
    let completed = ws.events_of("job_completed");
    assert_eq!(completed.len(), 1);
    assert_eq!(completed[0]["status"], "succeeded");
    let elsewhere = metric(&completed[0], "slurm_job");
    assert_ne!(
        elsewhere, holder_job,
        "the job completed on the other worker"
    );
    assert!(completed[0]["attempt"].as_u64().unwrap() >= 2);

    // `slurm stop` cancels what `slurm launch` started.
    let stopped = client_command(&ws)
        .args(["slurm", "stop", "--workspace"])
        .arg(&ws.root)
        .output()
        .unwrap();
    assert_success(&stopped);
    wait_until(
        Duration::from_secs(30),
        "the worker array is gone after slurm stop",
        || array.states().is_empty(),
    );
    assert!(!ws.path(".expcluster/slurm_jobs").exists());
}
