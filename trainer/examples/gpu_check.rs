//! One-shot CUDA check of the trainer, for the GPU machine (no cargo there: build
//! here, carry the binary, run with `LD_LIBRARY_PATH` at that machine's `torch/lib`).
//!
//! `gpu_check [device index]` trains each model kind on synthetic data in fp32, bf16
//! (AMP-style) and pure bf16 on `cuda:<index>`, checks it learned, cancels and
//! resumes one job, and prints a table of scores and throughput. Then the data-parallel path on one GPU: a one-rank
//! NCCL gang trains the first case (it must match the plain run), and NCCL all-reduce
//! bandwidth for a few sizes. Exit status 1 if any check fails.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use expcluster_trainer::distributed::nccl::Nccl;
use expcluster_trainer::distributed::{Collective, MemoryRendezvous};
use expcluster_trainer::{
    DeviceChoice, DistributedRole, MetricSink, TchTrainer, TrainError, TrainJob, Trainer,
    TrainerSpec,
};
use serde_json::{json, Value};

#[derive(Default)]
struct Sink {
    points: usize,
    cancel_after: Option<(usize, &'static AtomicBool)>,
}

impl MetricSink for Sink {
    fn emit(&mut self, name: &str, _value: f64) {
        if name == "train_loss" {
            self.points += 1;
            if let Some((after, flag)) = self.cancel_after {
                if self.points >= after {
                    flag.store(true, Ordering::SeqCst);
                }
            }
        }
    }
}

fn run(
    spec: &TrainerSpec,
    device: DeviceChoice,
    dir: &std::path::Path,
    sink: &mut Sink,
    cancel: &AtomicBool,
) -> Result<expcluster_trainer::TrainReport, TrainError> {
    run_as(spec, device, dir, sink, cancel, None)
}

fn run_as(
    spec: &TrainerSpec,
    device: DeviceChoice,
    dir: &std::path::Path,
    sink: &mut Sink,
    cancel: &AtomicBool,
    distributed: Option<DistributedRole<'_>>,
) -> Result<expcluster_trainer::TrainReport, TrainError> {
    let job = TrainJob {
        spec,
        seed: 0,
        device,
        data_root: dir,
        output_dir: dir,
        checkpoint_dir: &dir.join("ckpt"),
        cancel,
        distributed,
    };
    TchTrainer.train(&job, sink)
}

fn main() {
    let index: usize = std::env::args()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let device = DeviceChoice::Cuda(index);
    println!(
        "cuda available: {}, devices: {}",
        tch::Cuda::is_available(),
        tch::Cuda::device_count()
    );
    let cases: Vec<(&str, Value, &str, f64)> = vec![
        (
            "mlp blobs",
            json!({"dataset": {"kind": "blobs", "n_train": 4000, "n_test": 1000, "n_features": 32, "n_classes": 8, "noise": 1.0},
            "model": {"kind": "mlp", "hidden": [256, 256], "dropout": 0.1, "norm": "batch"}, "epochs": 5, "batch_size": 128}),
            "test_accuracy",
            0.9,
        ),
        (
            "cnn images",
            json!({"dataset": {"kind": "images", "n_train": 2000, "n_test": 500, "image_size": 16, "n_classes": 4, "noise": 0.5},
            "model": {"kind": "cnn", "channels": [16, 32], "norm": "batch"}, "optimizer": {"kind": "adam", "lr": 3.0e-3}, "epochs": 4, "batch_size": 64}),
            "test_accuracy",
            0.8,
        ),
        (
            "teacher mlp",
            json!({"dataset": {"kind": "teacher", "n_train": 4000, "n_test": 1000, "n_features": 8, "noise": 0.1},
            "model": {"kind": "mlp", "hidden": [128, 128], "activation": "tanh"}, "optimizer": {"kind": "adamw", "lr": 3.0e-3}, "epochs": 20, "batch_size": 64}),
            "test_r2",
            0.85,
        ),
        (
            "transformer seq",
            json!({"dataset": {"kind": "sequences", "n_train": 3000, "n_test": 500, "seq_len": 16, "n_classes": 4},
            "model": {"kind": "transformer", "d_model": 64, "heads": 4, "layers": 2, "ff": 128, "dropout": 0.1}, "optimizer": {"kind": "adam", "lr": 1.0e-3},
            "grad_clip": 1.0, "epochs": 6, "batch_size": 64}),
            "test_accuracy",
            0.6,
        ),
        (
            "mlp 784-1024² b1024",
            json!({"dataset": {"kind": "blobs", "n_train": 32768, "n_test": 1024, "n_features": 784, "n_classes": 10, "noise": 3.0},
            "model": {"kind": "mlp", "hidden": [1024, 1024]}, "epochs": 3, "batch_size": 1024}),
            "test_accuracy",
            0.5,
        ),
        (
            "mlp 784-4096² b8192",
            json!({"dataset": {"kind": "blobs", "n_train": 65536, "n_test": 1024, "n_features": 784, "n_classes": 10, "noise": 3.0},
            "model": {"kind": "mlp", "hidden": [4096, 4096]}, "epochs": 3, "batch_size": 8192}),
            "test_accuracy",
            0.5,
        ),
    ];
    let mut failures = 0;
    println!("| case | precision | metric | value | test_loss | samples/s (last epoch) | wall s |");
    println!("|---|---|---|---|---|---|---|");
    for (name, base, metric, floor) in &cases {
        for precision in ["fp32", "bf16", "bf16_pure"] {
            let mut value = base.clone();
            value["precision"] = json!(precision);
            let spec = match TrainerSpec::from_json(&value) {
                Ok(spec) => spec,
                Err(err) => {
                    println!("| {name} | {precision} | spec error: {err} | | | |");
                    failures += 1;
                    continue;
                }
            };
            let dir = std::env::temp_dir()
                .join(format!("gpu-check-{}-{precision}", name.replace(' ', "_")));
            let _ = std::fs::remove_dir_all(&dir);
            let cancel = AtomicBool::new(false);
            let started = Instant::now();
            match run(&spec, device, &dir, &mut Sink::default(), &cancel) {
                Ok(report) => {
                    let score = report
                        .final_metrics
                        .get(*metric)
                        .copied()
                        .unwrap_or(f64::NAN);
                    let ok = score >= *floor && report.device == format!("cuda:{index}");
                    failures += usize::from(!ok);
                    println!(
                        "| {name} | {precision} | {metric} | {score:.4}{} | {:.6} | {:.0} | {:.1} |",
                        if ok { "" } else { " FAIL" },
                        report.final_metrics.get("test_loss").copied().unwrap_or(f64::NAN),
                        report.final_metrics.get("samples_per_sec").copied().unwrap_or(0.0),
                        started.elapsed().as_secs_f64()
                    );
                }
                Err(err) => {
                    failures += 1;
                    println!("| {name} | {precision} | error: {err} | | | |");
                }
            }
        }
    }
    // Cancel after epoch 2 of 4 and resume on the GPU.
    static CANCEL: AtomicBool = AtomicBool::new(false);
    let spec = TrainerSpec::from_json(&cases[0].1).unwrap_or_else(|err| panic!("{err}"));
    let dir = std::env::temp_dir().join("gpu-check-resume");
    let _ = std::fs::remove_dir_all(&dir);
    let mut sink = Sink {
        points: 0,
        cancel_after: Some((2, &CANCEL)),
    };
    let first = run(&spec, device, &dir, &mut sink, &CANCEL);
    let resume_flag = AtomicBool::new(false);
    let second = run(&spec, device, &dir, &mut Sink::default(), &resume_flag);
    let resumed_ok = matches!(first, Err(TrainError::Cancelled))
        && matches!(&second, Ok(report) if report.resumed_from_epoch == Some(2) && report.epochs_run == 5);
    failures += usize::from(!resumed_ok);
    println!(
        "resume on cuda: {} (first: {:?}, second resumed_from_epoch: {:?})",
        if resumed_ok { "ok" } else { "FAIL" },
        first.as_ref().err().map(ToString::to_string),
        second
            .as_ref()
            .map(|r| r.resumed_from_epoch)
            .map_err(ToString::to_string)
    );
    failures += nccl_checks(&spec, index);
    println!("failures: {failures}");
    std::process::exit(i32::from(failures > 0));
}

/// A one-rank NCCL gang trains `spec` (same scores as the plain run), then NCCL
/// all-reduce bandwidth. Returns the number of failed checks.
fn nccl_checks(spec: &TrainerSpec, index: usize) -> usize {
    let device = DeviceChoice::Cuda(index);
    let cancel = AtomicBool::new(false);
    let rendezvous = MemoryRendezvous::default();
    let dir = std::env::temp_dir().join("gpu-check-nccl");
    let plain_dir = std::env::temp_dir().join("gpu-check-nccl-plain");
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&plain_dir);
    let role = DistributedRole {
        rank: 0,
        world_size: 1,
        advertise_host: "127.0.0.1",
        rendezvous: &rendezvous,
    };
    let started = Instant::now();
    let gang = run_as(
        spec,
        device,
        &dir,
        &mut Sink::default(),
        &cancel,
        Some(role),
    );
    let seconds = started.elapsed().as_secs_f64();
    let plain = run(spec, device, &plain_dir, &mut Sink::default(), &cancel);
    let mut failures = 0;
    match (&gang, &plain) {
        (Ok(gang), Ok(plain)) => {
            let loss = |r: &expcluster_trainer::TrainReport| {
                r.final_metrics
                    .get("test_loss")
                    .copied()
                    .unwrap_or(f64::NAN)
            };
            let diff = (loss(gang) - loss(plain)).abs();
            let ok = diff < 1e-3
                && rendezvous
                    .published()
                    .is_some_and(|id| id.starts_with(b"nccl:"));
            failures += usize::from(!ok);
            println!(
                "nccl 1-rank training: {} (test_loss {:.6} vs plain {:.6}, {seconds:.1} s)",
                if ok { "ok" } else { "FAIL" },
                loss(gang),
                loss(plain)
            );
        }
        _ => {
            failures += 1;
            println!(
                "nccl 1-rank training: FAIL (gang: {:?}, plain: {:?})",
                gang.as_ref().err().map(ToString::to_string),
                plain.as_ref().err().map(ToString::to_string)
            );
        }
    }
    let bench_rendezvous = MemoryRendezvous::default();
    let mut comm = match Nccl::connect(0, 1, index, &bench_rendezvous, &cancel) {
        Ok(comm) => comm,
        Err(err) => {
            println!("nccl all-reduce bandwidth: FAIL ({err})");
            return failures + 1;
        }
    };
    // With one rank, bus bandwidth (algbw x 2(n-1)/n) is 0 by definition; algbw is
    // what one GPU's NCCL reduction costs. Multi-GPU figures need several GPUs.
    println!("| ranks | size | time ms | algbw GB/s | busbw GB/s |");
    println!("|---|---|---|---|---|");
    for (label, floats) in [
        ("1 MiB", 1i64 << 18),
        ("16 MiB", 1 << 22),
        ("256 MiB", 1 << 26),
    ] {
        let tensor = tch::Tensor::ones([floats], (tch::Kind::Float, tch::Device::Cuda(index)));
        let repeats = 20;
        let mut ok = comm.all_reduce_sum(&tensor, &cancel).is_ok();
        tch::Cuda::synchronize(index as i64);
        let started = Instant::now();
        for _ in 0..repeats {
            ok &= comm.all_reduce_sum(&tensor, &cancel).is_ok();
        }
        tch::Cuda::synchronize(index as i64);
        let seconds = started.elapsed().as_secs_f64() / repeats as f64;
        ok &= tensor.sum(tch::Kind::Double).double_value(&[]) == floats as f64;
        failures += usize::from(!ok);
        let algbw = (floats * 4) as f64 / seconds / 1e9;
        println!(
            "| 1 | {label} | {:.3} | {algbw:.1} | 0.0 |{}",
            seconds * 1e3,
            if ok { "" } else { " FAIL" }
        );
    }
    failures
}
