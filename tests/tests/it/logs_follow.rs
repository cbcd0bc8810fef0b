//! `expcluster logs <job> --follow` (issue 7): a running attempt's output reaches the
//! follower while the job is still running, the follower moves on to the next attempt
//! when the job runs again, and its exit status says how the job ended. Real
//! coordinator, worker and CLI processes on loopback.

use expcluster_tests::{
    expcluster, expcluster_bin, start_coordinator, start_worker, submit_to, token_file, wait_until,
    Proc, TestWorkspace,
};
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::Duration;

const JOB: &str = "implementation.proposed.s0";
/// Generous: a loaded machine may take a while to start Python.
const PATIENCE: Duration = Duration::from_secs(90);

/// Prints a line, waits for `params.release` to exist, prints another, and fails
/// when `params.fail_attempts` says this attempt should.
const RUNFILE: &str = r#"
import json, os, sys, time
params = json.loads(os.environ["EXP_CONFIG"])["params"]
attempt = int(os.environ["EXP_ATTEMPT"])
print(f"hello from attempt {attempt}")
release = params.get("release")
if release:
    while not os.path.exists(release):
        time.sleep(0.05)
print(f"goodbye from attempt {attempt}")
print("train_loss: 0.5")
print("test_accuracy: 0.75")
if attempt <= params.get("fail_attempts", 0):
    print(f"attempt {attempt} fails on purpose", file=sys.stderr)
    sys.exit(3)
"#;

fn config(params: &str, max_attempts: u32) -> String {
    format!(
        "name: follow\nprimary_metric: {{name: test_accuracy, goal: max}}\n\
         job:\n  command: [python, runfile.py]\n  params: {{{params}}}\n\
         methods:\n  proposed: {{}}\n\
         stages:\n  implementation: {{seeds: 1}}\n\
         resources: {{max_attempts: {max_attempts}, timeout: 2m}}\n"
    )
}

/// `expcluster logs JOB --follow` as a child, its stdout lines arriving on a channel
/// as they are printed, its stderr collected whole.
struct Follower {
    proc: Proc,
    lines: Receiver<String>,
    stderr: std::thread::JoinHandle<String>,
}

impl Follower {
    fn start(workspace: &Path, address: &str) -> Self {
        let mut child = Command::new(expcluster_bin())
            .args(["logs", JOB, "--follow", "--coordinator", address])
            .env_remove("EXPCLUSTER_TOKEN")
            .env("EXPCLUSTER_TOKEN_FILE", token_file(workspace, "client"))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start logs --follow");
        let stdout = child.stdout.take().expect("stdout");
        let mut stderr = child.stderr.take().expect("stderr");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        });
        Self {
            proc: Proc { child },
            lines,
            stderr,
        }
    }

    /// Stdout lines up to and including the first that equals `wanted`.
    fn read_until(&self, wanted: &str) -> Vec<String> {
        let mut seen = Vec::new();
        loop {
            match self.lines.recv_timeout(PATIENCE) {
                Ok(line) => {
                    let done = line == wanted;
                    seen.push(line);
                    if done {
                        return seen;
                    }
                }
                Err(err) => panic!("no line {wanted:?} from logs --follow ({err}); saw {seen:?}"),
            }
        }
    }

    /// Waits for the follower to exit; its status, remaining stdout lines and stderr.
    fn finish(mut self) -> (std::process::ExitStatus, Vec<String>, String) {
        let status = self
            .proc
            .wait_exit(PATIENCE)
            .expect("logs --follow exits once the job has ended");
        let rest: Vec<String> = self.lines.try_iter().collect();
        let stderr = self.stderr.join().expect("stderr reader");
        (status, rest, stderr)
    }
}

fn submit(address: &str) {
    submit_to(address, "implementation", &["--detach"]);
}

