//! CPU throughput of the tch trainer's MLP against the same MLP in PyTorch eager.
//!
//! `cargo run -p expcluster-trainer --release --example bench_vs_pytorch [threads]`
//!
//! The tch side is the real trainer (`TchTrainer` on a synthetic 784-feature,
//! 10-class dataset of 8,192 rows): its per-epoch `samples_per_sec` covers the
//! training steps only (batch gather, forward, backward, Adam, per-step reseeding),
//! not evaluation. The PyTorch side (`bench_vs_pytorch.py`, the venv's torch) runs the
//! same architecture (784-h-h-10, ReLU), Adam, batch gather and cross-entropy. Both
//! use the same number of intra-op threads; each reports its best of three timed
//! rounds after a warm-up (tch: epochs 2–4 of 4).
//!
//! `BENCH_DEVICE=cuda` runs both sides on `cuda:0` with larger shapes (used by
//! `scripts/gpu-check.sh`); the PyTorch side then synchronises before timing.

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::AtomicBool;

use expcluster_trainer::{DeviceChoice, MetricSink, TchTrainer, TrainJob, Trainer, TrainerSpec};
use serde_json::json;

const FEATURES: usize = 784;
const CLASSES: usize = 10;
const CPU_ROWS: usize = 8192;
const CPU_CONFIGS: [(usize, usize); 4] = [(64, 256), (128, 512), (512, 512), (1024, 1024)];
const CUDA_ROWS: usize = 32768;
const CUDA_CONFIGS: [(usize, usize); 3] = [(128, 512), (1024, 1024), (8192, 4096)];

fn on_cuda() -> bool {
    std::env::var("BENCH_DEVICE").is_ok_and(|device| device == "cuda")
}

fn rows() -> usize {
    if on_cuda() {
        CUDA_ROWS
    } else {
        CPU_ROWS
    }
}

fn configs() -> Vec<(usize, usize)> {
    if on_cuda() {
        CUDA_CONFIGS.to_vec()
    } else {
        CPU_CONFIGS.to_vec()
    }
}

struct Throughput(Vec<f64>);

impl MetricSink for Throughput {
    fn emit(&mut self, name: &str, value: f64) {
        if name == "samples_per_sec" {
            self.0.push(value);
        }
    }
}

fn python() -> PathBuf {
    std::env::var_os("EXPCLUSTER_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                .join(".cache/expcluster/venv/bin/python")
        })
}

fn tch_steps_per_sec(threads: usize, batch: usize, hidden: usize) -> Result<f64, String> {
    let epochs = 4;
    let spec = TrainerSpec::from_json(&json!({
        "dataset": {"kind": "blobs", "n_train": rows(), "n_test": 256, "n_features": FEATURES,
                    "n_classes": CLASSES, "noise": 1.0},
        "model": {"kind": "mlp", "hidden": [hidden, hidden]},
        "optimizer": {"kind": "adam", "lr": 1.0e-3},
        "epochs": epochs, "batch_size": batch, "threads": threads,
        "checkpoint_every": epochs,
    }))?;
    let dir = tempfile::tempdir().map_err(|err| err.to_string())?;
    let cancel = AtomicBool::new(false);
    let job = TrainJob {
        spec: &spec,
        seed: 0,
        device: if on_cuda() {
            DeviceChoice::Cuda(0)
        } else {
            DeviceChoice::Cpu
        },
        data_root: dir.path(),
        output_dir: dir.path(),
        checkpoint_dir: &dir.path().join("ckpt"),
        cancel: &cancel,
        distributed: None,
    };
    let mut sink = Throughput(Vec::new());
    TchTrainer
        .train(&job, &mut sink)
        .map_err(|err| err.to_string())?;
    let best = sink.0.iter().skip(1).fold(0.0f64, |a, &b| a.max(b));
    Ok(best / batch as f64)
}

fn main() -> Result<(), String> {
    let threads: usize = std::env::args()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    // Relative to the repository root when run from there (the GPU machine has the
    // tree at another path than the build machine).
    let relative = PathBuf::from("trainer/examples/bench_vs_pytorch.py");
    let script = if relative.exists() {
        relative
    } else {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/bench_vs_pytorch.py")
    };
    let python = python();
    if !python.exists() {
        return Err(format!(
            "{} not found: run scripts/setup.sh",
            python.display()
        ));
    }
    let mut args: Vec<String> = [threads, FEATURES, CLASSES, rows(), 100]
        .iter()
        .map(|v| v.to_string())
        .collect();
    args.extend(configs().iter().map(|(b, h)| format!("{b},{h}")));
    let output = Command::new(&python)
        .arg(&script)
        .args(&args)
        .output()
        .map_err(|err| err.to_string())?;
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).into_owned());
    }
    let pytorch: Vec<f64> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.rsplit(',').next()?.parse().ok())
        .collect();
    let device = if on_cuda() { "cuda:0" } else { "CPU" };
    println!("MLP {FEATURES}-h-h-{CLASSES}, Adam, fp32, {device}, {threads} thread(s)");
    println!("| batch | hidden | tch trainer steps/s | PyTorch eager steps/s | ratio |");
    println!("|---|---|---|---|---|");
    for ((batch, hidden), torch) in configs().iter().zip(pytorch) {
        let ours = tch_steps_per_sec(threads, *batch, *hidden)?;
        println!(
            "| {batch} | {hidden} | {ours:.1} | {torch:.1} | {:.2} |",
            ours / torch
        );
    }
    Ok(())
}
