//! Helpers shared by the trainer's integration tests: the venv's python (test data are
//! made at test time with numpy and scikit-learn), a recording metric sink, and job
//! plumbing.

#![allow(dead_code)] // each test binary uses a different subset

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};

use expcluster_trainer::{
    DeviceChoice, MetricSink, TchTrainer, TrainError, TrainJob, TrainReport, Trainer, TrainerSpec,
};

/// The venv python with torch, numpy and scikit-learn (`EXPCLUSTER_PYTHON`, else the
/// cache `scripts/setup.sh` fills). Missing is a failure, never a skip.
pub fn python() -> PathBuf {
    let path = std::env::var_os("EXPCLUSTER_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME").expect("HOME is set");
            PathBuf::from(home).join(".cache/expcluster/venv/bin/python")
        });
    assert!(
        path.exists(),
        "{} not found: run scripts/setup.sh (or set EXPCLUSTER_PYTHON)",
        path.display()
    );
    path
}

/// Runs a python snippet; its stdout.
pub fn run_python(code: &str) -> String {
    let output = Command::new(python())
        .arg("-c")
        .arg(code)
        .output()
        .expect("python starts");
    assert!(
        output.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// scikit-learn digits as the trainer's npz: 75/25 split with random_state 0,
/// float64 X / 16, int64 y.
pub fn digits_npz(dir: &Path) -> PathBuf {
    let path = dir.join("digits.npz");
    run_python(&format!(
        r#"
import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
x, y = load_digits(return_X_y=True)
xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.25, random_state=0)
np.savez({path:?}, x_train=(xtr / 16.0).astype(np.float64), y_train=ytr.astype(np.int64),
         x_test=(xte / 16.0).astype(np.float64), y_test=yte.astype(np.int64))
"#,
        path = path.to_str().expect("utf-8 temp path")
    ));
    path
}

/// Loads a `.npy` with numpy and returns its values (checks numpy reads our files).
pub fn numpy_values(path: &Path) -> Vec<f64> {
    let out = run_python(&format!(
        "import numpy as np\na = np.load({:?})\nassert a.dtype == np.float64 and a.ndim == 1\nprint(' '.join(repr(float(v)) for v in a))",
        path.to_str().expect("utf-8 path")
    ));
    out.split_whitespace()
        .map(|v| v.parse().expect("float"))
        .collect()
}

/// Records every emitted point; optionally raises `cancel` once `metric` has
/// `after` points.
#[derive(Default)]
pub struct Recorder<'a> {
    pub series: BTreeMap<String, Vec<f64>>,
    pub cancel_when: Option<(&'static str, usize, &'a AtomicBool)>,
}

impl MetricSink for Recorder<'_> {
    fn emit(&mut self, name: &str, value: f64) {
        let points = self.series.entry(name.to_owned()).or_default();
        points.push(value);
        if let Some((metric, after, flag)) = self.cancel_when {
            if metric == name && points.len() >= after {
                flag.store(true, Ordering::SeqCst);
            }
        }
    }
}

pub fn spec(value: serde_json::Value) -> TrainerSpec {
    TrainerSpec::from_json(&value).unwrap_or_else(|err| panic!("test spec invalid: {err}"))
}

/// Directories of one job.
pub struct JobDirs {
    pub root: tempfile::TempDir,
}

impl JobDirs {
    pub fn new() -> JobDirs {
        JobDirs {
            root: tempfile::tempdir().expect("temp dir"),
        }
    }
    pub fn data(&self) -> PathBuf {
        self.root.path().to_path_buf()
    }
    pub fn output(&self, name: &str) -> PathBuf {
        self.root.path().join(format!("out-{name}"))
    }
    pub fn checkpoints(&self, name: &str) -> PathBuf {
        self.root.path().join(format!("ckpt-{name}"))
    }
}

/// Trains on CPU; `run` names the output and checkpoint directories.
pub fn train(
    dirs: &JobDirs,
    run: &str,
    spec: &TrainerSpec,
    seed: u64,
    sink: &mut Recorder<'_>,
    cancel: &AtomicBool,
) -> Result<TrainReport, TrainError> {
    let (output, checkpoints) = (dirs.output(run), dirs.checkpoints(run));
    let job = TrainJob {
        spec,
        seed,
        device: DeviceChoice::Cpu,
        data_root: &dirs.data(),
        output_dir: &output,
        checkpoint_dir: &checkpoints,
        cancel,
        distributed: None,
    };
    TchTrainer.train(&job, sink)
}

/// Trains to completion with a fresh sink.
pub fn train_ok(
    dirs: &JobDirs,
    run: &str,
    spec: &TrainerSpec,
    seed: u64,
) -> (TrainReport, Recorder<'static>) {
    let cancel = AtomicBool::new(false);
    let mut sink = Recorder::default();
    let report = train(dirs, run, spec, seed, &mut sink, &cancel).expect("training succeeds");
    eprintln!("{run}: {:?}", report.final_metrics);
    (report, sink)
}

/// Reads a 1-D float64 `.npy` written by the trainer (fast path; numpy checks the
/// format in the digits test).
pub fn read_npy(path: &Path) -> Vec<f64> {
    let bytes = std::fs::read(path).unwrap_or_else(|err| panic!("{}: {err}", path.display()));
    assert_eq!(&bytes[..6], b"\x93NUMPY");
    let header = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    bytes[10 + header..]
        .chunks_exact(8)
        .map(|chunk| f64::from_le_bytes(chunk.try_into().expect("8 bytes")))
        .collect()
}

pub fn output_npy(dirs: &JobDirs, run: &str, file: &str) -> Vec<f64> {
    read_npy(&dirs.output(run).join(file))
}
