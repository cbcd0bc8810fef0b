//! Data-parallel training across real OS processes: this test binary re-executes
//! itself (the `rank_child` test, driven by environment variables) once per rank, and
//! the ranks meet through a file rendezvous and a TCP ring on loopback.
//!
//! Checked: 2 and 4 ranks follow a single process's per-step loss trajectory and end
//! with its weights and results (to 1e-5), including uneven and empty shards of a
//! batch; a gang resumes from rank 0's checkpoint of a single-process run; a rank
//! killed mid-training makes the others fail with `TrainError::Distributed` instead of
//! hanging.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::AtomicBool;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::*;
use expcluster_trainer::distributed::FileRendezvous;
use expcluster_trainer::{
    DeviceChoice, DistributedRole, MetricSink, TchTrainer, TrainError, TrainJob, Trainer,
    TrainerSpec,
};
use serde_json::{json, Value};

/// The gangs share two cores; one at a time keeps the timings meaningful.
static SERIAL: Mutex<()> = Mutex::new(());

/// 452 rows in batches of 50: ten steps per epoch, the last of 2 rows, so with 4
/// ranks two shards of that batch are empty and the others uneven (12/13 rows).
fn gang_spec(epochs: usize) -> Value {
    json!({
        "dataset": {"kind": "blobs", "n_train": 452, "n_test": 200, "n_features": 8, "n_classes": 4, "noise": 2.0},
        "model": {"kind": "mlp", "hidden": [32, 32]},
        "optimizer": {"kind": "adam", "lr": 1.0e-2},
        "grad_clip": 1.0,
        "epochs": epochs, "batch_size": 50, "eval_every_steps": 1, "threads": 1,
    })
}

/// One rank, when this binary is re-executed by a gang test; a no-op otherwise.
#[test]
fn rank_child() {
    let Ok(dir) = std::env::var("DDP_DIR") else {
        return;
    };
    let dir = PathBuf::from(dir);
    let var = |name: &str| std::env::var(name).unwrap_or_else(|_| panic!("{name} is set"));
    let rank: usize = var("DDP_RANK").parse().expect("rank");
    let world: usize = var("DDP_WORLD").parse().expect("world");
    let spec = spec(serde_json::from_str(&var("DDP_SPEC")).expect("spec json"));
    let rendezvous = FileRendezvous {
        path: dir.join("rendezvous"),
    };
    let cancel = AtomicBool::new(false);
    let (output, checkpoints) = (
        dir.join(format!("out-rank{rank}")),
        dir.join(format!("ckpt-rank{rank}")),
    );
    let job = TrainJob {
        spec: &spec,
        seed: 5,
        device: DeviceChoice::Cpu,
        data_root: &dir,
        output_dir: &output,
        checkpoint_dir: &checkpoints,
        cancel: &cancel,
        distributed: Some(DistributedRole {
            rank,
            world_size: world,
            advertise_host: "127.0.0.1",
            rendezvous: &rendezvous,
        }),
    };
    let mut sink = ProgressSink {
        inner: Recorder::default(),
        progress: dir.join(format!("progress-rank{rank}")),
    };
    let result = match TchTrainer.train(&job, &mut sink) {
        Ok(report) => {
            json!({"ok": true, "series": sink.inner.series, "resumed_from_epoch": report.resumed_from_epoch})
        }
        Err(err) => {
            json!({"ok": false, "distributed": matches!(err, TrainError::Distributed(_)), "error": err.to_string()})
        }
    };
    std::fs::write(
        dir.join(format!("result-rank{rank}.json")),
        result.to_string(),
    )
    .expect("write result");
}

/// Records metrics and touches a file once training is under way.
struct ProgressSink {
    inner: Recorder<'static>,
    progress: PathBuf,
}

impl MetricSink for ProgressSink {
    fn emit(&mut self, name: &str, value: f64) {
        if name == "step_train_loss" && !self.progress.exists() {
            let _ = std::fs::write(&self.progress, b"started");
        }
        self.inner.emit(name, value);
    }
}

