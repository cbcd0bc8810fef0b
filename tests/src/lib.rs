//! The test harness: real `expcluster` processes on loopback.
//!
//! All integration tests live in one test binary (`tests/it/`). They start the real
//! binary (`target/<profile>/expcluster`, built by `cargo test --workspace`), bind
//! port 0 and read the coordinator's announced address, and wait on predicates with
//! [`wait_until`], never on fixed sleeps. The Python used by command jobs and by the
//! numpy/scipy cross-checks is the venv of `scripts/setup.sh`; when it is missing a
//! test fails and says so, it never skips.

#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod browser;
pub mod docs;
pub mod netns;

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The workspace of each coordinator started here, by address: workers and CLI calls
/// aimed at an address get that workspace's token (auth is on by default).
static WORKSPACES: Mutex<Vec<(String, PathBuf)>> = Mutex::new(Vec::new());

/// The token file of `role` ("worker" or "client") a coordinator writes in `workspace`.
pub fn token_file(workspace: &Path, role: &str) -> PathBuf {
    workspace.join(".expcluster").join(format!("{role}.token"))
}

/// The workspace of the coordinator started at `address`, if this process started it.
pub fn workspace_of(address: &str) -> Option<PathBuf> {
    let known = WORKSPACES.lock().unwrap_or_else(|p| p.into_inner());
    known
        .iter()
        .rev()
        .find(|(a, _)| a == address)
        .map(|(_, w)| w.clone())
}

/// Records that the coordinator at `address` serves `workspace` (for tests that start
/// their coordinator themselves): workers and CLI calls aimed at it get its tokens.
pub fn remember_workspace(address: &str, workspace: &Path) {
    let mut known = WORKSPACES.lock().unwrap_or_else(|p| p.into_inner());
    known.retain(|(a, _)| a != address);
    known.push((address.to_owned(), workspace.to_owned()));
}

/// Sets EXPCLUSTER_TOKEN_FILE to the `role` token of the coordinator at `address`.
fn with_token(command: &mut Command, address: Option<&str>, role: &str) {
    command
        .env_remove("EXPCLUSTER_TOKEN")
        .env_remove("EXPCLUSTER_TOKEN_FILE");
    if let Some(workspace) = address.and_then(workspace_of) {
        command.env("EXPCLUSTER_TOKEN_FILE", token_file(&workspace, role));
    }
}

/// The `expcluster` binary of the same build profile as this test.
pub fn expcluster_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    // target/<profile>/deps/it-<hash> → target/<profile>/expcluster
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target profile dir");
    let bin = profile_dir.join("expcluster");
    assert!(
        bin.exists(),
        "{} is missing: build it first with `cargo build --release --bins` (scripts/test.sh does)",
        bin.display()
    );
    bin
}

/// The venv python with numpy, scipy and scikit-learn.
pub fn python() -> PathBuf {
    let path = std::env::var_os("EXPCLUSTER_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME")
                .map(PathBuf::from)
                .unwrap_or_default();
            home.join(".cache/expcluster/venv/bin/python")
        });
    assert!(
        path.exists(),
        "{} is missing: run scripts/setup.sh (it installs numpy, scipy and scikit-learn)",
        path.display()
    );
    path
}

