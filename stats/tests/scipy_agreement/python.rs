//! Runs the reference Python (numpy + scipy) once per test over a batch of
//! cases: JSON in on stdin, JSON out on stdout.
//!
//! Non-finite numbers cross the boundary as the strings "nan", "inf" and
//! "-inf", because JSON has no spelling for them. A missing interpreter is a
//! failure, never a skip: a skipped agreement test would silently stop
//! guarding the numbers.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde_json::{json, Value};

/// Helpers every reference script can use, then `run(case)` over the cases.
const PRELUDE: &str = r#"
import json, math, sys, warnings
import numpy as np
import scipy
from scipy import special, stats
warnings.simplefilter("ignore")

def dec(x):
    if isinstance(x, str):
        return float(x)
    if isinstance(x, list):
        return [dec(v) for v in x]
    if isinstance(x, dict):
        return {k: dec(v) for k, v in x.items()}
    return x

def enc(x):
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        x = float(x)
        return x if math.isfinite(x) else repr(x)
    if isinstance(x, (list, tuple, np.ndarray)):
        return [enc(v) for v in x]
    if isinstance(x, dict):
        return {k: enc(v) for k, v in x.items()}
    return x

def finite(x):
    x = np.asarray(x, dtype=float)
    return x[np.isfinite(x)]

def finite_pairs(a, b):
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    keep = np.isfinite(a) & np.isfinite(b)
    return a[keep], b[keep]
"#;

const EPILOGUE: &str = r#"
cases = dec(json.load(sys.stdin))
print(json.dumps({"scipy": scipy.__version__, "results": enc([run(c) for c in cases])}))
"#;

fn interpreter() -> PathBuf {
    if let Some(path) = std::env::var_os("EXPCLUSTER_PYTHON") {
        return PathBuf::from(path);
    }
    let home = std::env::var_os("HOME").unwrap_or_default();
    PathBuf::from(home).join(".cache/expcluster/venv/bin/python")
}

/// Runs `script` (which defines `run(case)`) over `cases`; returns one result
/// per case and the scipy version, for failure messages.
pub fn run_reference(script: &str, cases: &[Value]) -> (Vec<Value>, String) {
    let python = interpreter();
    assert!(
        python.exists(),
        "reference python not found at {}: run `scripts/setup.sh` (or set EXPCLUSTER_PYTHON \
         to a python with numpy and scipy)",
        python.display()
    );
    let program = format!("{PRELUDE}\n{script}\n{EPILOGUE}");
    let mut child = Command::new(&python)
        .arg("-c")
        .arg(program)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot start {}: {e}; run `scripts/setup.sh`",
                python.display()
            )
        });
    let input = serde_json::to_vec(&Value::Array(cases.to_vec())).expect("cases serialise");
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(&input)
        .expect("write cases to python");
    let output = child.wait_with_output().expect("python runs to completion");
    assert!(
        output.status.success(),
        "reference python failed (is numpy/scipy installed? run `scripts/setup.sh`):\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let reply: Value = serde_json::from_slice(&output.stdout).expect("python prints JSON");
    let version = reply["scipy"].as_str().unwrap_or("?").to_string();
    let results = reply["results"].as_array().expect("results array").clone();
    assert_eq!(results.len(), cases.len(), "one result per case");
    (results, version)
}

/// A float for JSON, with non-finite values spelled as strings.
pub fn encode(x: f64) -> Value {
    if x.is_finite() {
        json!(x)
    } else if x.is_nan() {
        json!("nan")
    } else if x > 0.0 {
        json!("inf")
    } else {
        json!("-inf")
    }
}

pub fn encode_all(values: &[f64]) -> Value {
    Value::Array(values.iter().map(|v| encode(*v)).collect())
}

/// The float in a reference result; `null` (Python `None`) reads as `None`.
pub fn decode(value: &Value) -> Option<f64> {
    match value {
        Value::Null => None,
        Value::Number(n) => n.as_f64(),
        Value::String(s) => match s.as_str() {
            "nan" => Some(f64::NAN),
            "inf" => Some(f64::INFINITY),
            "-inf" => Some(f64::NEG_INFINITY),
            other => panic!("unexpected number spelling {other:?}"),
        },
        other => panic!("expected a number, got {other}"),
    }
}

/// A float field that the reference always provides.
pub fn field(result: &Value, name: &str) -> f64 {
    decode(&result[name]).unwrap_or_else(|| panic!("reference result lacks `{name}`: {result}"))
}
