//! Data-parallel gangs (issue 9) with real processes: a coordinator, several workers,
//! `torch.distributed` (gloo) command jobs given torchrun's environment, a rank
//! killed mid-run, and gangs that do not fit the free slots.

use expcluster_tests::{start_coordinator, start_worker, submit_to, wait_until, TestWorkspace};
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

/// A torch.distributed script as users write it for torchrun: everything comes from
/// the environment. Rank 0 prints the metrics.
const GLOO_RUNFILE: &str = r#"
import datetime, json, os, time
import torch
import torch.distributed as dist
for key in ["MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE"]:
    assert key in os.environ, f"{key} is not set"
rank = int(os.environ["RANK"])
world = int(os.environ["WORLD_SIZE"])
params = json.loads(os.environ["EXP_CONFIG"])["params"]
pid_dir = params.get("pid_dir")
if pid_dir:
    with open(os.path.join(pid_dir, f"rank{rank}.a{os.environ['EXP_ATTEMPT']}.tmp"), "w") as f:
        f.write(str(os.getpid()))
    os.rename(os.path.join(pid_dir, f"rank{rank}.a{os.environ['EXP_ATTEMPT']}.tmp"),
              os.path.join(pid_dir, f"rank{rank}.a{os.environ['EXP_ATTEMPT']}"))
dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=60))
assert dist.get_rank() == rank and dist.get_world_size() == world
total = torch.tensor([float(rank + 1)])
dist.all_reduce(total)
for step in range(params.get("steps", 1)):
    ones = torch.ones(4)
    dist.all_reduce(ones)
    if rank == 0:
        print(f"ranks_seen: {ones[0].item()}")
    time.sleep(params.get("step_sleep", 0.0))
if rank == 0:
    print(f"allreduce_sum: {total.item()}")
    print(f"world_size: {world}")
    print(f"local_world_size: {os.environ['LOCAL_WORLD_SIZE']}")
dist.destroy_process_group()
"#;

/// A command job that only records that it ran.
const PLAIN_RUNFILE: &str = r#"
import os
print(f"world_size: {os.environ.get('WORLD_SIZE', '1')}")
"#;

fn gloo_config(ranks: u32, params: &str, stages: &str) -> String {
    format!(
        "name: gang\nprimary_metric: {{name: allreduce_sum, goal: max}}\nmetrics: [allreduce_sum]\n\
         job:\n  command: [python, runfile.py]\n  params: {{{params}}}\n\
         methods:\n  proposed: {{}}\n\
         stages:\n{stages}\nresources: {{data_parallel: {ranks}, max_attempts: 3, timeout: 3m}}\n"
    )
}

fn submit_detached(address: &str, stage: &str, extra: &[&str]) {
    let mut args = vec!["--detach"];
    args.extend_from_slice(extra);
    submit_to(address, stage, &args);
}

fn completed(ws: &TestWorkspace, stage: &str) -> Vec<Value> {
    ws.events_of("job_completed")
        .into_iter()
        .filter(|e| e["stage"] == stage)
        .collect()
}

#[test]
fn a_torch_distributed_gloo_job_runs_across_two_workers_with_the_torchrun_environment() {
    let ws = TestWorkspace::new(
        "gang",
        &gloo_config(2, "steps: 3", "  baselines: {seeds: 1}"),
        &[("runfile.py", GLOO_RUNFILE)],
    );
    let (_coordinator, address) = start_coordinator(&ws.root, &[]);
    let scratch = tempfile::tempdir().unwrap();
    let _w1 = start_worker(&address, 1, &scratch.path().join("w1"));
    let _w2 = start_worker(&address, 1, &scratch.path().join("w2"));
    submit_detached(&address, "baselines", &[]);
    wait_until(Duration::from_secs(120), "the gang job completes", || {
        !completed(&ws, "baselines").is_empty()
    });
    let event = &completed(&ws, "baselines")[0];
    assert_eq!(event["status"], "succeeded", "{event}");
    assert_eq!(event["attempt"], 1, "{event}");
    let metrics = &event["metrics"];
    // 1 + 2 from the two ranks: both took part in the all-reduce.
    assert_eq!(metrics["allreduce_sum"].as_f64(), Some(3.0), "{event}");
    assert_eq!(metrics["world_size"].as_f64(), Some(2.0), "{event}");
    // One slot per worker: the ranks ran on different workers.
    assert_eq!(metrics["local_world_size"].as_f64(), Some(1.0), "{event}");
    let series = &ws.job_results(event)["series"]["ranks_seen"];
    assert_eq!(
        series,
        &serde_json::json!([2.0, 2.0, 2.0]),
        "only rank 0 reports"
    );
}