#[test]
fn follow_shows_a_running_jobs_output_live_and_exits_0_when_it_succeeds() {
    let gate = tempfile::tempdir().unwrap();
    let release = gate.path().join("release");
    let params = format!("release: {}", release.display());
    let ws = TestWorkspace::new("follow", &config(&params, 1), &[("runfile.py", RUNFILE)]);
    let (_coordinator, address) = start_coordinator(&ws.root, &[]);
    let scratch = tempfile::tempdir().unwrap();
    let _worker = start_worker(&address, 1, scratch.path());
    submit(&address);
    let follower = Follower::start(&ws.root, &address);

    // The first line arrives while the job waits for the release file, which does not
    // exist yet: it can only have come from the live stream.
    let first = follower.read_until("hello from attempt 1");
    assert_eq!(first, ["hello from attempt 1"]);
    assert!(!release.exists());
    let logs = ws.path("logs");
    assert!(
        logs.join(format!("{JOB}.a1.stdout.log.partial")).is_file(),
        "the live log is stored while the attempt runs"
    );
    assert!(
        !logs.join(format!("{JOB}.a1.stdout.log")).exists(),
        "the final log is not uploaded before the attempt ends"
    );
    // A plain `logs` call shows the output so far too.
    let so_far = expcluster(&["logs", JOB, "--coordinator", &address]);
    assert!(so_far.status.success());
    assert_eq!(
        String::from_utf8_lossy(&so_far.stdout),
        "hello from attempt 1\n"
    );
    assert!(
        String::from_utf8_lossy(&so_far.stderr).contains("still running"),
        "{}",
        String::from_utf8_lossy(&so_far.stderr)
    );

    std::fs::write(&release, b"").unwrap();
    let rest = follower.read_until("goodbye from attempt 1");
    assert_eq!(rest, ["goodbye from attempt 1"], "nothing printed twice");
    let (status, tail, stderr) = follower.finish();
    assert!(status.success(), "exit status {status:?}; stderr: {stderr}");
    assert_eq!(tail, ["train_loss: 0.5", "test_accuracy: 0.75"]);
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.contains("succeeded") && last.contains(JOB),
        "last line: {last:?}"
    );
    // The final log replaced the live one, and holds exactly what was followed.
    let stored = std::fs::read_to_string(logs.join(format!("{JOB}.a1.stdout.log"))).unwrap();
    assert_eq!(
        stored,
        "hello from attempt 1\ngoodbye from attempt 1\ntrain_loss: 0.5\ntest_accuracy: 0.75\n"
    );
    wait_until(Duration::from_secs(10), "the live log is removed", || {
        !logs.join(format!("{JOB}.a1.stdout.log.partial")).exists()
    });
}

#[test]
fn follow_moves_on_to_the_next_attempt_and_exits_nonzero_when_the_job_fails() {
    let gate = tempfile::tempdir().unwrap();
    let release = gate.path().join("release");
    let params = format!("release: {}, fail_attempts: 2", release.display());
    let ws = TestWorkspace::new(
        "follow-fail",
        &config(&params, 2),
        &[("runfile.py", RUNFILE)],
    );
    let (_coordinator, address) = start_coordinator(&ws.root, &[]);
    let scratch = tempfile::tempdir().unwrap();
    let _worker = start_worker(&address, 1, scratch.path());
    submit(&address);
    let follower = Follower::start(&ws.root, &address);
    // Attempt 1 waits for the release, so the follower is on it before it ends.
    follower.read_until("hello from attempt 1");
    std::fs::write(&release, b"").unwrap();
    let first = follower.read_until("hello from attempt 2");
    assert_eq!(
        first,
        [
            "goodbye from attempt 1",
            "train_loss: 0.5",
            "test_accuracy: 0.75",
            "hello from attempt 2"
        ]
    );
    follower.read_until("goodbye from attempt 2");
    let (status, _, stderr) = follower.finish();
    assert_eq!(status.code(), Some(1), "stderr: {stderr}");
    assert!(
        stderr.contains("attempt 1 of implementation.proposed.s0 ended; the job runs again: following attempt 2"),
        "the move to attempt 2 is announced: {stderr}"
    );
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.contains("failed")
            && last.contains("attempt 2")
            && last.contains("exited with status 3"),
        "last line: {last:?}"
    );
}

