//! The docs are executed (issue 25): every shell block of README.md and docs/*.md
//! says who runs it (`tests/src/docs.rs`), and the `run: local` blocks run here as a
//! reader runs them, so the docs cannot drift from the CLI again.
//!
//! A reader's shell ([`ReaderShell`]) is a fresh directory with the built
//! `expcluster` first on PATH and `$EDITOR` a no-op; each command goes through
//! `bash -e` and must exit 0. A block that serves a cluster runs on this one
//! machine: `expcluster coordinator` and `expcluster worker` are started in the
//! background, the coordinator on 127.0.0.1 at a free port, every `--coordinator`
//! address (`head-node:50051`) pointed at it as `localhost:<port>`, and its token
//! files copied into the directory, as the docs tell the reader to copy them to the
//! other machines. Nothing else in a command is changed.
//!
//! The blocks that need more than an empty directory, and the promises worth
//! checking after them, have their own test; any other `run: local` block runs in a
//! fresh directory holding a copy of `examples/`.

use expcluster_tests::docs::{all_doc_blocks, Marker, ShellBlock};
use expcluster_tests::{expcluster_bin, path_with_venv, wait_until, Proc};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// How long one foreground command of a block may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(180);

/// The blocks run by a test of their own: (file, how the first command starts).
const BLOCKS_WITH_OWN_TEST: &[(&str, &str)] = &[
    ("README.md", "expcluster init my-idea"),
    ("docs/security.md", "openssl req -x509"),
    ("docs/security.md", "expcluster coordinator"),
];

/// The environment variables of the CLI that a developer's shell may hold and that
/// would change what the docs' commands do.
const CLI_ENVIRONMENT: &[&str] = &[
    "EXPCLUSTER_COORDINATOR",
    "EXPCLUSTER_TOKEN",
    "EXPCLUSTER_TOKEN_FILE",
    "EXPCLUSTER_TLS_CA",
    "EXPCLUSTER_TLS_CERT",
    "EXPCLUSTER_TLS_KEY",
    "EXPCLUSTER_TLS_DOMAIN",
    "EXPCLUSTER_ADVERTISE_HOST",
    "EXPCLUSTER_DATA_DIR",
];

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .expect("the repository root")
}

/// The shell block of `file` (relative to the repository) whose first command
/// starts with `first`; it must be marked `run: local`.
fn local_block(file: &str, first: &str) -> ShellBlock {
    let path = repo_root().join(file);
    let block = all_doc_blocks(&repo_root())
        .into_iter()
        .find(|b| b.file == path && b.commands.first().is_some_and(|c| c.starts_with(first)))
        .unwrap_or_else(|| panic!("{file} has no shell block starting with `{first}`"));
    assert_eq!(
        block.marker,
        Marker::Local,
        "{}: this block has a test of its own here; mark it <!-- run: local -->",
        block.location()
    );
    block
}

/// A reader at a terminal: see the module's comment.
struct ReaderShell {
    /// The coordinator and workers, with the files holding their output; first, so
    /// that they are killed before their directory is removed.
    servers: Vec<(Proc, PathBuf)>,
    dir: tempfile::TempDir,
    /// The announced address of the coordinator a block started.
    coordinator: Option<String>,
    commands_run: usize,
}