fn spawn_gang(dir: &Path, world: usize, spec: &Value) -> Vec<Child> {
    let exe = std::env::current_exe().expect("test binary path");
    (0..world)
        .map(|rank| {
            Command::new(&exe)
                .args(["--exact", "rank_child", "--nocapture", "--test-threads=1"])
                .env("DDP_DIR", dir)
                .env("DDP_RANK", rank.to_string())
                .env("DDP_WORLD", world.to_string())
                .env("DDP_SPEC", spec.to_string())
                .spawn()
                .expect("rank process starts")
        })
        .collect()
}

/// Waits for the `ranks` whose processes are `children` to exit (at most `limit`:
/// past it the gang hung), then reads their results.
fn join_gang(dir: &Path, mut children: Vec<Child>, ranks: &[usize], limit: Duration) -> Vec<Value> {
    let deadline = Instant::now() + limit;
    for child in &mut children {
        loop {
            if child.try_wait().expect("wait").is_some() {
                break;
            }
            if Instant::now() > deadline {
                for child in &mut children {
                    let _ = child.kill();
                }
                panic!("the gang did not finish within {limit:?}: it hung");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    ranks
        .iter()
        .map(|rank| {
            let path = dir.join(format!("result-rank{rank}.json"));
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|err| panic!("rank {rank} left no result: {err}"));
            serde_json::from_str(&text).expect("result json")
        })
        .collect()
}

fn series(result: &Value, name: &str) -> Vec<f64> {
    serde_json::from_value(result["series"][name].clone())
        .unwrap_or_else(|err| panic!("series {name}: {err} in {result}"))
}

fn assert_close(what: &str, got: &[f64], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "{what}: lengths differ");
    for (step, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= 1e-5, "{what} step {step}: {g} vs {w}");
    }
    let worst = got
        .iter()
        .zip(want)
        .map(|(g, w)| (g - w).abs())
        .fold(0.0, f64::max);
    eprintln!(
        "{what}: {} points, largest difference {worst:.2e}",
        got.len()
    );
}

/// The only checkpoint's weights, by name.
fn final_weights(dir: &Path) -> Vec<(String, tch::Tensor)> {
    let ckpt = std::fs::read_dir(dir)
        .expect("checkpoint dir")
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .find(|path| {
            path.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("ckpt-"))
        })
        .expect("a checkpoint");
    let mut weights = tch::Tensor::load_multi(ckpt.join("model.ot")).expect("model.ot");
    weights.sort_by(|a, b| a.0.cmp(&b.0));
    weights
}

/// Trains `world` ranks and one process on the same spec and compares them.
fn gang_matches_one_process(world: usize) {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let value = gang_spec(5);
    let dirs = JobDirs::new();
    let single_started = Instant::now();
    let (_, reference) = train_seeded(&dirs, &spec(value.clone()));
    let single = single_started.elapsed();
    let started = Instant::now();
    let results = join_gang(
        &dirs.data(),
        spawn_gang(&dirs.data(), world, &value),
        &(0..world).collect::<Vec<_>>(),
        Duration::from_secs(300),
    );
    eprintln!(
        "{world} ranks: {:.1} s wall (1 process in-process: {:.1} s)",
        started.elapsed().as_secs_f64(),
        single.as_secs_f64()
    );
    for (rank, result) in results.iter().enumerate() {
        assert_eq!(result["ok"], json!(true), "rank {rank}: {result}");
    }
    // Rank 0 reports; the other ranks emit nothing.
    for name in [
        "step_train_loss",
        "step_test_loss",
        "train_loss",
        "test_accuracy",
    ] {
        let want = &reference.series[name];
        assert_eq!(want.len(), if name.starts_with("step") { 50 } else { 5 });
        assert_close(name, &series(&results[0], name), want);
    }
    for result in &results[1..] {
        assert_eq!(
            result["series"],
            json!({}),
            "a rank other than 0 emitted metrics"
        );
    }
    for file in ["train_losses.npy", "test_losses.npy", "test_accuracies.npy"] {
        let gang = read_npy(&dirs.data().join("out-rank0").join(file));
        assert_close(file, &gang, &output_npy(&dirs, "single", file));
    }
    assert!(
        !dirs.data().join("out-rank1").exists(),
        "rank 1 wrote results"
    );
    let (gang, single) = (
        final_weights(&dirs.data().join("ckpt-rank0")),
        final_weights(&dirs.checkpoints("single")),
    );
    assert_eq!(gang.len(), single.len());
    for ((name, a), (_, b)) in gang.iter().zip(&single) {
        let diff = (a - b).abs().max().double_value(&[]);
        assert!(diff <= 1e-5, "weight {name} differs by {diff}");
    }
}

