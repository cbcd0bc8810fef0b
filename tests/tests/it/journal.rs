//! research_log.jsonl as a journal (issue 11; RELIABILITY.md cases 11, 12, 13):
//! kill -9 the coordinator while it appends under load, restart it on the same
//! workspace, and check that every acknowledged event is there exactly once, the file
//! parses and `seq` is contiguous; a torn last line is set aside with a warning; a
//! damaged line in the middle stops the start naming its byte offset, and `--repair`
//! keeps a backup. Only the log's own recovery is relied on, not the resumption of
//! the interrupted stage.

use expcluster_tests::{
    assert_success, expcluster, expcluster_bin, path_with_venv, start_coordinator, start_worker,
    token_file, Proc, TestWorkspace,
};
use nix::sys::signal::Signal;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::time::Duration;

/// As fast as a command job gets: no imports beyond the standard library.
const RUNFILE: &str = "import os\nprint('score:', 1 + int(os.environ['EXP_SEED']) % 7)\n";

fn config(seeds: u32) -> String {
    format!(
        "name: journal\nprimary_metric: {{name: score, goal: max}}\nmetrics: [score]\n\
         job:\n  command: [python, runfile.py]\nmethods:\n  proposed: {{}}\n\
         stages:\n  implementation: {{seeds: 2}}\n  baselines: {{seeds: {seeds}}}\n\
         resources: {{max_attempts: 3, timeout: 2m}}\n"
    )
}

/// The complete lines of the log, parsed, and whether it ends in a torn line.
fn read_log(ws: &TestWorkspace) -> (Vec<Value>, bool) {
    let bytes = std::fs::read(ws.path("research_log.jsonl")).unwrap_or_default();
    let torn = !bytes.is_empty() && !bytes.ends_with(b"\n");
    let text = String::from_utf8(bytes).expect("the log is UTF-8");
    let complete: Vec<&str> = text
        .split_inclusive('\n')
        .filter(|line| line.ends_with('\n'))
        .collect();
    let events = complete
        .iter()
        .map(|line| {
            serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("log line does not parse ({e}): {line}"))
        })
        .collect();
    (events, torn)
}

/// The journal's invariants: contiguous seq from 0, the common fields on every event,
/// each acknowledged job's success present exactly once, no attempt completed twice.
fn check_journal(events: &[Value], acknowledged: &BTreeSet<String>) {
    for (index, event) in events.iter().enumerate() {
        assert_eq!(
            event["seq"].as_u64(),
            Some(index as u64),
            "seq must be contiguous: {event}"
        );
        assert!(
            event["type"].is_string() && event["time"].is_string(),
            "{event}"
        );
        assert!(
            event["idea_version"].as_u64().is_some_and(|v| v >= 1),
            "every event carries the idea version: {event}"
        );
    }
    let mut successes: BTreeMap<String, usize> = BTreeMap::new();
    let mut attempts = BTreeSet::new();
    for event in events.iter().filter(|e| e["type"] == "job_completed") {
        let id = event["job_id"].as_str().unwrap().to_owned();
        assert!(
            attempts.insert((id.clone(), event["attempt"].as_u64())),
            "attempt completed twice: {event}"
        );
        if event["status"] == "succeeded" {
            *successes.entry(id).or_default() += 1;
        }
    }
    for id in acknowledged {
        assert_eq!(
            successes.get(id),
            Some(&1),
            "the acknowledged success of {id} must be in the log exactly once"
        );
    }
    assert!(
        successes.values().all(|count| *count == 1),
        "a job succeeded twice with the same code: {successes:?}"
    );
}

/// Job ids the coordinator reports as succeeded (an answered RPC: acknowledged).
fn succeeded_jobs(address: &str) -> Option<BTreeSet<String>> {
    let output = expcluster(&[
        "status",
        "--stage",
        "baselines",
        "--json",
        "--coordinator",
        address,
    ]);
    let status: Value = serde_json::from_slice(&output.stdout).ok()?;
    Some(
        status["jobs"]
            .as_array()?
            .iter()
            .filter(|job| job["state"] == "succeeded")
            .filter_map(|job| job["job_id"].as_str().map(str::to_owned))
            .collect(),
    )
}

