//! The researcher's CLI (issue 7): `status --json`, `report` and the actionable
//! error messages against snapshots (volatile parts normalised), the figures a stage
//! writes (they exist, decode as PNG and have the fixed size), and the live progress
//! display in a real terminal (tmux).
//!
//! Snapshots live in `snapshots/`; `UPDATE_SNAPSHOTS=1` rewrites them after a
//! deliberate change (review the diff).

use expcluster_tests::{
    assert_success, expcluster, expcluster_bin, path_with_venv, start_coordinator, start_worker,
    wait_until, TestWorkspace,
};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const RUNFILE: &str = r#"
import json, os, time
params = json.loads(os.environ["EXP_CONFIG"])["params"]
seed = int(os.environ["EXP_SEED"])
for step in range(params["steps"]):
    print(f"train_loss: {1.0 / (step + 1) + 0.01 * seed}")
    time.sleep(params["sleep"])
print(f"test_accuracy: {params['base'] + 0.01 * seed}")
"#;

fn config(sleep: f64) -> String {
    format!(
        "name: cli\nprimary_metric: {{name: test_accuracy, goal: max}}\nmetrics: [train_loss, test_accuracy]\n\
         job:\n  command: [python, runfile.py]\n  params: {{base: 0.8, steps: 5, sleep: {sleep}}}\n\
         methods:\n  proposed: {{}}\n  baseline: {{params.base: 0.7}}\n\
         ablations:\n  no_trick: {{params.base: 0.75}}\n\
         stages:\n  baselines: {{seeds: 3}}\n  ablations: {{seeds: 3}}\n\
         resources: {{max_attempts: 2, timeout: 2m}}\n"
    )
}

/// Replaces what changes from run to run: ports, temp paths, times, durations.
fn normalise(text: &str, root: &Path) -> String {
    let mut out = text.replace(&root.display().to_string(), "<WORKSPACE>");
    for (pattern, with) in [
        (r"127\.0\.0\.1:\d+", "127.0.0.1:<PORT>"),
        (
            r#""(duration_s|last_seen_s)": [0-9.e-]+"#,
            "\"\\1\": <SECONDS>",
        ),
        (r#""worker_id": "[^"]+""#, "\"worker_id\": \"<WORKER>\""),
        (r#""hostname": "[^"]+""#, "\"hostname\": \"<HOST>\""),
        (
            r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)",
            "<TIME>",
        ),
        (
            r"\(tcp connect error[^)]*\)|\(transport error[^)]*\)|\(error trying to connect[^)]*\)",
            "(<CONNECT ERROR>)",
        ),
    ] {
        out = regex_replace(&out, pattern, with);
    }
    out
}

/// A tiny regex replace through Python's `re` (the test venv has it), so the test
/// crate needs no regex dependency.
fn regex_replace(text: &str, pattern: &str, with: &str) -> String {
    let output = Command::new(expcluster_tests::python())
        .args([
            "-c",
            "import re,sys; sys.stdout.write(re.sub(sys.argv[1], sys.argv[2], sys.stdin.read()))",
            pattern,
            with,
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(text.as_bytes())?;
            child.wait_with_output()
        })
        .expect("python re.sub");
    String::from_utf8(output.stdout).expect("utf-8")
}

fn check_snapshot(name: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/it/snapshots")
        .join(name);
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&path, actual).expect("write snapshot");
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|_| panic!("{} is missing: run with UPDATE_SNAPSHOTS=1", path.display()));
    assert_eq!(
        actual, expected,
        "snapshot {name} differs (UPDATE_SNAPSHOTS=1 rewrites it after a deliberate change)"
    );
}

fn stdout_of(output: &std::process::Output) -> String {
    assert_success(output)
}

