//! expcluster on a real Slurm (issues 8 and 25): the two-node Slurm of
//! `deploy/slurm/local-cluster.sh`, started here when it is not running. A test fails,
//! never skips, when Slurm cannot start (it needs root).
//!
//! The nodes are hosts: each node's slurmd, and so every worker and job Slurm starts
//! there, has its own network namespace, address and host name (`ecslurm1`,
//! `ecslurm2`). A coordinator the tests start here listens on the controller's address
//! on the nodes' network (`local-cluster.sh address`), which the nodes reach; on a
//! node, 127.0.0.1 is the node's own.
//!
//! Workers are started only the way a user starts them: `sbatch` of the project's
//! batch scripts, or `expcluster slurm launch`. Preemption is Slurm's own signal
//! (`scancel --batch --signal=USR2` is what `--signal=B:USR2@<grace>` sends), and a lost
//! worker is a plain `scancel`.

use expcluster_tests::{
    assert_success, expcluster_bin, path_with_venv, python, wait_until, Proc, TestWorkspace,
};
use serde_json::Value;
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

/// A job holds while its marker file says so; it prints where it ran.
const RUNFILE: &str = r#"
import json, os, socket, time
params = json.loads(os.environ["EXP_CONFIG"])["params"]
# The node it ran on: ecslurm<N> -> N (-1 elsewhere).
host = socket.gethostname()
node = host[len("ecslurm"):] if host.startswith("ecslurm") else ""
print(f"node: {int(node) if node.isdigit() else -1}")
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
        if !running_as_root() {
            return Err("the Slurm tests need root: they start a two-node Slurm whose nodes \
                        are network namespaces (deploy/slurm/local-cluster.sh up); run them \
                        as root (e.g. sudo -E cargo test --release -p expcluster-tests --test it slurm)"
                .to_owned());
        }
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

/// Whether this process runs as root (the owner of /proc/self is its effective user).
fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|meta| meta.uid() == 0)
}

/// The controller's address on the nodes' network: the bridge in this (the root)
/// namespace, which every node reaches.
fn bridge_address() -> String {
    let output = Command::new(script("local-cluster.sh"))
        .arg("address")
        .output()
        .expect("run local-cluster.sh address");
    let address = assert_success(&output).trim().to_owned();
    assert!(!address.is_empty(), "local-cluster.sh printed no address");
    address
}

/// `expcluster coordinator` here, on the bridge address (port 0), so that workers on
/// the nodes reach it; returns it and its address.
fn start_coordinator_for_nodes(ws: &TestWorkspace) -> (Proc, String) {
    let host = bridge_address();
    let mut child = Command::new(expcluster_bin())
        .args(["coordinator", "--workspace"])
        .arg(&ws.root)
        .args(["--listen", &format!("{host}:0")])
        .env("PATH", path_with_venv())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start coordinator");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("read announce line");
    let address = line
        .split_whitespace()
        .find(|word| word.starts_with(&format!("{host}:")))
        .unwrap_or_else(|| panic!("coordinator did not announce an address on {host}: {line:?}"))
        .to_owned();
    (Proc { child }, address)
}

/// A Slurm job cancelled when the test ends, whatever happened.
struct SlurmJob {
    id: String,
}

impl SlurmJob {
    /// Slurm's state of the job (of every array task), e.g. "RUNNING", "PENDING"; empty once gone.
    fn states(&self) -> Vec<String> {
        squeue(&self.id, "%T")
    }
}

/// One squeue field (`format`, e.g. "%T" or "%N") of a job, a line per array task.
fn squeue(job: &str, format: &str) -> Vec<String> {
    let output = Command::new("squeue")
        .args(["-h", "-j", job, "-o", format])
        .output()
        .expect("squeue");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| l.trim().to_owned())
        .collect()
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
        .env_remove("EXPCLUSTER_ADVERTISE_HOST")
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
        .env_remove("EXPCLUSTER_ADVERTISE_HOST")
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

