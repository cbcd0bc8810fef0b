//! `expcluster mcp` (issue 22) driven by the official MCP Python SDK, as an AI agent
//! would: `tests/mcp_client.py` runs the whole research loop over stdio (four stages
//! of command jobs, a contradicted claim, the idea updated with a reason, the later
//! stages on the new version) and the refusals of bad input; over Streamable HTTP,
//! only the client token is let in. The script asserts the protocol side; this file
//! asserts what it reports and what the workspace holds afterwards.

use expcluster_tests::{expcluster_bin, path_with_venv, python, token_file, wait_until, Proc};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

fn client_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("mcp_client.py")
}

/// Runs `mcp_client.py <args>` (killed after `limit`); returns the JSON it prints.
fn run_client(args: &[&str], limit: Duration) -> Value {
    let output_dir = tempfile::tempdir().unwrap();
    let stdout_path = output_dir.path().join("stdout");
    let mut child = Proc {
        child: Command::new(python())
            .arg(client_script())
            .args(args)
            .env("PATH", path_with_venv())
            .env_remove("EXPCLUSTER_COORDINATOR")
            .stdout(std::fs::File::create(&stdout_path).unwrap())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the MCP client"),
    };
    let status = child
        .wait_exit(limit)
        .unwrap_or_else(|| panic!("the MCP client did not finish within {limit:?}"));
    let stdout = std::fs::read_to_string(&stdout_path).unwrap();
    assert!(
        status.success(),
        "the MCP client failed ({status}); stdout: {stdout}"
    );
    serde_json::from_str(stdout.trim()).unwrap_or_else(|err| panic!("{err}: {stdout}"))
}

fn events(root: &Path) -> Vec<Value> {
    std::fs::read_to_string(root.join("research_log.jsonl"))
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

#[test]
fn an_agent_runs_the_research_loop_through_the_mcp_server() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("experiments").join("mcp-loop");
    let bin = expcluster_bin();
    let seen = run_client(
        &["loop", bin.to_str().unwrap(), root.to_str().unwrap()],
        Duration::from_secs(600),
    );

    // Every tool, and the job matrix the agent's config makes.
    assert_eq!(
        seen["tools"].as_array().unwrap().len(),
        13,
        "{}",
        seen["tools"]
    );
    assert_eq!(
        seen["jobs_per_stage"],
        serde_json::json!({"implementation": 1, "baselines": 10, "full": 6, "ablations": 6})
    );
    // Submit answers with the run id at once; wait reported the stage advancing.
    for stage in ["implementation", "baselines", "full", "ablations"] {
        let notes = seen["progress"][stage].as_array().unwrap();
        assert!(!notes.is_empty(), "no progress notification for {stage}");
        assert!(
            seen[stage]["submit_s"].as_f64().unwrap() < 20.0,
            "submit of {stage} did not return at once: {}",
            seen[stage]
        );
    }
    let baselines = seen["progress"]["baselines"].as_array().unwrap();
    assert_eq!(baselines.last().unwrap()["progress"], 10.0);

    // Each refusal is a tool error that says what is wrong.
    let errors = &seen["errors"];
    for (case, expected) in [
        ("unknown_stage", "unknown stage \"finals\""),
        ("outside_path", "`..` leads outside the workspace"),
        ("absolute_path", "absolute paths are not served"),
        ("token_path", "hidden files"),
        ("malformed_type", "invalid type"),
        ("no_reason", "missing field `reason`"),
        ("empty_reason", "the reason is empty"),
    ] {
        let text = errors[case]
            .as_str()
            .unwrap_or_else(|| panic!("{case}: {errors}"));
        assert!(text.contains(expected), "{case}: {text}");
    }

    // The claim was contradicted by the baselines; the coordinator recorded it (v2),
    // then the agent's update (v3) with its reason; full and ablations ran on v3.
    assert_eq!(seen["contradicted"]["status"], "contradicted");
    assert_eq!(seen["contradicted"]["stage"], "baselines");
    assert_eq!(seen["versions_before"], serde_json::json!([1, 2]));
    assert_eq!(seen["updated"]["to_version"], 3);
    assert_eq!(seen["full"]["idea_version"], 3);
    assert_eq!(seen["ablations"]["idea_version"], 3);

    // The workspace ends with the seed protocol's files.
    for file in [
        "idea.md",
        "idea.json",
        "idea_evolution.md",
        "research_log.jsonl",
        "config.yaml",
        "runfile.py",
        "baseline_summary.json",
        "research_summary.json",
        "ablation_summary.json",
        "report.md",
        "experiment_results/job_results.jsonl",
        "experiment_results/index.json",
        "logs/experiment_log.txt",
    ] {
        assert!(root.join(file).is_file(), "{file} is missing");
    }
    assert!(root.join("figures").is_dir());
    let idea: Value =
        serde_json::from_slice(&std::fs::read(root.join("idea.json")).unwrap()).unwrap();
    assert_eq!(idea["version"], 3);
    let idea_md = std::fs::read_to_string(root.join("idea.md")).unwrap();
    assert!(idea_md.contains("cheaper than the baseline"), "{idea_md}");
    let evolution = std::fs::read_to_string(root.join("idea_evolution.md")).unwrap();
    assert!(evolution.contains("## Version 3"), "{evolution}");

    // The agent's update is an `idea_updated` event carrying its reason.
    let events = events(&root);
    let updates: Vec<&Value> = events
        .iter()
        .filter(|e| e["type"] == "idea_updated")
        .collect();
    assert_eq!(updates.len(), 2, "the feedback's and the agent's");
    let agent = updates[1];
    assert_eq!(agent["to_version"], 3);
    assert!(
        agent["reason"]
            .as_str()
            .unwrap()
            .starts_with("The baselines contradict beats-baseline"),
        "{agent}"
    );
    assert!(
        agent["source"].as_str().unwrap().starts_with("agent ("),
        "{agent}"
    );
    assert_eq!(seen["idea_updated"][1]["reason"], agent["reason"]);
    for stage in ["full", "ablations"] {
        let started = events
            .iter()
            .find(|e| e["type"] == "stage_started" && e["stage"] == stage)
            .unwrap_or_else(|| panic!("no stage_started for {stage}"));
        assert_eq!(started["idea_version"], 3, "{started}");
    }
    for stage in ["implementation", "baselines", "full", "ablations"] {
        assert_eq!(seen["stages"][stage], 1, "{stage}: {}", seen["stages"]);
    }
}