fn train_seeded(
    dirs: &JobDirs,
    spec: &TrainerSpec,
) -> (expcluster_trainer::TrainReport, Recorder<'static>) {
    let cancel = AtomicBool::new(false);
    let mut sink = Recorder::default();
    let report = train(dirs, "single", spec, 5, &mut sink, &cancel).expect("single process trains");
    (report, sink)
}

#[test]
fn two_ranks_follow_the_single_process_trajectory() {
    gang_matches_one_process(2);
}

#[test]
fn four_ranks_follow_the_single_process_trajectory() {
    gang_matches_one_process(4);
}

#[test]
fn a_gang_resumes_from_rank_zeros_checkpoint() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let value = gang_spec(4);
    let dirs = JobDirs::new();
    let (_, reference) = train_seeded(&dirs, &spec(value.clone()));
    // A single process cancelled after epoch 2 leaves rank 0's checkpoint.
    let cancel = AtomicBool::new(false);
    let mut sink = Recorder {
        cancel_when: Some(("train_loss", 2, &cancel)),
        ..Recorder::default()
    };
    let err =
        train(&dirs, "rank0", &spec(value.clone()), 5, &mut sink, &cancel).expect_err("cancelled");
    assert!(matches!(err, TrainError::Cancelled), "{err}");
    // JobDirs names it ckpt-rank0 under the data root, where the child looks.
    let results = join_gang(
        &dirs.data(),
        spawn_gang(&dirs.data(), 2, &value),
        &[0, 1],
        Duration::from_secs(300),
    );
    assert_eq!(results[0]["ok"], json!(true), "{}", results[0]);
    assert_eq!(results[1]["ok"], json!(true), "{}", results[1]);
    assert_eq!(results[0]["resumed_from_epoch"], json!(2));
    assert_eq!(results[1]["resumed_from_epoch"], json!(2));
    // The replayed history plus the gang's epochs equal the uninterrupted run.
    assert_close(
        "train_loss",
        &series(&results[0], "train_loss"),
        &reference.series["train_loss"],
    );
    assert_close(
        "test_loss",
        &series(&results[0], "test_loss"),
        &reference.series["test_loss"],
    );
}

#[test]
fn killing_a_rank_fails_the_others_instead_of_hanging() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let dirs = JobDirs::new();
    let dir = dirs.data();
    let mut children = spawn_gang(&dir, 3, &gang_spec(100_000));
    let deadline = Instant::now() + Duration::from_secs(120);
    while !dir.join("progress-rank0").exists() {
        assert!(Instant::now() < deadline, "the gang never started training");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut victim = children.remove(1);
    victim.kill().expect("kill rank 1");
    let _ = victim.wait();
    let killed = Instant::now();
    // Bounded by the peer timeout, not a speed claim: a hang would never end.
    let survivors = join_gang(&dir, children, &[0, 2], Duration::from_secs(120));
    eprintln!(
        "survivors failed {:.2} s after rank 1 was killed",
        killed.elapsed().as_secs_f64()
    );
    for result in survivors {
        assert_eq!(result["ok"], json!(false), "{result}");
        assert_eq!(result["distributed"], json!(true), "{result}");
        eprintln!("survivor: {}", result["error"]);
    }
}
