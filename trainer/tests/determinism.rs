//! Reproducibility and resumption: the same seed gives bit-identical results on CPU,
//! another seed different ones, and a job cancelled at an epoch boundary or in the
//! middle of an epoch resumes from its checkpoint to exactly the uninterrupted
//! result, with no gap and no repeat in its arrays.
//!
//! libtorch's thread count is process-wide, so these tests take a lock.

mod common;

use std::sync::atomic::AtomicBool;
use std::sync::{Mutex, MutexGuard};

use common::*;
use expcluster_trainer::{TrainError, TrainerSpec};
use serde_json::json;

static SERIAL: Mutex<()> = Mutex::new(());

/// One test at a time (a panicking test leaves the lock usable for the next).
fn serial() -> MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

const FILES: [&str; 6] = [
    "train_losses.npy",
    "val_losses.npy",
    "val_accuracies.npy",
    "test_losses.npy",
    "test_accuracies.npy",
    "test_f1s.npy",
];

/// Dropout, batch norm, Adam, warm-up + cosine and a validation split: every piece of
/// state a resume must restore.
fn busy_spec(epochs: usize, extra: serde_json::Value) -> TrainerSpec {
    let mut value = json!({
        "dataset": {"kind": "spirals", "n_train": 500, "n_test": 200, "n_features": 4, "noise": 0.05, "val_fraction": 0.2},
        "model": {"kind": "mlp", "hidden": [32, 32], "dropout": 0.2, "norm": "batch"},
        "optimizer": {"kind": "adam", "lr": 1.0e-2},
        "schedule": {"kind": "cosine", "warmup_epochs": 1},
        "loss": {"kind": "cross_entropy", "label_smoothing": 0.05},
        "grad_clip": 5.0,
        "epochs": epochs, "batch_size": 48,
    });
    for (key, section) in extra.as_object().expect("object") {
        value[key] = section.clone();
    }
    spec(value)
}

fn arrays(dirs: &JobDirs, run: &str) -> Vec<Vec<f64>> {
    FILES
        .iter()
        .map(|file| output_npy(dirs, run, file))
        .collect()
}

#[test]
fn same_seed_is_bit_identical_and_seeds_differ() {
    let _serial = serial();
    let dirs = JobDirs::new();
    let spec = busy_spec(4, json!({}));
    let (first, _) = train_ok(&dirs, "a", &spec, 11);
    let (second, _) = train_ok(&dirs, "b", &spec, 11);
    let (other, _) = train_ok(&dirs, "c", &spec, 12);
    let (a, b, c) = (arrays(&dirs, "a"), arrays(&dirs, "b"), arrays(&dirs, "c"));
    assert!(a.iter().all(|values| values.len() == 4));
    assert_eq!(a, b, "same seed, different results");
    assert_ne!(a[0], c[0], "different seeds gave the same train losses");
    assert_eq!(
        first.final_metrics["test_loss"],
        second.final_metrics["test_loss"]
    );
    assert_ne!(
        first.final_metrics["test_loss"],
        other.final_metrics["test_loss"]
    );
}

/// Dropout masks come from the job's own seeded stream (on the CPU), so a job trained
/// while another trains in the same process gets exactly the results it gets alone.
/// libtorch's process-wide generator made them depend on the interleaving before.
#[test]
fn a_job_with_dropout_is_bit_identical_while_another_trains_beside_it() {
    let _serial = serial();
    let dirs = JobDirs::new();
    let spec = busy_spec(4, json!({}));
    train_ok(&dirs, "alone", &spec, 11);
    std::thread::scope(|scope| {
        let beside = scope.spawn(|| train_ok(&dirs, "beside", &spec, 12));
        train_ok(&dirs, "together", &spec, 11);
        beside.join().expect("the other job's thread");
    });
    let (alone, together) = (arrays(&dirs, "alone"), arrays(&dirs, "together"));
    assert!(alone[0].iter().all(|loss| loss.is_finite()));
    assert_eq!(
        alone, together,
        "another job in the process changed the results"
    );
}