const HTTP_CONFIG: &str =
    "name: mcp-http\nprimary_metric: {name: acc, goal: max}\nmetrics: [acc]\n\
job:\n  command: [python, -c, \"print('acc: 1')\"]\nmethods:\n  proposed: {}\n\
stages:\n  baselines: {seeds: 2}\nresources: {max_attempts: 1, timeout: 1m}\n";

#[test]
fn over_http_only_the_client_token_is_let_in() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("mcp-http");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("config.yaml"), HTTP_CONFIG).unwrap();
    let mut child = Command::new(expcluster_bin())
        .args(["mcp", "--workspace"])
        .arg(&root)
        .args(["--listen", "127.0.0.1:0"])
        .env("PATH", path_with_venv())
        .env_remove("EXPCLUSTER_TOKEN")
        .env_remove("EXPCLUSTER_TOKEN_FILE")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start expcluster mcp --listen");
    let stdout = child.stdout.take().unwrap();
    let mut server = Proc { child };
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let url = line
        .split_whitespace()
        .find(|word| word.starts_with("http://127.0.0.1:"))
        .unwrap_or_else(|| panic!("no address announced: {line:?}"))
        .to_owned();
    let read = |role: &str| {
        std::fs::read_to_string(token_file(&root, role))
            .unwrap()
            .trim()
            .to_owned()
    };
    let (client, worker) = (read("client"), read("worker"));
    let seen = run_client(&["http", &url, &client, &worker], Duration::from_secs(120));

    assert_eq!(seen["none"]["status"], 401, "{}", seen["none"]);
    assert!(seen["none"]["body"]
        .as_str()
        .unwrap()
        .contains("requires the client token"));
    assert_eq!(seen["worker"]["status"], 403, "{}", seen["worker"]);
    assert!(seen["worker"]["body"]
        .as_str()
        .unwrap()
        .contains("a worker token cannot"));
    assert_eq!(seen["bogus"]["status"], 401, "{}", seen["bogus"]);
    assert_eq!(seen["client"]["jobs_total"], 2);

    server.signal(nix::sys::signal::Signal::SIGTERM);
    wait_until(Duration::from_secs(30), "expcluster mcp to stop", || {
        server.child.try_wait().ok().flatten().is_some()
    });
}