#[test]
fn killing_one_rank_requeues_the_whole_gang_and_the_job_completes() {
    let pids = tempfile::tempdir().unwrap();
    let params = format!(
        "steps: 30, step_sleep: 0.1, pid_dir: {:?}",
        pids.path().display().to_string()
    );
    let ws = TestWorkspace::new(
        "gang",
        &gloo_config(2, &params, "  baselines: {seeds: 1}"),
        &[("runfile.py", GLOO_RUNFILE)],
    );
    let (_coordinator, address) = start_coordinator(&ws.root, &[]);
    let scratch = tempfile::tempdir().unwrap();
    let _w1 = start_worker(&address, 2, &scratch.path().join("w1"));
    submit_detached(&address, "baselines", &[]);
    let rank1 = pids.path().join("rank1.a1");
    wait_until(
        Duration::from_secs(60),
        "rank 1 of attempt 1 starts",
        || rank1.exists(),
    );
    let pid: i32 = std::fs::read_to_string(&rank1)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    wait_until(Duration::from_secs(120), "the job completes", || {
        !completed(&ws, "baselines").is_empty()
    });
    let event = &completed(&ws, "baselines")[0];
    assert_eq!(event["status"], "succeeded", "{event}");
    assert_eq!(
        event["attempt"], 2,
        "a second attempt of the whole gang: {event}"
    );
    assert_eq!(event["metrics"]["allreduce_sum"].as_f64(), Some(3.0));
    // Both ranks of attempt 2 started again: the gang was requeued whole.
    assert!(pids.path().join("rank0.a2").exists());
    assert!(pids.path().join("rank1.a2").exists());
    let failed = ws.events_of("job_attempt_failed");
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0]["attempt"], 1);
    // Attempt 2 stored the full series once: nothing of attempt 1 leaked in.
    let series = &ws.job_results(event)["series"]["ranks_seen"];
    assert_eq!(series.as_array().map(Vec::len), Some(30));
}

#[test]
fn a_gang_larger_than_the_cluster_waits_without_starving_smaller_jobs_and_gangs_do_not_deadlock() {
    let stages = "  baselines: {seeds: 3}\n  full: {seeds: 2}";
    let ws = TestWorkspace::new(
        "gang",
        &gloo_config(3, "steps: 2", stages),
        &[("runfile.py", GLOO_RUNFILE)],
    );
    let (_coordinator, address) = start_coordinator(&ws.root, &[]);
    let scratch = tempfile::tempdir().unwrap();
    let _w1 = start_worker(&address, 2, &scratch.path().join("w1"));
    // Two gangs of 3 ranks on a cluster of 2 slots: they cannot start yet.
    submit_detached(&address, "full", &["--force"]);
    // Then single-slot jobs (the config now says 1 rank): they run meanwhile.
    std::fs::write(
        ws.path("config.yaml"),
        gloo_config(1, "steps: 2", stages).replace(
            "command: [python, runfile.py]",
            "command: [python, plain.py]",
        ),
    )
    .unwrap();
    std::fs::write(ws.path("plain.py"), PLAIN_RUNFILE).unwrap();
    submit_detached(&address, "baselines", &[]);
    wait_until(
        Duration::from_secs(120),
        "the small jobs finish while the gangs wait",
        || completed(&ws, "baselines").len() == 3,
    );
    assert!(completed(&ws, "baselines")
        .iter()
        .all(|e| e["status"] == "succeeded"));
    assert!(
        completed(&ws, "full").is_empty(),
        "a gang of 3 cannot have run on 2 slots"
    );
    assert!(!has_started(&scratch.path().join("w1"), "full"));
    // A second worker makes room for one gang of 3 at a time (4 slots): both gangs
    // run, one after the other, and neither holds part of the cluster while waiting.
    let _w2 = start_worker(&address, 2, &scratch.path().join("w2"));
    wait_until(Duration::from_secs(180), "both gangs complete", || {
        completed(&ws, "full").len() == 2
    });
    for event in completed(&ws, "full") {
        assert_eq!(event["status"], "succeeded", "{event}");
        assert_eq!(event["metrics"]["allreduce_sum"].as_f64(), Some(6.0));
        assert_eq!(event["metrics"]["world_size"].as_f64(), Some(3.0));
    }
}