/// Waits until the wall clock enters a second later than the current one.
fn wait_for_the_next_second() {
    let seconds_now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    };
    let start = seconds_now();
    while seconds_now() <= start {
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn log_of(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// N of the node name `ecslurm<N>`.
fn node_number(node: &str) -> f64 {
    node.strip_prefix("ecslurm")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{node:?} is not a node of the local Slurm"))
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
    let address = allocation_coordinator_address(&ws);

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
        !ws.path(ALLOCATION_ADDRESS_FILE).exists(),
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
    let (_coordinator, address) = start_coordinator_for_nodes(&ws);
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
    // slurmd revoked the first incarnation's credential when Slurm killed it, and it
    // compares credential times in whole seconds: an incarnation started within the
    // second of the requeue is refused ("Job credential revoked") and ends for good,
    // so the start is moved only once the clock has passed that second.
    wait_for_the_next_second();
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
    let (_coordinator, address) = start_coordinator_for_nodes(&ws);
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
    // One worker a node: the array's tasks spread over the two nodes.
    let nodes: BTreeSet<String> = squeue(&array.id, "%N").into_iter().collect();
    assert_eq!(
        nodes.len(),
        2,
        "the two workers run on two nodes: {nodes:?}"
    );

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
    let holder_node = node_number(&squeue(&holder, "%N").concat());
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
    assert_eq!(
        metric(&completed[0], "node"),
        3.0 - holder_node,
        "the job completed on the other node: {}",
        completed[0]
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

/// A gang rank as users write it for torchrun; each rank records where it ran and the
/// rendezvous it was given, then all-reduces over gloo (TCP between the nodes).
const GANG_RUNFILE: &str = r#"
import datetime, json, os, socket
import torch
import torch.distributed as dist
rank = int(os.environ["RANK"])
params = json.loads(os.environ["EXP_CONFIG"])["params"]
seen = {"host": socket.gethostname(), "master_addr": os.environ["MASTER_ADDR"],
        "world_size": int(os.environ["WORLD_SIZE"])}
path = os.path.join(params["markers"], f"rank{rank}.a{os.environ['EXP_ATTEMPT']}")
with open(path + ".tmp", "w") as f:
    json.dump(seen, f)
os.rename(path + ".tmp", path)
dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=60))
total = torch.tensor([float(rank + 1)])
dist.all_reduce(total)
if rank == 0:
    print(f"allreduce_sum: {total.item()}")
    print(f"world_size: {dist.get_world_size()}")
dist.destroy_process_group()
"#;

fn gang_config(markers: &Path) -> String {
    format!(
        "name: slurm\nprimary_metric: {{name: allreduce_sum, goal: max}}\nmetrics: [allreduce_sum]\n\
         job:\n  command: [python, gang.py]\n  params: {{markers: {:?}}}\n\
         methods:\n  proposed: {{}}\n\
         stages:\n  implementation: {{methods: [proposed], seeds: 1}}\n\
         resources: {{data_parallel: 2, max_attempts: 2, timeout: 2m}}\n",
        markers.display().to_string()
    )
}

/// The workers registered with the coordinator at `address`, as `workers --json` lists them.
fn registered_workers(ws: &TestWorkspace, address: &str) -> Vec<Value> {
    let output = client_command(ws)
        .args(["workers", "--json", "--coordinator", address])
        .output()
        .unwrap();
    if !output.status.success() {
        return Vec::new();
    }
    serde_json::from_slice::<Vec<Value>>(&output.stdout).unwrap_or_default()
}

#[test]
fn slurm_launch_on_two_nodes_runs_a_stage_and_a_gang_across_both_nodes() {
    let _serial = slurm_serial();
    slurm_up();
    python();
    let markers = tempfile::tempdir().unwrap();
    // Every job holds its worker's only slot for a second: both workers get jobs.
    let ws = TestWorkspace::new(
        "slurm-two-nodes",
        &config("baselines: {seeds: 3}", "markers: ., sleep: 1.0", 2).replace("{sleep: 0.2, ", "{"),
        &[("runfile.py", RUNFILE), ("gang.py", GANG_RUNFILE)],
    );
    // The user's command: a coordinator on the first node, one 1-slot worker per node.
    let launched = client_command(&ws)
        .args([
            "slurm",
            "launch",
            "--nodes",
            "2",
            "--slots",
            "1",
            "--time",
            "5",
            "--workspace",
        ])
        .arg(&ws.root)
        .output()
        .unwrap();
    let job = SlurmJob {
        id: assert_success(&launched).trim().to_owned(),
    };
    let address = allocation_coordinator_address(&ws);
    // It listens on the first node's address, which this (the root) namespace reaches.
    assert!(
        address.starts_with(&format!("{}.", node_subnet())),
        "the coordinator listens on a node's address: {address}"
    );
    wait_until(
        Duration::from_secs(40),
        "a worker on each node registers",
        || {
            let hosts: BTreeSet<String> = registered_workers(&ws, &address)
                .iter()
                .filter_map(|w| w["hostname"].as_str().map(String::from))
                .collect();
            hosts == BTreeSet::from(["ecslurm1".to_owned(), "ecslurm2".to_owned()])
        },
    );

    // A stage of ordinary jobs: they run on both nodes.
    let (status, text) = finish_submit(
        start_submit(&ws, "baselines", &address),
        Duration::from_secs(90),
    );
    let slurm_log = || log_of(&ws.path(&format!(".expcluster/slurm/expcluster-{}.out", job.id)));
    assert!(
        status.success(),
        "submit failed: {text}\nslurm log:\n{}",
        slurm_log()
    );
    let completed = ws.events_of("job_completed");
    assert_eq!(completed.len(), 6, "2 methods x 3 seeds: {completed:?}");
    let mut nodes = BTreeSet::new();
    for event in &completed {
        assert_eq!(event["status"], "succeeded", "{event}");
        assert_eq!(metric(event, "slurm_job"), job.id.parse::<f64>().unwrap());
        // The job saw its node's host name, and its worker (named after the host it
        // registered from) is that node's.
        let node = metric(event, "node");
        let worker = event["worker_id"].as_str().unwrap_or_default();
        assert!(
            worker.contains(&format!("-ecslurm{node}-")),
            "job on node {node} reported by worker {worker}"
        );
        nodes.insert(node as u32);
    }
    assert_eq!(nodes, BTreeSet::from([1, 2]), "the stage ran on both nodes");

    // A data-parallel gang of 2 ranks on two 1-slot workers: one rank a node,
    // meeting at rank 0's advertised host (its node's name) over the nodes' network.
    std::fs::write(ws.path("config.yaml"), gang_config(markers.path())).unwrap();
    let (status, text) = finish_submit(
        start_submit(&ws, "implementation", &address),
        Duration::from_secs(120),
    );
    assert!(
        status.success(),
        "submit failed: {text}\nslurm log:\n{}",
        slurm_log()
    );
    let gang: Vec<Value> = ws
        .events_of("job_completed")
        .into_iter()
        .filter(|e| e["stage"] == "implementation")
        .collect();
    assert_eq!(gang.len(), 1, "{gang:?}");
    let event = &gang[0];
    assert_eq!(event["status"], "succeeded", "{event}");
    assert_eq!(event["attempt"], 1, "{event}");
    // 1 + 2: both ranks took part in the all-reduce.
    assert_eq!(metric(event, "allreduce_sum"), 3.0, "{event}");
    assert_eq!(metric(event, "world_size"), 2.0, "{event}");
    let rank = |r: u32| -> Value {
        let path = markers.path().join(format!("rank{r}.a1"));
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_default())
            .unwrap_or_else(|err| panic!("rank {r} left no record at {}: {err}", path.display()))
    };
    let (rank0, rank1) = (rank(0), rank(1));
    let hosts = BTreeSet::from([
        rank0["host"].as_str().unwrap_or_default().to_owned(),
        rank1["host"].as_str().unwrap_or_default().to_owned(),
    ]);
    assert_eq!(
        hosts,
        BTreeSet::from(["ecslurm1".to_owned(), "ecslurm2".to_owned()]),
        "one rank on each node: {rank0} {rank1}"
    );
    for seen in [&rank0, &rank1] {
        assert_eq!(
            seen["master_addr"], rank0["host"],
            "MASTER_ADDR is rank 0's node: {seen}"
        );
        assert_eq!(seen["world_size"], 2, "{seen}");
    }

    let stopped = client_command(&ws)
        .args(["slurm", "stop", "--workspace"])
        .arg(&ws.root)
        .output()
        .unwrap();
    assert_success(&stopped);
    wait_until(
        Duration::from_secs(30),
        "the allocation is gone after slurm stop",
        || job.states().is_empty(),
    );
}

/// The nodes' subnet (`10.78.0` of the bridge address `10.78.0.1`).
fn node_subnet() -> String {
    let bridge = bridge_address();
    bridge
        .rsplit_once('.')
        .map(|(subnet, _)| subnet.to_owned())
        .unwrap_or(bridge)
}

/// Where the coordinator started inside a Slurm allocation writes its address.
const ALLOCATION_ADDRESS_FILE: &str = ".expcluster/slurm_coordinator";

/// The address the coordinator started inside a Slurm allocation writes to
/// `.expcluster/slurm_coordinator`, once it is there.
fn allocation_coordinator_address(ws: &TestWorkspace) -> String {
    let address_file = ws.path(ALLOCATION_ADDRESS_FILE);
    wait_until(
        Duration::from_secs(40),
        "the coordinator in the allocation announces its address",
        || address_file.exists(),
    );
    std::fs::read_to_string(&address_file)
        .unwrap()
        .trim()
        .to_owned()
}
