//! Scoring: evaluating a model on a split (under `no_grad`, in eval mode) and the
//! metric formulas, computed in f64 on the host with scikit-learn's definitions
//! (macro F1 over the classes present in targets or predictions; R² averaged
//! uniformly over outputs).

use std::collections::BTreeMap;

use expcluster_core::trainer_spec::Task;
use tch::{Kind, Reduction, Tensor};

use crate::data::Split;
use crate::models::{Ctx, Net};

/// Rows per evaluation forward.
const EVAL_BATCH: i64 = 2048;

/// Scores `split` as `{prefix}_loss`, then accuracy and F1, or MSE, MAE and R².
/// The loss is the plain criterion (cross-entropy without label smoothing, or MSE),
/// so runs with different smoothing compare on the same scale.
pub fn evaluate(
    net: &dyn Net,
    split: &Split,
    task: Task,
    compute: Kind,
    prefix: &str,
) -> BTreeMap<String, f64> {
    let ctx = Ctx {
        train: false,
        compute,
        dropout_seed: 0,
    };
    let rows = split.rows() as i64;
    let outputs = tch::no_grad(|| {
        let chunks: Vec<Tensor> = (0..rows)
            .step_by(EVAL_BATCH as usize)
            .map(|start| {
                let len = EVAL_BATCH.min(rows - start);
                net.forward(&split.x.narrow(0, start, len), ctx)
            })
            .collect();
        Tensor::cat(&chunks, 0)
    });
    let mut scores = BTreeMap::new();
    match task {
        Task::Classification => {
            let loss = tch::no_grad(|| {
                outputs.cross_entropy_loss::<Tensor>(&split.y, None, Reduction::Mean, -100, 0.0)
            });
            let predicted: Vec<i64> =
                Vec::try_from(outputs.argmax(-1, false).to_device(tch::Device::Cpu))
                    .expect("argmax yields int64");
            let truth: Vec<i64> =
                Vec::try_from(split.y.to_device(tch::Device::Cpu)).expect("labels are int64");
            scores.insert(format!("{prefix}_loss"), loss.double_value(&[]));
            scores.insert(format!("{prefix}_accuracy"), accuracy(&truth, &predicted));
            scores.insert(format!("{prefix}_f1"), macro_f1(&truth, &predicted));
        }
        Task::Regression => {
            let width = outputs.size()[1] as usize;
            let predicted = host_f64(&outputs);
            let truth = host_f64(&split.y);
            let mse = mean_squared_error(&truth, &predicted);
            scores.insert(format!("{prefix}_loss"), mse);
            scores.insert(format!("{prefix}_mse"), mse);
            scores.insert(
                format!("{prefix}_mae"),
                mean_absolute_error(&truth, &predicted),
            );
            scores.insert(format!("{prefix}_r2"), r2(&truth, &predicted, width));
        }
    }
    scores
}

fn host_f64(t: &Tensor) -> Vec<f64> {
    Vec::try_from(
        t.to_kind(Kind::Double)
            .flatten(0, -1)
            .to_device(tch::Device::Cpu),
    )
    .expect("double tensor")
}

pub fn accuracy(truth: &[i64], predicted: &[i64]) -> f64 {
    let right = truth.iter().zip(predicted).filter(|(t, p)| t == p).count();
    right as f64 / truth.len().max(1) as f64
}

/// Unweighted mean of per-class F1 over classes seen in either vector.
pub fn macro_f1(truth: &[i64], predicted: &[i64]) -> f64 {
    let mut counts: BTreeMap<i64, (f64, f64, f64)> = BTreeMap::new(); // (tp, fp, fn)
    for (&t, &p) in truth.iter().zip(predicted) {
        if t == p {
            counts.entry(t).or_default().0 += 1.0;
        } else {
            counts.entry(p).or_default().1 += 1.0;
            counts.entry(t).or_default().2 += 1.0;
        }
    }
    if counts.is_empty() {
        return 0.0;
    }
    let total: f64 = counts
        .values()
        .map(|(tp, fp, fn_)| {
            let denominator = 2.0 * tp + fp + fn_;
            if denominator > 0.0 {
                2.0 * tp / denominator
            } else {
                0.0
            }
        })
        .sum();
    total / counts.len() as f64
}

pub fn mean_squared_error(truth: &[f64], predicted: &[f64]) -> f64 {
    truth
        .iter()
        .zip(predicted)
        .map(|(t, p)| (t - p).powi(2))
        .sum::<f64>()
        / truth.len().max(1) as f64
}

pub fn mean_absolute_error(truth: &[f64], predicted: &[f64]) -> f64 {
    truth
        .iter()
        .zip(predicted)
        .map(|(t, p)| (t - p).abs())
        .sum::<f64>()
        / truth.len().max(1) as f64
}

/// R² per output column of row-major `[n, width]` data, averaged.
pub fn r2(truth: &[f64], predicted: &[f64], width: usize) -> f64 {
    let rows = truth.len() / width.max(1);
    let mut total = 0.0;
    for column in 0..width {
        let values = |data: &[f64]| {
            (0..rows)
                .map(move |r| data[r * width + column])
                .collect::<Vec<f64>>()
        };
        let (t, p) = (values(truth), values(predicted));
        let mean = t.iter().sum::<f64>() / rows as f64;
        let residual: f64 = t.iter().zip(&p).map(|(a, b)| (a - b).powi(2)).sum();
        let spread: f64 = t.iter().map(|a| (a - mean).powi(2)).sum();
        // scikit-learn: a constant target scores 1 if predicted exactly, else 0.
        total += if spread > 0.0 {
            1.0 - residual / spread
        } else if residual == 0.0 {
            1.0
        } else {
            0.0
        };
    }
    total / width.max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formulas_match_scikit_learn() {
        // sklearn: f1_score([0,1,2,0,1,2], [0,2,1,0,0,1], average="macro") = 0.2666…
        let f1 = macro_f1(&[0, 1, 2, 0, 1, 2], &[0, 2, 1, 0, 0, 1]);
        assert!((f1 - 0.26666666666666666).abs() < 1e-12, "{f1}");
        assert!((accuracy(&[1, 2, 3], &[1, 0, 3]) - 2.0 / 3.0).abs() < 1e-12);
        // sklearn: r2_score([3, -0.5, 2, 7], [2.5, 0.0, 2, 8]) = 0.9486081370449679
        let r = r2(&[3.0, -0.5, 2.0, 7.0], &[2.5, 0.0, 2.0, 8.0], 1);
        assert!((r - 0.9486081370449679).abs() < 1e-12, "{r}");
        assert!(
            (mean_absolute_error(&[3.0, -0.5, 2.0, 7.0], &[2.5, 0.0, 2.0, 8.0]) - 0.5).abs()
                < 1e-12
        );
    }
}