/// Whether any job directory of `stage`'s jobs exists under a worker's scratch dir.
fn has_started(work_dir: &Path, stage: &str) -> bool {
    let Ok(entries) = std::fs::read_dir(work_dir.join("jobs")) else {
        return false;
    };
    entries
        .flatten()
        .any(|entry| entry.file_name().to_string_lossy().contains(stage))
}

pub(crate) fn trainer_config(ranks: u32) -> String {
    format!(
        "name: gang-trainer\nprimary_metric: {{name: test_accuracy, goal: max}}\n\
         job:\n  trainer:\n    dataset: {{kind: blobs, n_train: 452, n_test: 200, n_features: 8, n_classes: 4, noise: 2.0}}\n\
         \x20   model: {{kind: mlp, hidden: [32, 32]}}\n    optimizer: {{kind: adam, lr: 1.0e-2}}\n\
         \x20   epochs: 5\n    batch_size: 50\n    eval_every_steps: 1\n    threads: 1\n\
         methods:\n  proposed: {{}}\n\
         stages:\n  baselines: {{seeds: 1}}\n\
         resources: {{data_parallel: {ranks}, max_attempts: 1, timeout: 5m}}\n"
    )
}

/// Runs the trainer stage with `ranks` ranks on `ranks` one-slot workers; returns
/// the stored series of the one job.
fn train_through_the_coordinator(ranks: u32) -> Value {
    let ws = TestWorkspace::new("gang-trainer", &trainer_config(ranks), &[]);
    let (_coordinator, address) = start_coordinator(&ws.root, &[]);
    let scratch = tempfile::tempdir().unwrap();
    let _workers: Vec<_> = (0..ranks)
        .map(|i| start_worker(&address, 1, &scratch.path().join(format!("w{i}"))))
        .collect();
    submit_detached(&address, "baselines", &[]);
    wait_until(
        Duration::from_secs(180),
        "the trainer job completes",
        || !completed(&ws, "baselines").is_empty(),
    );
    let event = &completed(&ws, "baselines")[0];
    assert_eq!(event["status"], "succeeded", "{event}");
    ws.job_results(event)["series"].clone()
}

#[test]
fn a_two_rank_trainer_job_through_the_coordinator_matches_one_process_step_by_step() {
    let single = train_through_the_coordinator(1);
    let gang = train_through_the_coordinator(2);
    assert_same_learning(&single, &gang);
}

/// Every learning metric of two runs' series agrees step by step to 1e-5 (relative
/// beyond 1); timings differ by nature.
pub(crate) fn assert_same_learning(single: &Value, gang: &Value) {
    let names: Vec<&String> = single.as_object().unwrap().keys().collect();
    assert!(
        names.iter().any(|n| n.starts_with("step_")),
        "per-step series expected: {names:?}"
    );
    assert_eq!(
        names,
        gang.as_object().unwrap().keys().collect::<Vec<_>>(),
        "the same metrics"
    );
    // Timings differ by nature; every learning metric must agree.
    for name in names.iter().filter(|n| !is_timing(n)) {
        let a = single[name.as_str()].as_array().unwrap();
        let b = gang[name.as_str()].as_array().unwrap();
        assert_eq!(a.len(), b.len(), "{name}: series lengths");
        for (step, (x, y)) in a.iter().zip(b).enumerate() {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            assert!(
                (x - y).abs() <= 1e-5 * x.abs().max(1.0),
                "{name} step {step}: one process {x}, two ranks {y}"
            );
        }
    }
}

