//! Readers for dataset files: `.npz`, `.npy`, numeric CSV with a header, and IDX.
//! Each returns CPU tensors in the file's own dtype (CSV: Float features, Double
//! targets; IDX images scaled to [0, 1]); [`super::finish`] converts.

use std::path::Path;

use tch::{Kind, Tensor};

use super::{RawData, Split};
use crate::TrainError;

fn missing(path: &Path) -> TrainError {
    TrainError::Data(format!(
        "{} does not exist on this node: relative paths resolve against the worker's --data-root, or the workspace's path when it has none (a filesystem shared with the coordinator); copy the data there or start the worker with --data-root",
        path.display()
    ))
}

pub fn npz(path: &Path) -> Result<RawData, TrainError> {
    if !path.exists() {
        return Err(missing(path));
    }
    let arrays = Tensor::read_npz(path)
        .map_err(|err| TrainError::Data(format!("{}: {err}", path.display())))?;
    let take = |key: &str| -> Option<Tensor> {
        let index = arrays.iter().position(|(name, _)| name == key)?;
        Some(arrays[index].1.shallow_clone())
    };
    let names: Vec<String> = arrays.iter().map(|(name, _)| name.clone()).collect();
    let required = |key: &str| {
        take(key).ok_or_else(|| {
            TrainError::Data(format!(
                "{} has no array `{key}` (it has: {}); expected x_train, y_train, x_test, y_test and optionally x_val, y_val",
                path.display(),
                names.join(", ")
            ))
        })
    };
    let train = Split {
        x: required("x_train")?,
        y: required("y_train")?,
    };
    let test = Split {
        x: required("x_test")?,
        y: required("y_test")?,
    };
    let val = match (take("x_val"), take("y_val")) {
        (Some(x), Some(y)) => Some(Split { x, y }),
        (None, None) => None,
        _ => {
            return Err(TrainError::Data(format!(
                "{} has only one of x_val and y_val",
                path.display()
            )))
        }
    };
    Ok(RawData { train, val, test })
}

pub fn npy(path: &Path) -> Result<Tensor, TrainError> {
    if !path.exists() {
        return Err(missing(path));
    }
    Tensor::read_npy(path).map_err(|err| TrainError::Data(format!("{}: {err}", path.display())))
}

/// A numeric CSV with a header row; `target` names the label column.
pub fn csv(path: &Path, target: &str) -> Result<Split, TrainError> {
    if !path.exists() {
        return Err(missing(path));
    }
    let text = std::fs::read_to_string(path).map_err(TrainError::io(path))?;
    let mut lines = text.lines().filter(|line| !line.trim().is_empty());
    let header: Vec<&str> = lines
        .next()
        .ok_or_else(|| TrainError::Data(format!("{} is empty", path.display())))?
        .split(',')
        .map(|cell| cell.trim().trim_matches('"'))
        .collect();
    let target_index = header
        .iter()
        .position(|name| *name == target)
        .ok_or_else(|| {
            TrainError::Data(format!(
                "{} has no column `{target}` (columns: {})",
                path.display(),
                header.join(", ")
            ))
        })?;
    let (mut features, mut targets, mut rows) = (Vec::new(), Vec::new(), 0i64);
    for (number, line) in lines.enumerate() {
        let cells: Vec<&str> = line.split(',').map(str::trim).collect();
        if cells.len() != header.len() {
            return Err(TrainError::Data(format!(
                "{} line {}: {} cells, header has {}",
                path.display(),
                number + 2,
                cells.len(),
                header.len()
            )));
        }
        for (column, cell) in cells.iter().enumerate() {
            let value: f64 = cell.parse().map_err(|_| {
                TrainError::Data(format!(
                    "{} line {}: `{cell}` in column `{}` is not a number",
                    path.display(),
                    number + 2,
                    header[column]
                ))
            })?;
            if column == target_index {
                targets.push(value);
            } else {
                features.push(value as f32);
            }
        }
        rows += 1;
    }
    let x = Tensor::from_slice(&features).reshape([rows, header.len() as i64 - 1]);
    let y = Tensor::from_slice(&targets);
    // Integral targets are labels: the same "integer labels → classification" rule
    // as for npz files.
    let integral = targets.iter().all(|value| value.fract() == 0.0);
    let y = if integral { y.to_kind(Kind::Int64) } else { y };
    Ok(Split { x, y })
}

/// An uncompressed IDX file (the MNIST format). Unsigned-byte images become Float in
/// [0, 1]; one-dimensional files (labels) keep an integer dtype.
pub fn idx(path: &Path) -> Result<Tensor, TrainError> {
    if !path.exists() {
        return Err(missing(path));
    }
    let bytes = std::fs::read(path).map_err(TrainError::io(path))?;
    let bad = |why: &str| TrainError::Data(format!("{}: not an IDX file ({why})", path.display()));
    if bytes.len() < 4 || bytes[0] != 0 || bytes[1] != 0 {
        return Err(bad(
            "bad magic; gzip-compressed files must be unpacked first",
        ));
    }
    let (kind, width) = match bytes[2] {
        0x08 => (Kind::Uint8, 1),
        0x09 => (Kind::Int8, 1),
        0x0B => (Kind::Int16, 2),
        0x0C => (Kind::Int, 4),
        0x0D => (Kind::Float, 4),
        0x0E => (Kind::Double, 8),
        _ => return Err(bad("unknown element type")),
    };
    let ndim = bytes[3] as usize;
    let data_start = 4 + 4 * ndim;
    if ndim == 0 || bytes.len() < data_start {
        return Err(bad("truncated header"));
    }
    let dims: Vec<i64> = (0..ndim)
        .map(|i| {
            let at = 4 + 4 * i;
            u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]) as i64
        })
        .collect();
    let count: i64 = dims.iter().product();
    if bytes.len() != data_start + count as usize * width {
        return Err(bad("size does not match the header"));
    }
    // IDX is big-endian; swap multi-byte elements to native order.
    let mut data = bytes[data_start..].to_vec();
    if width > 1 && cfg!(target_endian = "little") {
        for chunk in data.chunks_mut(width) {
            chunk.reverse();
        }
    }
    let tensor = Tensor::f_from_data_size(&data, &dims, kind)?;
    if kind == Kind::Uint8 && ndim > 1 {
        Ok(tensor.to_kind(Kind::Float) / 255.0)
    } else {
        Ok(tensor)
    }
}