impl ReaderShell {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("home")).expect("mkdir");
        std::fs::create_dir_all(dir.path().join("output")).expect("mkdir");
        Self {
            servers: Vec::new(),
            dir,
            coordinator: None,
            commands_run: 0,
        }
    }

    /// The reader's working directory.
    fn cwd(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    /// `bash -e -c <script>` in the reader's directory and environment.
    fn bash(&self, script: &str) -> Command {
        let bin_dir = expcluster_bin().parent().expect("target dir").to_owned();
        let mut command = Command::new("bash");
        command
            .args(["-e", "-c", script])
            .current_dir(self.cwd())
            .env(
                "PATH",
                format!("{}:{}", bin_dir.display(), path_with_venv()),
            )
            .env("EDITOR", "true")
            .env("VISUAL", "true")
            .stdin(Stdio::null());
        for name in CLI_ENVIRONMENT {
            command.env_remove(name);
        }
        command
    }

    /// A new file for a command's output, outside the reader's directory.
    fn output_file(&mut self, name: &str) -> PathBuf {
        self.commands_run += 1;
        self.dir
            .path()
            .join("output")
            .join(format!("{:02}-{name}", self.commands_run))
    }

    /// Runs every command of `block` in order and returns the stdout of each.
    fn run(&mut self, block: &ShellBlock) -> Vec<String> {
        let mut outputs = Vec::new();
        for command in &block.commands {
            let words: Vec<&str> = command.split_whitespace().take(2).collect();
            match words.as_slice() {
                ["expcluster", "coordinator"] => self.start_coordinator(block, command),
                ["expcluster", "worker"] => self.start_worker(block, command),
                _ => {
                    let command = self.pointed_at_coordinator(block, command);
                    outputs.push(self.run_to_end(block, &command));
                }
            }
        }
        outputs
    }

    /// Runs one command to its end, which must be exit status 0; returns its stdout.
    #[track_caller]
    fn run_to_end(&mut self, block: &ShellBlock, command: &str) -> String {
        let stdout_path = self.output_file("stdout");
        let stderr_path = self.output_file("stderr");
        let mut proc = Proc {
            child: self
                .bash(command)
                .stdout(std::fs::File::create(&stdout_path).expect("stdout file"))
                .stderr(std::fs::File::create(&stderr_path).expect("stderr file"))
                .spawn()
                .expect("start bash"),
        };
        let status = proc.wait_exit(COMMAND_TIMEOUT);
        let stdout = std::fs::read_to_string(&stdout_path).unwrap_or_default();
        let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
        let ended = match status {
            Some(status) if status.success() => return stdout,
            Some(status) => status.to_string(),
            None => format!("still running after {COMMAND_TIMEOUT:?}"),
        };
        panic!(
            "{}: `{command}` failed ({ended}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}{}",
            block.location(),
            self.server_output()
        );
    }

    /// Starts `expcluster coordinator` in the background on 127.0.0.1 at a free
    /// port, waits for its announcement, and copies its token files here.
    fn start_coordinator(&mut self, block: &ShellBlock, command: &str) {
        let command = with_listen_address(command, "127.0.0.1:0");
        let output = self.spawn_server(block, &command, "coordinator");
        wait_until(
            Duration::from_secs(30),
            "the coordinator's announcement",
            || {
                std::fs::read_to_string(&output).is_ok_and(|text| text.contains(" listening on "))
                    || self.a_server_exited()
            },
        );
        assert!(
            !self.a_server_exited(),
            "{}: `{command}` exited:{}",
            block.location(),
            self.server_output()
        );
        let announcement = std::fs::read_to_string(&output).expect("coordinator output");
        let line = announcement
            .lines()
            .find(|line| line.contains(" listening on "))
            .expect("the announcement line");
        // "expcluster coordinator listening on 127.0.0.1:PORT for WORKSPACE"
        let mut words = line.split_whitespace().skip_while(|w| *w != "on").skip(1);
        let address = words.next().expect("the announced address").to_owned();
        let workspace = PathBuf::from(words.nth(1).expect("the announced workspace"));
        for role in ["worker", "client"] {
            let token = workspace.join(".expcluster").join(format!("{role}.token"));
            std::fs::copy(&token, self.cwd().join(format!("{role}.token")))
                .unwrap_or_else(|e| panic!("{}: {e}", token.display()));
        }
        self.coordinator = Some(address);
    }

    fn start_worker(&mut self, block: &ShellBlock, command: &str) {
        let command = self.pointed_at_coordinator(block, command);
        self.spawn_server(block, &command, "worker");
    }

    fn spawn_server(&mut self, block: &ShellBlock, command: &str, name: &str) -> PathBuf {
        let output = self.output_file(name);
        let file = std::fs::File::create(&output).expect("server output file");
        let child = self
            .bash(&format!("exec {command}"))
            .stdout(file.try_clone().expect("file"))
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("{}: cannot start `{command}`: {e}", block.location()));
        self.servers.push((Proc { child }, output.clone()));
        output
    }

    fn a_server_exited(&mut self) -> bool {
        self.servers
            .iter_mut()
            .any(|(proc, _)| !matches!(proc.child.try_wait(), Ok(None)))
    }

    /// What the background servers printed, for a failure's message.
    fn server_output(&self) -> String {
        self.servers
            .iter()
            .map(|(_, path)| {
                let text = std::fs::read_to_string(path).unwrap_or_default();
                format!("\n--- {}\n{text}", path.display())
            })
            .collect()
    }

    /// `command` with its `--coordinator` address replaced by the coordinator this
    /// shell started (by name, `localhost`, so that TLS checks a name).
    fn pointed_at_coordinator(&self, block: &ShellBlock, command: &str) -> String {
        if !command.contains("--coordinator") {
            return command.to_owned();
        }
        let address = self.coordinator.as_deref().unwrap_or_else(|| {
            panic!(
                "{}: `{command}` needs a coordinator, and no command above it started one",
                block.location()
            )
        });
        let port = address.rsplit(':').next().expect("a port");
        with_flag_value(command, "--coordinator", &format!("localhost:{port}"))
    }
}

