//! `expcluster mcp` (issue 22) driven by the official MCP Python SDK, as an AI agent
//! would: `tests/mcp_client.py` runs the whole research loop over stdio (four stages
//! of command jobs, a contradicted claim, the idea updated with a reason, the later
//! stages on the new version) and the refusals of bad input; over Streamable HTTP,
//! only the client token is let in. The script asserts the protocol side; this file
//! asserts what it reports and what the workspace holds afterwards.

use expcluster_tests::{
    expcluster_bin, path_with_venv, python, start_coordinator, start_worker, token_file,
    wait_until, Proc,
};
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

/// `expcluster mcp <extra> --listen 127.0.0.1:0` for the workspace `root`; returns
/// the server and the URL it announced.
fn start_http_server(root: &Path, extra: &[&str]) -> (Proc, String) {
    let mut child = Command::new(expcluster_bin())
        .args(["mcp", "--workspace"])
        .arg(root)
        .args(extra)
        .args(["--listen", "127.0.0.1:0"])
        .env("PATH", path_with_venv())
        .env_remove("EXPCLUSTER_TOKEN")
        .env_remove("EXPCLUSTER_TOKEN_FILE")
        .env_remove("EXPCLUSTER_COORDINATOR")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start expcluster mcp --listen");
    let stdout = child.stdout.take().unwrap();
    let server = Proc { child };
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let url = line
        .split_whitespace()
        .find(|word| word.starts_with("http://127.0.0.1:"))
        .unwrap_or_else(|| panic!("no address announced: {line:?}"))
        .to_owned();
    (server, url)
}

fn read_token(root: &Path, role: &str) -> String {
    std::fs::read_to_string(token_file(root, role))
        .unwrap()
        .trim()
        .to_owned()
}

/// `expcluster mcp <extra> --listen` on the workspace `root`, driven by
/// `mcp_client.py http`: no token and a bogus one get 401, the worker token 403, the
/// client token the tools (validate sees `jobs_total` jobs; status reaches the
/// coordinator); then the server stops on SIGTERM.
fn only_the_client_token_gets_through(root: &Path, extra: &[&str], jobs_total: u64) {
    let (mut server, url) = start_http_server(root, extra);
    let (client, worker) = (read_token(root, "client"), read_token(root, "worker"));
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
    assert_eq!(seen["client"]["jobs_total"], jobs_total);
    assert_eq!(
        seen["client"]["defined_stages"],
        serde_json::json!(["baselines"])
    );
    server.signal(nix::sys::signal::Signal::SIGTERM);
    wait_until(Duration::from_secs(30), "expcluster mcp to stop", || {
        server.child.try_wait().ok().flatten().is_some()
    });
}

#[test]
fn over_http_only_the_client_token_is_let_in() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("mcp-http");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("config.yaml"), HTTP_CONFIG).unwrap();
    only_the_client_token_gets_through(&root, &[], 2);
}

#[test]
fn plain_http_is_refused_off_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("mcp-open");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("config.yaml"), HTTP_CONFIG).unwrap();
    let output = Command::new(expcluster_bin())
        .args(["mcp", "--workspace"])
        .arg(&root)
        .args(["--listen", "0.0.0.0:0"])
        .env_remove("EXPCLUSTER_COORDINATOR")
        .output()
        .unwrap();
    assert!(!output.status.success(), "0.0.0.0 was served");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("refusing to serve MCP on 0.0.0.0") && stderr.contains("SSH tunnel"),
        "{stderr}"
    );
}