fn is_timing(name: &str) -> bool {
    ["per_sec", "time", "seconds"]
        .iter()
        .any(|t| name.contains(t))
}

/// A two-rank trainer job of 40 epochs (several seconds) with one attempt only: a
/// lost peer must not spend it.
pub(crate) const LONG_GANG_ONE_ATTEMPT: &str = "name: gang-kill\nprimary_metric: {name: test_accuracy, goal: max}\n\
     job:\n  trainer:\n    dataset: {kind: blobs, n_train: 4000, n_test: 200, n_features: 8, n_classes: 4, noise: 2.0}\n\
     \x20   model: {kind: mlp, hidden: [64, 64]}\n    optimizer: {kind: adam, lr: 1.0e-3}\n\
     \x20   epochs: 40\n    batch_size: 50\n    checkpoint_every: 5\n    threads: 1\n\
     methods:\n  proposed: {}\n\
     stages:\n  baselines: {seeds: 1}\n\
     resources: {data_parallel: 2, max_attempts: 1, timeout: 5m}\n";

#[test]
fn a_worker_killed_under_a_trainer_gang_requeues_it_and_the_job_completes_elsewhere() {
    let ws = TestWorkspace::new("gang-kill", LONG_GANG_ONE_ATTEMPT, &[]);
    let (_coordinator, address) = start_coordinator(&ws.root, &["--lease-timeout", "2s"]);
    let scratch = tempfile::tempdir().unwrap();
    let mut workers: Vec<_> = (0..3)
        .map(|i| {
            Some(start_worker(
                &address,
                1,
                &scratch.path().join(format!("w{i}")),
            ))
        })
        .collect();
    submit_detached(&address, "baselines", &[]);
    // The worker running rank 1 of attempt 1 is the one whose job folder says so.
    let mut victim = None;
    wait_until(
        Duration::from_secs(60),
        "rank 1 of attempt 1 starts",
        || {
            victim = (0..3).find(|i| {
                let jobs = scratch.path().join(format!("w{i}/jobs"));
                std::fs::read_dir(jobs)
                    .into_iter()
                    .flatten()
                    .flatten()
                    .any(|job| job.path().join("a1.r1").exists())
            });
            victim.is_some()
        },
    );
    let victim = victim.unwrap();
    // Let it train a little, then the node dies.
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        completed(&ws, "baselines").is_empty(),
        "the job must still be running when its rank dies: make it longer"
    );
    workers[victim]
        .take()
        .unwrap()
        .signal(nix::sys::signal::Signal::SIGKILL);
    wait_until(Duration::from_secs(180), "the job completes", || {
        !completed(&ws, "baselines").is_empty()
    });
    let event = &completed(&ws, "baselines")[0];
    assert_eq!(event["status"], "succeeded", "{event}");
    assert!(event["attempt"].as_u64().unwrap() >= 2, "{event}");
    let ends: Vec<String> = ws
        .events()
        .iter()
        .filter(|e| e["type"] == "job_requeued" || e["type"] == "job_attempt_failed")
        .map(|e| format!("{} attempt {} {}", e["type"], e["attempt"], e["reason"]))
        .collect();
    eprintln!("attempt ends: {ends:?}");
    // Attempt 1 is requeued when the dead rank's lease runs out; the surviving
    // rank's lost peer spends nothing (with max_attempts 1, a counted failure would
    // have failed the job). A loaded machine may also expire a later attempt's 2 s
    // lease: that is requeued too, never failed.
    assert_eq!(
        ends.first().map(String::as_str),
        Some("\"job_requeued\" attempt 1 \"lease_expired\""),
        "{ends:?}"
    );
    assert!(
        ends.iter().all(|end| end.starts_with("\"job_requeued\"")),
        "no attempt failed: {ends:?}"
    );
    // Every epoch is on record exactly once, however the attempts split the work.
    let series = &ws.job_results(event)["series"];
    for (name, values) in series.as_object().unwrap() {
        if name.starts_with("step_") || is_timing(name) {
            continue;
        }
        assert_eq!(
            values.as_array().map(Vec::len),
            Some(40),
            "{name}: one value per epoch"
        );
    }
    drop(workers);
}