/// The coordinator side over gRPC, as a worker (or a compromised one) would call it:
/// pieces are fenced by (worker, job, attempt), confined to the logs folder, resent
/// pieces are stored once, a gap is refused, and the final upload supersedes them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_log_pieces_are_fenced_idempotent_and_superseded_by_the_final_log() {
    use crate::hostile_input::lease_the_job;
    use crate::security::{clients, config, security, token, tree, RUNFILE};
    use expcluster_proto::v1;
    use tonic::Code;

    let ws = TestWorkspace::new("pieces", &config("pieces"), &[("runfile.py", RUNFILE)]);
    let (_coordinator, address) = start_coordinator(&ws.root, &[]);
    let leased = lease_the_job(&address, &ws).await;
    let (owner, spec) = (leased.worker_id.clone(), &leased);
    let mut worker = leased.worker.clone();
    let other = worker
        .register(v1::RegisterRequest {
            hostname: "other".into(),
            slots: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .worker_id;
    let (_, client) = clients(&address, &security(Some(&token(&ws.root, "client"))));
    let piece = |worker_id: &str, stream: &str, offset: u64, content: &[u8]| v1::LogChunk {
        worker_id: worker_id.to_owned(),
        job_id: spec.job_id.clone(),
        attempt: spec.attempt,
        stream: stream.to_owned(),
        offset,
        content: content.to_vec(),
    };

    let before = tree(&ws.root);
    let mut stale = piece(&owner, "stdout", 0, b"x\n");
    stale.attempt += 1;
    let refusals = [
        (
            piece(&other, "stdout", 0, b"forged\n"),
            Code::PermissionDenied,
        ),
        (stale, Code::FailedPrecondition),
        (
            piece(&owner, "../../idea.md", 0, b"x"),
            Code::InvalidArgument,
        ),
        (piece(&owner, "stdout/../x", 0, b"x"), Code::InvalidArgument),
        (
            piece(&owner, "stdout", 0, &vec![b'x'; 64 * 1024 + 1]),
            Code::InvalidArgument,
        ),
    ];
    for (chunk, code) in refusals {
        let what = format!("{} {} {}", chunk.worker_id, chunk.stream, chunk.attempt);
        let err = worker.append_log(chunk).await.unwrap_err();
        assert_eq!(err.code(), code, "{what}: {err:?}");
    }
    assert_eq!(tree(&ws.root), before, "a refused piece wrote something");

    let sender = worker.clone();
    let send = |chunk: v1::LogChunk| {
        let mut worker = sender.clone();
        async move { worker.append_log(chunk).await.unwrap().into_inner() }
    };
    assert_eq!(send(piece(&owner, "stdout", 0, b"one\n")).await.stored, 4);
    assert_eq!(
        send(piece(&owner, "stdout", 0, b"one\n")).await.stored,
        4,
        "a resend"
    );
    assert_eq!(
        send(piece(&owner, "stdout", 10, b"x")).await.stored,
        4,
        "a gap"
    );
    let ack = send(piece(&owner, "stdout", 2, b"e\ntwo\n")).await;
    assert_eq!((ack.stored, ack.full), (8, false));

    let read = |offset: u64| {
        let mut client = client.clone();
        let job_id = spec.job_id.clone();
        async move {
            client
                .job_log(v1::JobLogRequest {
                    job_id,
                    attempt: 0,
                    stream: "stdout".into(),
                    offset,
                })
                .await
                .unwrap()
                .into_inner()
        }
    };
    let live = read(0).await;
    assert_eq!(live.content, b"one\ntwo\n");
    assert!(live.exists && live.attempt_running);
    assert_eq!(
        (live.attempt, live.latest_attempt, live.next_offset),
        (1, 1, 8)
    );
    let partial = format!("logs/{}.a1.stdout.log.partial", spec.job_id);
    let added: Vec<_> = tree(&ws.root)
        .into_keys()
        .filter(|path| !before.contains_key(path))
        .collect();
    assert_eq!(added, [ws.path(&partial)]);

    // The final upload replaces the live log; a follower at offset 8 reads on.
    worker
        .upload_artifact(v1::ArtifactUpload {
            worker_id: owner.clone(),
            job_id: spec.job_id.clone(),
            attempt: spec.attempt,
            name: "stdout".into(),
            content: b"one\ntwo\nthree\n".to_vec(),
            kind: v1::ArtifactKind::Log as i32,
        })
        .await
        .unwrap();
    assert!(!ws.path(&partial).exists());
    assert_eq!(read(8).await.content, b"three\n");
    // A piece that was in flight when the attempt ended does not revive the live log.
    let late = send(piece(&owner, "stdout", 8, b"three\n")).await;
    assert!(late.full);
    assert!(!ws.path(&partial).exists());
}