/// A command job that prints two train_loss points, then waits for the file named in
/// its params (the test opens it once it has seen the points live), then ends.
const GATED_RUNFILE: &str = "import json, os, time
params = json.loads(os.environ[\"EXP_CONFIG\"])[\"params\"]
seed = int(os.environ[\"EXP_SEED\"])
print(f\"train_loss: {1.0 + seed}\", flush=True)
print(f\"train_loss: {0.5 + seed}\", flush=True)
while not os.path.exists(params[\"gate\"]):
    time.sleep(0.05)
print(f\"train_loss: {0.25 + seed}\", flush=True)
print(f\"test_accuracy: {params[\'base\'] + params[\'step\'] * seed}\", flush=True)
";

fn gated_config(gate: &Path) -> String {
    format!(
        "name: mcp-remote\nprimary_metric: {{name: test_accuracy, goal: max}}\n\
metrics: [train_loss, test_accuracy]\n\
job:\n  command: [python, runfile.py]\n  params: {{base: 0.5, step: 0.01, gate: {gate:?}}}\n\
methods:\n  proposed: {{}}\n  baseline: {{params.base: 0.8, params.step: 0.03}}\n\
stages:\n  baselines: {{seeds: 3}}\n\
claims:\n  - {{id: beats-baseline, better: proposed, than: baseline, metric: test_accuracy}}\n\
resources: {{max_attempts: 1, timeout: 5m}}\n"
    )
}

/// `expcluster mcp --coordinator`: the agent drives a stage on a standalone
/// coordinator and worker (real processes on loopback) over stdio, sees a running
/// job's metrics live, updates the idea through the coordinator, and the same
/// server over HTTP lets only the client token in.
#[test]
fn an_agent_drives_a_standalone_coordinator_through_the_mcp_server() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("mcp-remote");
    std::fs::create_dir_all(&root).unwrap();
    let gate = dir.path().join("gate");
    std::fs::write(root.join("config.yaml"), gated_config(&gate)).unwrap();
    std::fs::write(root.join("runfile.py"), GATED_RUNFILE).unwrap();
    let (_coordinator, address) = start_coordinator(&root, &[]);
    let _worker = start_worker(&address, 6, &dir.path().join("worker"));
    let client_token = token_file(&root, "client");
    let bin = expcluster_bin();
    let seen = run_client(
        &[
            "remote",
            bin.to_str().unwrap(),
            root.to_str().unwrap(),
            &address,
            client_token.to_str().unwrap(),
            gate.to_str().unwrap(),
        ],
        Duration::from_secs(300),
    );

    assert_eq!(seen["submitted"]["jobs_total"], 6, "{}", seen["submitted"]);
    // While the job ran, metrics answered its points so far, from the coordinator.
    let live = &seen["live"];
    assert_eq!(live["live"], true, "{live}");
    assert_eq!(live["state"], "running", "{live}");
    assert_eq!(live["series"]["train_loss"].as_array().unwrap().len(), 2);
    assert!(
        seen["refused_while_running"]
            .as_str()
            .unwrap()
            .contains("wait for it or cancel it"),
        "{}",
        seen["refused_while_running"]
    );
    // Once the gate opened: the whole series, no longer live.
    let after = &seen["after"];
    assert_eq!(after["live"], false, "{after}");
    assert_eq!(after["state"], "succeeded", "{after}");
    assert_eq!(after["series"]["train_loss"].as_array().unwrap().len(), 3);
    assert_eq!(
        after["series"]["train_loss"][0],
        live["series"]["train_loss"][0]
    );
    assert_eq!(seen["wait"]["succeeded"], 6, "{}", seen["wait"]);
    assert_eq!(
        seen["summary_methods"],
        serde_json::json!(["baseline", "proposed"])
    );
    let claims = seen["claims"].as_array().unwrap();
    assert_eq!(claims.len(), 1, "{claims:?}");
    assert_eq!(claims[0]["claim"], "beats-baseline");
    assert_eq!(claims[0]["status"], "contradicted", "{}", claims[0]);

    // The update went through the running coordinator: the version after the
    // feedback's (v2, the contradicted claim) is the agent's, with its reason.
    assert_eq!(seen["updated"]["from_version"], 2, "{}", seen["updated"]);
    assert_eq!(seen["updated"]["to_version"], 3);
    assert_eq!(seen["versions"], serde_json::json!([1, 2, 3]));
    let agent: Vec<Value> = events(&root)
        .into_iter()
        .filter(|e| e["type"] == "idea_updated" && e["to_version"] == 3)
        .collect();
    assert_eq!(agent.len(), 1, "{agent:?}");
    assert!(agent[0]["reason"]
        .as_str()
        .unwrap()
        .starts_with("The baselines contradict beats-baseline"));
    assert!(agent[0]["source"].as_str().unwrap().starts_with("agent ("));
    let idea_md = std::fs::read_to_string(root.join("idea.md")).unwrap();
    assert!(idea_md.contains("cheaper than the baseline"), "{idea_md}");

    // The same coordinator behind `--listen`: only the client token gets through,
    // and its tools reach the coordinator.
    let client = client_token.to_str().unwrap();
    only_the_client_token_gets_through(
        &root,
        &["--coordinator", &address, "--token-file", client],
        6,
    );
}