#[test]
fn status_json_matches_its_snapshot_and_a_finished_stage_leaves_readable_figures() {
    let ws = TestWorkspace::new("cli", &config(0.0), &[("runfile.py", RUNFILE)]);
    let (_coordinator, address) = start_coordinator(&ws.root, &[]);
    let scratch = tempfile::tempdir().unwrap();
    let _worker = start_worker(&address, 2, &scratch.path().join("w"));
    wait_until(Duration::from_secs(20), "the worker registers", || {
        stdout_of(&expcluster(&[
            "workers",
            "--coordinator",
            &address,
            "--json",
        ]))
        .contains("worker_id")
    });
    let before = stdout_of(&expcluster(&[
        "status",
        "--coordinator",
        &address,
        "--json",
    ]));
    check_snapshot("status_before.json", &normalise(&before, &ws.root));

    stdout_of(&expcluster(&[
        "submit",
        "--stage",
        "baselines",
        "--coordinator",
        &address,
    ]));
    let overview = stdout_of(&expcluster(&[
        "status",
        "--coordinator",
        &address,
        "--json",
    ]));
    let stage = stdout_of(&expcluster(&[
        "status",
        "--stage",
        "baselines",
        "--coordinator",
        &address,
        "--json",
    ]));
    check_snapshot("status_after.json", &normalise(&overview, &ws.root));
    check_snapshot("status_stage.json", &normalise(&stage, &ws.root));

    // The coordinator drew the stage's figures when it finished.
    for figure in [
        "figures/baselines_train_loss_curves.png",
        "figures/baselines_test_accuracy_final.png",
    ] {
        let (width, height) = png_size(&ws.path(figure));
        assert_eq!((width, height), (1200, 720), "{figure}");
    }
    // `plot` redraws them and says which.
    let plotted: serde_json::Value = serde_json::from_str(&stdout_of(&expcluster(&[
        "plot",
        "--workspace",
        ws.root.to_str().unwrap(),
        "--json",
    ])))
    .unwrap();
    assert_eq!(
        plotted["figures"],
        serde_json::json!([
            "figures/baselines_train_loss_curves.png",
            "figures/baselines_test_accuracy_final.png"
        ])
    );
    // `logs` reads a finished job's stdout through the coordinator.
    let logs = stdout_of(&expcluster(&[
        "logs",
        "baselines.proposed.s1",
        "--coordinator",
        &address,
    ]));
    assert!(logs.contains("test_accuracy: 0.81"), "{logs}");
}

/// Decodes the whole PNG (not just its header) and returns its size.
fn png_size(path: &Path) -> (u32, u32) {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut reader = png::Decoder::new(std::io::BufReader::new(file))
        .read_info()
        .expect("png header");
    let mut pixels = vec![0; reader.output_buffer_size()];
    let frame = reader.next_frame(&mut pixels).expect("png pixels");
    // A figure has ink: not every pixel is the white background.
    assert!(
        pixels[..frame.buffer_size()].iter().any(|&byte| byte < 200),
        "{} is blank",
        path.display()
    );
    (frame.width, frame.height)
}