#[test]
fn kill_9_while_appending_loses_no_acknowledged_event() {
    let ws = TestWorkspace::new("journal", &config(200), &[("runfile.py", RUNFILE)]);
    let scratch = tempfile::tempdir().unwrap();
    let mut acknowledged = BTreeSet::new();
    let mut torn_seen = false;
    for round in 0..5u32 {
        let (mut coordinator, address) = start_coordinator(&ws.root, &[]);
        let worker = start_worker(&address, 2, &scratch.path().join(format!("w{round}")));
        // After a restart the stage may be resumed from the journal (then this
        // submission is refused as a conflict) or not; either way jobs run. A process,
        // not a thread, so it can be killed with the coordinator it talks to.
        let mut submit = Proc {
            child: Command::new(expcluster_bin())
                .args([
                    "submit",
                    "--stage",
                    "baselines",
                    "--force",
                    "--coordinator",
                    &address,
                ])
                .env("EXPCLUSTER_TOKEN_FILE", token_file(&ws.root, "client"))
                .env_remove("EXPCLUSTER_TOKEN")
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
        };
        let before = acknowledged.len();
        let target = before + 4 + 4 * round as usize;
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        while acknowledged.len() < target {
            if let Some(seen) = succeeded_jobs(&address) {
                acknowledged.extend(seen);
            }
            if round == 0 && submit.child.try_wait().unwrap().is_some() {
                let mut stderr = String::new();
                submit
                    .child
                    .stderr
                    .take()
                    .unwrap()
                    .read_to_string(&mut stderr)
                    .unwrap();
                panic!("the submission ended early: {stderr}");
            }
            if std::time::Instant::now() > deadline {
                let status = expcluster(&[
                    "status",
                    "--stage",
                    "baselines",
                    "--json",
                    "--coordinator",
                    &address,
                ]);
                panic!(
                    "round {round}: only {} of {target} jobs acknowledged; status: {}{}",
                    acknowledged.len(),
                    String::from_utf8_lossy(&status.stdout)
                        .chars()
                        .take(2000)
                        .collect::<String>(),
                    String::from_utf8_lossy(&status.stderr)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        // Appends are happening all the time now: kill mid-stream.
        coordinator.signal(Signal::SIGKILL);
        assert!(
            coordinator.wait_exit(Duration::from_secs(10)).is_some(),
            "the coordinator did not die"
        );
        drop(worker);
        drop(submit);
        let (events, torn) = read_log(&ws);
        torn_seen |= torn;
        // Before any recovery: the complete prefix already holds every acked event.
        check_journal(&events, &acknowledged);
    }
    // A last restart recovers the log (a torn tail, if a kill made one, set aside).
    let (_coordinator, _address) = start_coordinator(&ws.root, &[]);
    let (events, torn) = read_log(&ws);
    assert!(!torn, "after start-up the log ends with a complete line");
    check_journal(&events, &acknowledged);
    if torn_seen {
        assert!(!torn_files(&ws).is_empty(), "the torn tail was saved aside");
    }
    assert!(
        acknowledged.len() >= 60,
        "five rounds acknowledged at least 4 + 8 + 12 + 16 + 20 jobs"
    );
}

fn torn_files(ws: &TestWorkspace) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(&ws.root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("research_log.jsonl.torn-")
        })
        .collect()
}

/// A workspace whose log holds the events of a real (small) stage.
fn workspace_with_a_log(idea: &str) -> TestWorkspace {
    let ws = TestWorkspace::new(idea, &config(3), &[("runfile.py", RUNFILE)]);
    ws.submit_here("implementation", &[]);
    ws
}

/// Starts `expcluster coordinator` with its stderr captured; returns whether it
/// announced its address (then it is stopped) and everything it wrote to stderr.
fn start_and_stop_coordinator(ws: &TestWorkspace, extra: &[&str]) -> (bool, String) {
    let child = Command::new(expcluster_bin())
        .args(["coordinator", "--listen", "127.0.0.1:0", "--workspace"])
        .arg(&ws.root)
        .args(extra)
        .env("PATH", path_with_venv())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut proc = Proc { child };
    let mut line = String::new();
    BufReader::new(proc.child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let started = line.contains("listening on");
    if started {
        proc.signal(Signal::SIGKILL);
    }
    assert!(
        proc.wait_exit(Duration::from_secs(30)).is_some(),
        "the coordinator did not exit"
    );
    let mut stderr = String::new();
    proc.child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    (started, stderr)
}

#[test]
fn a_torn_last_line_is_set_aside_with_a_warning() {
    let ws = workspace_with_a_log("torn");
    let intact = std::fs::read(ws.path("research_log.jsonl")).unwrap();
    let (events, _) = read_log(&ws);
    let half = format!(
        "{{\"seq\":{},\"time\":\"2025-01-01T00:00:00Z\",\"type\":\"job_comp",
        events.len()
    );
    let mut damaged = intact.clone();
    damaged.extend_from_slice(half.as_bytes());
    std::fs::write(ws.path("research_log.jsonl"), &damaged).unwrap();

    let (started, stderr) = start_and_stop_coordinator(&ws, &[]);
    assert!(started, "a torn tail does not stop the start: {stderr}");
    assert!(
        stderr.contains("torn"),
        "the coordinator warns about the torn line: {stderr}"
    );
    let saved = torn_files(&ws);
    assert_eq!(saved.len(), 1, "the torn line is saved aside");
    assert_eq!(
        std::fs::read(&saved[0]).unwrap(),
        half.as_bytes(),
        "never dropped: the half line is kept as it was"
    );
    assert_eq!(
        std::fs::read(ws.path("research_log.jsonl")).unwrap(),
        intact,
        "the earlier events are intact"
    );

    // The next writer continues the sequence right after the last complete event.
    ws.submit_here("implementation", &[]);
    let (after, torn) = read_log(&ws);
    assert!(!torn);
    assert!(after.len() > events.len());
    check_journal(&after, &BTreeSet::new());
}

#[test]
fn a_damaged_line_in_the_middle_stops_the_start_and_repair_keeps_a_backup() {
    let ws = workspace_with_a_log("corrupt");
    let intact = std::fs::read(ws.path("research_log.jsonl")).unwrap();
    let lines: Vec<&[u8]> = intact.split_inclusive(|b| *b == b'\n').collect();
    assert!(lines.len() >= 4, "a stage writes several events");
    let offset: usize = lines[..2].iter().map(|l| l.len()).sum();
    let mut damaged = intact.clone();
    damaged[offset + 5] = b']'; // inside the third line
    std::fs::write(ws.path("research_log.jsonl"), &damaged).unwrap();

    let (started, stderr) = start_and_stop_coordinator(&ws, &[]);
    assert!(
        !started,
        "a damaged committed line must stop the start: {stderr}"
    );
    assert!(
        stderr.contains(&format!("byte {offset}")),
        "the error names the byte offset {offset}: {stderr}"
    );
    assert!(
        stderr.contains("--repair"),
        "the error says how to repair: {stderr}"
    );
    assert_eq!(
        std::fs::read(ws.path("research_log.jsonl")).unwrap(),
        damaged,
        "nothing is changed without --repair"
    );

    let (started, stderr) = start_and_stop_coordinator(&ws, &["--repair"]);
    assert!(started, "--repair starts: {stderr}");
    let backups: Vec<_> = std::fs::read_dir(&ws.root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("research_log.jsonl.backup-")
        })
        .collect();
    assert_eq!(backups.len(), 1, "a backup is kept");
    assert_eq!(
        std::fs::read(&backups[0]).unwrap(),
        damaged,
        "the backup is the whole damaged log"
    );
    assert_eq!(
        std::fs::read(ws.path("research_log.jsonl")).unwrap(),
        &intact[..offset],
        "the events before the damage are kept"
    );
    let (events, _) = read_log(&ws);
    check_journal(&events, &BTreeSet::new());
}

/// Seeds 0 and 1 print a loss series and a score at once; seed 2 waits for `flag`, so
/// the stage is still open when the coordinator is killed.
fn series_runfile(flag: &std::path::Path) -> String {
    format!(
        "import os, time\nseed = int(os.environ['EXP_SEED'])\nfor step in range(4):\n    \
         print('loss:', (step + 1) / (seed + 3), flush=True)\n\
         while seed == 2 and not os.path.exists({flag:?}):\n    time.sleep(0.05)\n\
         print('score:', seed + 0.5)\n"
    )
}

/// A succeeded attempt's results line (`experiment_results/job_results.jsonl`) is
/// made durable in the same group-commit round as the research-log event after it, so
/// a crash can leave the event on disk without the line (issue 10). A coordinator
/// killed right after two completions were acknowledged, whose lines are then lost
/// (one torn, as a crash mid-append leaves it, one gone), rebuilds both on restart:
/// the torn one from the attempt's spool and the event, identical to what was
/// written; the other from the `metrics.json` an older version kept per job (the
/// migration path). The stage then finishes with their values in its arrays.
#[test]
fn results_lines_lost_after_an_acknowledged_completion_are_rebuilt_on_restart() {
    let flags = tempfile::tempdir().unwrap();
    let flag = flags.path().join("go");
    let config = "name: journal\nprimary_metric: {name: score, goal: max}\n\
                  metrics: [loss, score]\njob:\n  command: [python, runfile.py]\n\
                  methods:\n  proposed: {}\nstages:\n  baselines: {seeds: 3}\n\
                  resources: {max_attempts: 3, timeout: 2m}\n";
    let ws = TestWorkspace::new("journal", config, &[("runfile.py", &series_runfile(&flag))]);
    let scratch = tempfile::tempdir().unwrap();
    let (mut coordinator, address) = start_coordinator(&ws.root, &[]);
    let worker = start_worker(&address, 3, &scratch.path().join("w0"));
    let submitted = expcluster(&[
        "submit",
        "--stage",
        "baselines",
        "--detach",
        "--coordinator",
        &address,
    ]);
    assert_success(&submitted);
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while succeeded_jobs(&address).map_or(0, |done| done.len()) < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "seeds 0 and 1 did not succeed"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Both completions are acknowledged (status answered after they were durable).
    coordinator.signal(Signal::SIGKILL);
    assert!(coordinator.wait_exit(Duration::from_secs(10)).is_some());
    drop(worker);

    let successes = ws.events_of("job_completed");
    assert_eq!(successes.len(), 2, "{successes:?}");
    let mut originals = Vec::new();
    for event in &successes {
        let original = ws.job_results(event);
        let seed = event["seed"].as_u64().unwrap() as f64;
        let expected: Vec<f64> = (1..=4).map(|step| step as f64 / (seed + 3.0)).collect();
        assert_eq!(original["series"]["loss"], serde_json::json!(expected));
        originals.push(original);
    }
    // The first success survives only as an older version's metrics.json (marked, to
    // tell it from a rebuild); the second's line is torn.
    originals[0]["duration_s"] = serde_json::json!(12345.0);
    let legacy = ws.path(&format!(
        "experiment_results/jobs/{}/{}/metrics.json",
        successes[0]["job_id"].as_str().unwrap(),
        successes[0]["fingerprint"].as_str().unwrap()
    ));
    std::fs::create_dir_all(legacy.parent().unwrap()).unwrap();
    std::fs::write(&legacy, serde_json::to_vec_pretty(&originals[0]).unwrap()).unwrap();
    let torn = serde_json::to_vec(&originals[1]).unwrap();
    std::fs::write(
        ws.path("experiment_results/job_results.jsonl"),
        &torn[..torn.len() / 2],
    )
    .unwrap();

    let (_coordinator, address) = start_coordinator(&ws.root, &[]);
    for (event, original) in successes.iter().zip(&originals) {
        assert_eq!(
            &ws.job_results(event),
            original,
            "the results line of {} rebuilt as it was",
            event["job_id"]
        );
    }
    std::fs::write(&flag, "").unwrap();
    let _worker = start_worker(&address, 3, &scratch.path().join("w1"));
    expcluster_tests::wait_until(Duration::from_secs(120), "the stage to finish", || {
        !ws.events_of("experiment_completed").is_empty()
    });
    let scores =
        expcluster_tests::numpy_load(&ws.path("experiment_results/baseline_proposed_score.npy"));
    assert_eq!(scores["values"], serde_json::json!([0.5, 1.5, 2.5]));
}