/// `command` with the value of `flag` (`--flag VALUE` or `--flag=VALUE`) replaced.
fn with_flag_value(command: &str, flag: &str, value: &str) -> String {
    let mut words: Vec<String> = command.split(' ').map(str::to_owned).collect();
    for index in 0..words.len() {
        if words[index] == flag && index + 1 < words.len() {
            words[index + 1] = value.to_owned();
        } else if words[index].starts_with(&format!("{flag}=")) {
            words[index] = format!("{flag}={value}");
        }
    }
    words.join(" ")
}

/// An `expcluster coordinator` command listening on `address`, given or not.
fn with_listen_address(command: &str, address: &str) -> String {
    if command.contains("--listen") {
        return with_flag_value(command, "--listen", address);
    }
    command.replacen(
        "expcluster coordinator",
        &format!("expcluster coordinator --listen {address}"),
        1,
    )
}

fn events(workspace: &Path) -> Vec<Value> {
    let path = workspace.join("research_log.jsonl");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .map(|line| serde_json::from_str(line).expect("a research log line parses"))
        .collect()
}

fn last_of<'a>(events: &'a [Value], kind: &str, stage: &str) -> &'a Value {
    events
        .iter()
        .rev()
        .find(|e| e["type"] == kind && e["stage"] == stage)
        .unwrap_or_else(|| panic!("no {kind} event for stage {stage}"))
}

/// `validate`'s last line, "per stage: implementation 1, baselines 6, ...".
fn jobs_per_stage(validate_output: &str) -> BTreeMap<String, u64> {
    let line = validate_output
        .lines()
        .find_map(|line| line.strip_prefix("per stage: "))
        .unwrap_or_else(|| panic!("validate printed no `per stage:` line:\n{validate_output}"));
    line.split(", ")
        .map(|part| {
            let (stage, jobs) = part.rsplit_once(' ').expect("`stage N`");
            (stage.to_owned(), jobs.parse().expect("a job count"))
        })
        .collect()
}

#[test]
fn every_shell_block_of_the_docs_says_who_runs_it() {
    let blocks = all_doc_blocks(&repo_root());
    let unmarked: Vec<String> = blocks
        .iter()
        .filter_map(|block| match &block.marker {
            Marker::Missing { found } => Some(format!(
                "{}: `{}`{}",
                block.location(),
                block
                    .commands
                    .first()
                    .map(String::as_str)
                    .unwrap_or_default(),
                found
                    .as_ref()
                    .map(|c| format!(" (above it: {c}, not a marker)"))
                    .unwrap_or_default()
            )),
            _ => None,
        })
        .collect();
    assert!(
        unmarked.is_empty(),
        "shell blocks without a marker; put <!-- run: local -->, <!-- run: cluster [role] --> \
         or <!-- not run: <reason> --> on the line above each (tests/src/docs.rs):\n{}",
        unmarked.join("\n")
    );
    let local = blocks.iter().filter(|b| b.marker == Marker::Local).count();
    assert!(
        local >= BLOCKS_WITH_OWN_TEST.len(),
        "only {local} `run: local` blocks found: is the parser reading the docs?"
    );
}