/// PATH with the venv first, so `python` in job commands is the venv's.
pub fn path_with_venv() -> String {
    let venv_bin = python().parent().expect("venv bin").to_path_buf();
    format!(
        "{}:{}",
        venv_bin.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

/// Polls `predicate` every 50 ms until it holds or `timeout` passes (then panics
/// with `what`).
pub fn wait_until(timeout: Duration, what: &str, mut predicate: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !predicate() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for: {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A throwaway experiment workspace.
pub struct TestWorkspace {
    _dir: tempfile::TempDir,
    pub root: PathBuf,
}

impl TestWorkspace {
    /// Creates `<tmp>/<idea>/` with `config.yaml` and the given extra files.
    pub fn new(idea: &str, config: &str, files: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join(idea);
        std::fs::create_dir_all(&root).expect("mkdir");
        std::fs::write(root.join("config.yaml"), config).expect("config");
        for (name, content) in files {
            std::fs::write(root.join(name), content).expect("file");
        }
        Self { _dir: dir, root }
    }

    /// `expcluster submit --stage <stage> --workspace <root> <extra>` (coordinator and
    /// workers in-process), which must succeed; returns its stdout.
    #[track_caller]
    pub fn submit_here(&self, stage: &str, extra: &[&str]) -> String {
        let root = self.root.to_str().expect("a UTF-8 workspace path");
        let mut args = vec!["submit", "--stage", stage, "--workspace", root];
        args.extend_from_slice(extra);
        assert_success(&expcluster(&args))
    }

    pub fn path(&self, relative: &str) -> PathBuf {
        self.root.join(relative)
    }

    /// Every event of research_log.jsonl.
    pub fn events(&self) -> Vec<Value> {
        events(&self.root)
    }

    pub fn events_of(&self, event_type: &str) -> Vec<Value> {
        self.events()
            .into_iter()
            .filter(|e| e["type"] == event_type)
            .collect()
    }

    /// The stored raw results (its `job_results.jsonl` line) of the attempt a log
    /// event is about.
    pub fn job_results(&self, event: &Value) -> Value {
        job_results(&self.root, event)
    }

    /// Every line of `experiment_results/job_results.jsonl`, in order.
    pub fn result_lines(&self) -> Vec<Value> {
        result_lines(&self.root)
    }

    pub fn read_json(&self, relative: &str) -> Value {
        let bytes =
            std::fs::read(self.path(relative)).unwrap_or_else(|e| panic!("{relative}: {e}"));
        serde_json::from_slice(&bytes).expect("json")
    }
}

/// Every event of research_log.jsonl in the workspace at `root` (none before it exists).
pub fn events(root: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(root.join("research_log.jsonl")).unwrap_or_default();
    text.lines()
        .map(|line| serde_json::from_str(line).expect("log line parses"))
        .collect()
}

/// Every line of `experiment_results/job_results.jsonl` in the workspace at `root`.
pub fn result_lines(root: &Path) -> Vec<Value> {
    let path = root.join("experiment_results/job_results.jsonl");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .map(|line| serde_json::from_str(line).expect("every results line parses"))
        .collect()
}

/// The stored raw results (its `job_results.jsonl` line) of the attempt a log event
/// (`job_completed`) is about, in the workspace at `root`.
pub fn job_results(root: &Path, event: &Value) -> Value {
    let same = |line: &Value| {
        ["job_id", "fingerprint", "stage_run", "attempt"]
            .iter()
            .all(|field| line[field] == event[field])
    };
    let mut matching: Vec<Value> = result_lines(root).into_iter().filter(same).collect();
    matching
        .pop()
        .unwrap_or_else(|| panic!("no results line for the attempt of {event}"))
}

/// A process killed when dropped.
pub struct Proc {
    pub child: Child,
}

impl Proc {
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), signal);
    }

    /// Waits for the process to exit, up to `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `expcluster coordinator` on 127.0.0.1:0; returns it and its address.
pub fn start_coordinator(workspace: &Path, extra: &[&str]) -> (Proc, String) {
    start_coordinator_at(workspace, "127.0.0.1:0", extra)
}

/// `expcluster coordinator` on a given address (a restart reuses the old port).
pub fn start_coordinator_at(workspace: &Path, listen: &str, extra: &[&str]) -> (Proc, String) {
    let mut child = Command::new(expcluster_bin())
        .args(["coordinator", "--workspace"])
        .arg(workspace)
        .args(["--listen", listen])
        .args(extra)
        .env("PATH", path_with_venv())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start coordinator");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("read announce line");
    let address = line
        .split_whitespace()
        .find(|word| word.starts_with("127.0.0.1:"))
        .unwrap_or_else(|| panic!("coordinator did not announce its address: {line:?}"))
        .to_owned();
    remember_workspace(&address, workspace);
    (Proc { child }, address)
}

/// `expcluster worker` with `slots` slots.
pub fn start_worker(address: &str, slots: u32, work_dir: &Path) -> Proc {
    let mut command = Command::new(expcluster_bin());
    with_token(&mut command, Some(address), "worker");
    let child = command
        .args([
            "worker",
            "--coordinator",
            address,
            "--slots",
            &slots.to_string(),
            "--work-dir",
        ])
        .arg(work_dir)
        .env("PATH", path_with_venv())
        // Gang ranks find each other on loopback whatever this host's name resolves to.
        .env("EXPCLUSTER_ADVERTISE_HOST", "127.0.0.1")
        .env_remove("CUDA_VISIBLE_DEVICES")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start worker");
    Proc { child }
}

/// Asserts that a finished command succeeded, showing its stdout and stderr when it
/// did not; returns its stdout.
#[track_caller]
pub fn assert_success(output: &Output) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "the command failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// `expcluster submit --stage <stage> --coordinator <address> <extra>`, which must
/// succeed; returns its stdout.
#[track_caller]
pub fn submit_to(address: &str, stage: &str, extra: &[&str]) -> String {
    let mut args = vec!["submit", "--stage", stage, "--coordinator", address];
    args.extend_from_slice(extra);
    assert_success(&expcluster(&args))
}

/// Runs `expcluster <args>` to its end.
/// A call with `--coordinator ADDRESS` carries the client token of the coordinator
/// started at that address.
pub fn expcluster(args: &[&str]) -> Output {
    let address = args
        .windows(2)
        .find(|pair| pair[0] == "--coordinator")
        .map(|pair| pair[1]);
    let mut command = Command::new(expcluster_bin());
    with_token(&mut command, address, "client");
    command
        .args(args)
        .env("PATH", path_with_venv())
        .env_remove("EXPCLUSTER_COORDINATOR")
        .output()
        .expect("run expcluster")
}

/// Loads a `.npy` with numpy and returns `{"shape": [...], "values": [...]}` (values
/// flattened; nan and inf as strings).
pub fn numpy_load(path: &Path) -> Value {
    let script = "import json,sys,numpy as np\na=np.load(sys.argv[1])\nprint(json.dumps({'shape':list(a.shape),'dtype':str(a.dtype),'values':[v if np.isfinite(v) else str(v) for v in a.astype(float).ravel().tolist()]}))";
    let output = Command::new(python())
        .args(["-c", script])
        .arg(path)
        .output()
        .expect("python");
    assert!(
        output.status.success(),
        "numpy could not load {}: {}",
        path.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("json from python")
}