#[test]
fn report_matches_its_snapshot() {
    let ws = TestWorkspace::new("cli-report", &config(0.0), &[
        ("idea.json", r#"{"title": "cli-report", "version": 2, "last_updated": "2026-01-02T03:04:05Z", "update_reason": "claim narrowed after baselines"}"#),
        ("idea.md", "# Smoothing helps\n\nLabel smoothing raises test accuracy.\n"),
        ("idea_evolution.md", "# Evolution\n\n## v2\nNarrowed the claim (event 7).\n"),
        ("baseline_summary.json", r#"{"stage": "baselines", "methods": {"proposed": {"test_accuracy": {"n": 3, "n_failed": 0, "mean": 0.81, "std": 0.01, "ci95": [0.785, 0.835]}}, "baseline": {"test_accuracy": {"n": 2, "n_failed": 1, "mean": 0.7, "std": null, "ci95": null}}}, "best_method": "proposed", "analysis": "proposed beats baseline."}"#),
        ("research_log.jsonl", "{\"seq\": 1, \"type\": \"hypothesis_evaluated\", \"time\": \"2026-01-02T03:04:05Z\", \"idea_version\": 1, \"claim\": \"beats-baseline\", \"better\": \"proposed\", \"than\": \"baseline\", \"metric\": \"test_accuracy\", \"stage\": \"baselines\", \"status\": \"supported\", \"summary\": \"difference +0.11, Holm p = 0.01\"}\n"),
    ]);
    std::fs::create_dir_all(ws.path("figures")).unwrap();
    std::fs::write(ws.path("figures/baselines_test_accuracy_final.png"), b"").unwrap();
    let output = stdout_of(&expcluster(&[
        "report",
        "--workspace",
        ws.root.to_str().unwrap(),
    ]));
    assert!(output.contains("report.md"), "{output}");
    let report = std::fs::read_to_string(ws.path("report.md")).unwrap();
    check_snapshot("report.md", &report);
}

/// A command as a user without the test harness's token would run it.
fn bare(args: &[&str], cwd: &Path) -> String {
    let output = Command::new(expcluster_bin())
        .args(args)
        .current_dir(cwd)
        .env("PATH", path_with_venv())
        .env_remove("EXPCLUSTER_COORDINATOR")
        .env_remove("EXPCLUSTER_TOKEN")
        .env_remove("EXPCLUSTER_TOKEN_FILE")
        .output()
        .expect("run expcluster");
    assert!(!output.status.success(), "{args:?} should fail");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn error_messages_say_what_to_do_next() {
    let ws = TestWorkspace::new("cli-errors", &config(0.0), &[("runfile.py", RUNFILE)]);
    let elsewhere = tempfile::tempdir().unwrap();
    let mut text = String::new();
    // Nothing listens on port 1.
    text += &bare(
        &["status", "--coordinator", "127.0.0.1:1"],
        elsewhere.path(),
    );
    let (_coordinator, address) = start_coordinator(&ws.root, &[]);
    text += &bare(&["status", "--coordinator", &address], elsewhere.path());
    // Ablations before the baselines the config defines.
    let out = expcluster(&["submit", "--stage", "ablations", "--coordinator", &address]);
    assert!(!out.status.success());
    text += &String::from_utf8_lossy(&out.stderr);
    let broken = TestWorkspace::new("cli-broken", "name: broken\nprimary_metric: {name: acc, goal: max}\njob: {command: [python, x.py]}\nmethods: {proposed: {}}\nstages: {baselines: {seeds: 1, sedes: 2}}\n", &[]);
    text += &bare(
        &[
            "submit",
            "--workspace",
            broken.root.to_str().unwrap(),
            "--stage",
            "baselines",
        ],
        elsewhere.path(),
    );
    let text = normalise(&text, &ws.root).replace(&broken.root.display().to_string(), "<BROKEN>");
    check_snapshot("errors.txt", &text);
}

/// tmux on a private socket, killed at the end (only this test's server).
struct Tmux {
    socket: String,
}

impl Tmux {
    fn run(&self, args: &[&str]) -> String {
        let output = Command::new("tmux")
            .args(["-L", &self.socket])
            .args(args)
            .output()
            .expect("tmux (scripts/setup.sh installs it)");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .output();
    }
}

#[test]
fn the_progress_display_renders_in_a_terminal_and_ends_cleanly() {
    let ws = TestWorkspace::new("cli-tty", &config(0.15), &[("runfile.py", RUNFILE)]);
    let tmux = Tmux {
        socket: format!("expcluster-cli-test-{}", std::process::id()),
    };
    let command = format!(
        "env PATH='{}' '{}' submit --workspace '{}' --stage baselines --slots 2; echo EXIT=$?; sleep 60",
        path_with_venv(),
        expcluster_bin().display(),
        ws.root.display()
    );
    tmux.run(&[
        "new-session",
        "-d",
        "-x",
        "160",
        "-y",
        "50",
        "-s",
        "t",
        &command,
    ]);
    let mut saw_bars = false;
    let mut screen = String::new();
    wait_until(
        Duration::from_secs(120),
        "submit ends in the terminal",
        || {
            screen = tmux.run(&["capture-pane", "-p", "-t", "t"]);
            saw_bars |= screen.contains("jobs · ETA") && screen.contains("proposed [");
            screen.contains("EXIT=")
        },
    );
    assert!(
        saw_bars,
        "the progress bars were never drawn; last screen:\n{screen}"
    );
    assert!(screen.contains("EXIT=0"), "{screen}");
    // The bars end full, then the table follows them (nothing drawn over it).
    let bars_end = screen
        .find("6/6 jobs")
        .unwrap_or_else(|| panic!("no finished stage bar:\n{screen}"));
    let table = screen
        .find("baselines.baseline.s2")
        .unwrap_or_else(|| panic!("no jobs table:\n{screen}"));
    assert!(bars_end < table, "{screen}");
    assert!(
        !screen[table..].contains("ETA"),
        "a bar was redrawn after the table:\n{screen}"
    );
}

/// `expcluster validate | head`, with `head` gone before anything is printed: the
/// command ends as Unix tools do (status 141, as if killed by SIGPIPE), with no panic
/// message. SIGPIPE itself stays ignored, so a closed socket cannot kill a process
/// that serves gRPC; only the failed print ends it.
#[test]
fn a_closed_stdout_ends_the_command_quietly() {
    let ws = TestWorkspace::new("pipe", &config(0.01), &[("runfile.py", RUNFILE)]);
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    let output = Command::new(expcluster_bin())
        .args(["validate", "--workspace"])
        .arg(&ws.root)
        .env("PATH", path_with_venv())
        .stdout(writer)
        .output()
        .expect("run expcluster");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(141), "stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