#[test]
fn the_your_own_idea_block_of_the_readme_runs_the_four_stages() {
    let block = local_block("README.md", "expcluster init my-idea");
    let mut shell = ReaderShell::new();
    let outputs = shell.run(&block);
    let validate_index = block
        .commands
        .iter()
        .position(|c| c.starts_with("expcluster validate"))
        .expect("the block validates");
    let matrix = jobs_per_stage(&outputs[validate_index]);
    assert_eq!(
        matrix.keys().collect::<Vec<_>>(),
        ["ablations", "baselines", "full", "implementation"],
        "the init template defines the four stages"
    );

    let workspace = shell.cwd().join("experiments/my-idea");
    let events = events(&workspace);
    for (seq, event) in events.iter().enumerate() {
        assert_eq!(
            event["seq"], seq as u64,
            "the log's seq has no gap: {event}"
        );
        assert!(event["idea_version"].as_u64() >= Some(1), "{event}");
    }
    // Each stage ran the jobs `validate` promised, and all succeeded.
    for (stage, jobs) in &matrix {
        let started = last_of(&events, "stage_started", stage);
        assert_eq!(started["jobs_total"], *jobs, "{started}");
        let completed = last_of(&events, "experiment_completed", stage);
        assert_eq!(completed["jobs_total"], *jobs, "{completed}");
        assert_eq!(completed["jobs_failed"], 0, "{completed}");
    }
    // "Submitting again runs only the jobs that have no result": `--stage all`
    // reused the implementation stage's job.
    let implementation_runs: Vec<&Value> = events
        .iter()
        .filter(|e| e["type"] == "stage_started" && e["stage"] == "implementation")
        .collect();
    assert_eq!(implementation_runs.len(), 2, "{implementation_runs:?}");
    assert_eq!(
        implementation_runs[1]["jobs_reused"], implementation_runs[1]["jobs_total"],
        "the second submission reran the implementation stage"
    );
    for summary in [
        "baseline_summary.json",
        "research_summary.json",
        "ablation_summary.json",
    ] {
        assert!(workspace.join(summary).is_file(), "{summary} is missing");
    }
}

#[test]
fn the_certificate_blocks_of_docs_security_serve_mutual_tls() {
    let make_certificates = local_block("docs/security.md", "openssl req -x509");
    let serve = local_block("docs/security.md", "expcluster coordinator");
    let mut shell = ReaderShell::new();
    shell.run(&make_certificates);

    let verified = shell.run_to_end(
        &make_certificates,
        "openssl verify -CAfile ca.pem coordinator.pem node.pem me.pem",
    );
    assert_eq!(verified.lines().count(), 3, "{verified}");
    let names = shell.run_to_end(
        &make_certificates,
        "openssl x509 -in coordinator.pem -noout -ext subjectAltName",
    );
    assert!(names.contains("DNS:head-node"), "{names}");
    for key in ["ca.key", "coordinator.key", "node.key", "me.key"] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(shell.cwd().join(key))
            .expect(key)
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{key}");
    }

    // The serving block names the workspace the README's `expcluster init` makes.
    shell.run_to_end(&serve, "expcluster init my-idea");
    let outputs = shell.run(&serve);
    let submitted = outputs.last().expect("the block submits");
    assert!(
        submitted.contains("succeeded"),
        "the stage did not succeed over mutual TLS:\n{submitted}"
    );
    let events = events(&shell.cwd().join("experiments/my-idea"));
    let completed = last_of(&events, "experiment_completed", "implementation");
    assert_eq!(completed["jobs_failed"], 0, "{completed}");
}

#[test]
fn every_other_local_block_runs_in_a_fresh_directory() {
    let root = repo_root();
    let others: Vec<ShellBlock> = all_doc_blocks(&root)
        .into_iter()
        .filter(|block| block.marker == Marker::Local)
        .filter(|block| {
            !BLOCKS_WITH_OWN_TEST.iter().any(|(file, first)| {
                block.file == root.join(file)
                    && block.commands.first().is_some_and(|c| c.starts_with(first))
            })
        })
        .collect();
    for block in others {
        let mut shell = ReaderShell::new();
        shell.run_to_end(&block, &format!("cp -r {}/examples .", root.display()));
        shell.run(&block);
    }
}