/// Cancels once `metric` has `after` points, resumes in the same checkpoint directory
/// and compares with an uninterrupted run.
fn interrupt_and_resume(
    spec: &TrainerSpec,
    metric: &'static str,
    after: usize,
    expected_resume: usize,
) {
    let dirs = JobDirs::new();
    let (full, full_sink) = train_ok(&dirs, "full", spec, 21);

    let cancel = AtomicBool::new(false);
    let mut sink = Recorder {
        cancel_when: Some((metric, after, &cancel)),
        ..Recorder::default()
    };
    let err = train(&dirs, "cut", spec, 21, &mut sink, &cancel).expect_err("cancelled");
    assert!(matches!(err, TrainError::Cancelled), "{err}");
    assert_eq!(
        output_npy(&dirs, "cut", "train_losses.npy").len(),
        expected_resume
    );

    let resumed_flag = AtomicBool::new(false);
    let mut resumed_sink = Recorder::default();
    let report = train(&dirs, "cut", spec, 21, &mut resumed_sink, &resumed_flag).expect("resumes");
    assert_eq!(report.resumed_from_epoch, Some(expected_resume));
    assert_eq!(report.epochs_run, spec.epochs);
    // The resumed attempt replays the checkpointed history before the epochs it runs,
    // so its series (what the coordinator stores for the new attempt) is complete:
    // the uninterrupted run's, with no gap and no repeat.
    assert_eq!(
        resumed_sink.series["train_loss"],
        full_sink.series["train_loss"]
    );
    assert_eq!(
        arrays(&dirs, "cut"),
        arrays(&dirs, "full"),
        "resumed run differs"
    );
    assert_eq!(report.final_metrics, {
        let mut metrics = full.final_metrics.clone();
        metrics.insert(
            "samples_per_sec".into(),
            report.final_metrics["samples_per_sec"],
        );
        metrics
    });
    assert_eq!(full_sink.series["train_loss"].len(), spec.epochs);

    // Done is done: running again trains nothing and reports the same.
    let again = train(
        &dirs,
        "cut",
        spec,
        21,
        &mut Recorder::default(),
        &resumed_flag,
    )
    .expect("no-op");
    assert_eq!(again.resumed_from_epoch, Some(spec.epochs));
    assert_eq!(arrays(&dirs, "cut"), arrays(&dirs, "full"));
}

#[test]
fn resume_at_an_epoch_boundary_matches_an_uninterrupted_run() {
    let _serial = serial();
    // The flag rises with epoch 2's metrics; the loop sees it at the next step.
    interrupt_and_resume(&busy_spec(5, json!({})), "train_loss", 2, 2);
}

#[test]
fn resume_in_the_middle_of_an_epoch_matches_an_uninterrupted_run() {
    let _serial = serial();
    // 400 training rows / 48 = 9 steps an epoch; step metrics every 4 steps. The 4th
    // step-level point comes at global step 16, inside epoch 1 (steps 9..18); epoch
    // checkpoints are every 3 epochs, so only the cancel's own checkpoint exists.
    let spec = busy_spec(4, json!({"eval_every_steps": 4, "checkpoint_every": 3}));
    interrupt_and_resume(&spec, "step_train_loss", 4, 1);
}

#[test]
fn a_checkpoint_from_another_seed_is_refused() {
    let _serial = serial();
    let dirs = JobDirs::new();
    let spec = busy_spec(1, json!({}));
    train_ok(&dirs, "x", &spec, 1);
    let cancel = AtomicBool::new(false);
    let err = train(&dirs, "x", &spec, 2, &mut Recorder::default(), &cancel)
        .expect_err("foreign checkpoint");
    assert!(
        matches!(err, TrainError::Checkpoint(_)) && err.to_string().contains("different"),
        "{err}"
    );
}
