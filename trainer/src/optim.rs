//! SGD (momentum, Nesterov), Adam and AdamW with PyTorch's update rules, run by
//! libtorch's fused kernels ([`crate::native::optim`]), plus global-norm gradient clipping.
//! The optimizer keeps its own buffers rather than tch's optimizers, which cannot
//! export their state: these save and restore every buffer, so a resumed run continues
//! bit-for-bit.
//!
//! Gradients are passed in, not read from the parameters' `.grad`: the loop takes
//! them from autograd for this step only (nothing to zero, nothing accumulated, as
//! PyTorch's `zero_grad(set_to_none=True)` then `backward()`).

use expcluster_core::trainer_spec::OptimizerSpec;
use tch::{Device, Kind, Tensor};

use crate::native::optim::{self as fused, AdamStep};
use crate::TrainError;

pub struct Optimizer {
    spec: OptimizerSpec,
    params: Vec<Tensor>,
    /// Per parameter: SGD `[momentum]` (none without momentum); Adam/AdamW `[m, v]`.
    state: Vec<Vec<Tensor>>,
    /// Updates applied so far (Adam's bias correction uses it).
    pub steps: i64,
    /// `steps` as the fused Adam kernels read it: a float32 scalar on the device.
    step_tensor: Tensor,
}

impl Optimizer {
    pub fn new(spec: &OptimizerSpec, params: Vec<Tensor>) -> Optimizer {
        let buffers = match spec {
            OptimizerSpec::Sgd { momentum, .. } if *momentum > 0.0 => 1,
            OptimizerSpec::Sgd { .. } => 0,
            OptimizerSpec::Adam { .. } | OptimizerSpec::Adamw { .. } => 2,
        };
        let state = params
            .iter()
            .map(|p| (0..buffers).map(|_| p.zeros_like()).collect())
            .collect();
        let device = params.first().map_or(Device::Cpu, Tensor::device);
        Optimizer {
            spec: spec.clone(),
            params,
            state,
            steps: 0,
            step_tensor: Tensor::zeros([], (Kind::Float, device)),
        }
    }

    /// The parameters, in the order [`Optimizer::step`] expects their gradients.
    pub fn params(&self) -> &[Tensor] {
        &self.params
    }

    /// Scales `grads` so their global L2 norm is at most `max_norm`. Stays on the
    /// device (no host sync).
    pub fn clip_grad_norm(grads: &[Tensor], max_norm: f64) {
        let grads: Vec<&Tensor> = grads.iter().filter(|g| g.defined()).collect();
        if grads.is_empty() {
            return;
        }
        tch::no_grad(|| {
            let norms: Vec<Tensor> = grads.iter().map(|g| g.norm()).collect();
            let total = Tensor::stack(&norms, 0).norm();
            let scale = (max_norm / (total + 1e-6)).clamp_max(1.0);
            for g in grads {
                let _ = g.shallow_clone().g_mul_(&scale);
            }
        });
    }

    /// One update with learning rate `lr`; `grads[i]` is the gradient of
    /// `params()[i]` (undefined: the parameter took no part and is left alone).
    pub fn step(&mut self, grads: &[Tensor], lr: f64) -> Result<(), TrainError> {
        if grads.len() != self.params.len() {
            return Err(TrainError::Torch(format!(
                "{} gradients for {} parameters",
                grads.len(),
                self.params.len()
            )));
        }
        self.steps += 1;
        let live: Vec<usize> = (0..grads.len()).filter(|&i| grads[i].defined()).collect();
        let params: Vec<&Tensor> = live.iter().map(|&i| &self.params[i]).collect();
        let live_grads: Vec<&Tensor> = live.iter().map(|&i| &grads[i]).collect();
        let buffer =
            |j: usize| -> Vec<&Tensor> { live.iter().map(|&i| &self.state[i][j]).collect() };
        match &self.spec {
            OptimizerSpec::Sgd {
                weight_decay,
                momentum,
                nesterov,
                ..
            } => {
                let buffers = match *momentum > 0.0 {
                    true => buffer(0),
                    false => Vec::new(),
                };
                fused::sgd(
                    &params,
                    &live_grads,
                    &buffers,
                    lr,
                    *weight_decay,
                    *momentum,
                    *nesterov,
                )
            }
            OptimizerSpec::Adam {
                weight_decay,
                betas,
                eps,
                ..
            }
            | OptimizerSpec::Adamw {
                weight_decay,
                betas,
                eps,
                ..
            } => {
                let _ = tch::no_grad(|| self.step_tensor.fill_(self.steps as f64));
                let (exp_avgs, exp_avg_sqs) = (buffer(0), buffer(1));
                let steps = vec![&self.step_tensor; params.len()];
                let step = AdamStep {
                    lr,
                    betas: *betas,
                    eps: *eps,
                    weight_decay: *weight_decay,
                    decoupled: matches!(self.spec, OptimizerSpec::Adamw { .. }),
                };
                fused::adam(&params, &live_grads, &exp_avgs, &exp_avg_sqs, &steps, step)
            }
        }
    }

    /// The buffers, named for a checkpoint file.
    pub fn named_state(&self) -> Vec<(String, Tensor)> {
        let mut named = Vec::new();
        for (i, buffers) in self.state.iter().enumerate() {
            for (j, buffer) in buffers.iter().enumerate() {
                named.push((format!("p{i}_b{j}"), buffer.shallow_clone()));
            }
        }
        named
    }

    /// Restores buffers saved by [`Optimizer::named_state`] and the step count.
    pub fn load_state(
        &mut self,
        named: Vec<(String, Tensor)>,
        steps: i64,
        device: Device,
    ) -> Result<(), TrainError> {
        let mut found = 0;
        for (i, buffers) in self.state.iter_mut().enumerate() {
            for (j, buffer) in buffers.iter_mut().enumerate() {
                let name = format!("p{i}_b{j}");
                let saved = named.iter().find(|(key, _)| *key == name).ok_or_else(|| {
                    TrainError::Checkpoint(format!("optimizer state lacks {name}"))
                })?;
                if saved.1.size() != buffer.size() {
                    return Err(TrainError::Checkpoint(format!(
                        "optimizer buffer {name} has shape {:?}, the model needs {:?}",
                        saved.1.size(),
                        buffer.size()
                    )));
                }
                tch::no_grad(|| buffer.f_copy_(&saved.1.to_device(device)))?;
                found += 1;
            }
        }
        if found != named.len() {
            return Err(TrainError::Checkpoint(format!(
                "optimizer state has {} buffers, this optimizer {found}",
                named.len()
            )));
        }
        self.steps = steps;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    //! The fused kernels against `torch.optim` itself (its for-loop implementation),
    //! run by the venv's PyTorch on the same values.

    use super::*;
    use serde_json::json;

    /// The venv's python (`EXPCLUSTER_PYTHON`, else the cache scripts/setup.sh fills).
    fn python() -> std::path::PathBuf {
        let path = std::env::var_os("EXPCLUSTER_PYTHON")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| {
                let home = std::env::var_os("HOME").expect("HOME is set");
                std::path::PathBuf::from(home).join(".cache/expcluster/venv/bin/python")
            });
        assert!(
            path.exists(),
            "{} not found: run scripts/setup.sh (or set EXPCLUSTER_PYTHON)",
            path.display()
        );
        path
    }

    const SHAPES: [&[i64]; 2] = [&[3, 4], &[5]];
    const LRS: [f64; 4] = [0.1, 0.05, 0.02, 0.2];

    /// Parameter `p` at the start, and its gradient at step `s`: fixed, varied values.
    fn values(p: usize, s: Option<usize>) -> Vec<f32> {
        let n: i64 = SHAPES[p].iter().product();
        (0..n)
            .map(|i| {
                let x = (i as f64 + 1.0) * (p as f64 + 1.3);
                match s {
                    None => x.sin() as f32,
                    Some(s) => ((x * (s as f64 + 2.0)).cos() * (1.0 + s as f64)) as f32,
                }
            })
            .collect()
    }

    fn ours(spec: &OptimizerSpec) -> Vec<Vec<f32>> {
        let params: Vec<Tensor> = (0..SHAPES.len())
            .map(|p| {
                Tensor::from_slice(&values(p, None))
                    .reshape(SHAPES[p])
                    .set_requires_grad(true)
            })
            .collect();
        let mut optimizer = Optimizer::new(spec, params);
        for (s, lr) in LRS.iter().enumerate() {
            let grads: Vec<Tensor> = (0..SHAPES.len())
                .map(|p| Tensor::from_slice(&values(p, Some(s))).reshape(SHAPES[p]))
                .collect();
            optimizer.step(&grads, *lr).expect("step");
        }
        optimizer
            .params()
            .iter()
            .map(|p| Vec::<f32>::try_from(p.detach().flatten(0, -1)).expect("floats"))
            .collect()
    }

    fn pytorch(constructor: &str) -> Vec<Vec<f32>> {
        let starts: Vec<Vec<f32>> = (0..SHAPES.len()).map(|p| values(p, None)).collect();
        let grads: Vec<Vec<Vec<f32>>> = (0..LRS.len())
            .map(|s| (0..SHAPES.len()).map(|p| values(p, Some(s))).collect())
            .collect();
        let shapes: Vec<&[i64]> = SHAPES.to_vec();
        let script = format!(
            r#"
import json, torch
starts, grads, shapes, lrs = {starts}, {grads}, {shapes}, {lrs}
params = [torch.tensor(v, dtype=torch.float32).reshape(s).requires_grad_() for v, s in zip(starts, shapes)]
opt = torch.optim.{constructor}
for step, lr in enumerate(lrs):
    for group in opt.param_groups:
        group["lr"] = lr
    for p, g, s in zip(params, grads[step], shapes):
        p.grad = torch.tensor(g, dtype=torch.float32).reshape(s)
    opt.step()
print(json.dumps([p.detach().flatten().tolist() for p in params]))
"#,
            starts = json!(starts),
            grads = json!(grads),
            shapes = json!(shapes),
            lrs = json!(LRS),
        );
        let output = std::process::Command::new(python())
            .arg("-c")
            .arg(&script)
            .output()
            .expect("python starts");
        assert!(
            output.status.success(),
            "python failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).expect("a JSON list of parameters")
    }

    #[test]
    fn updates_match_torch_optim() {
        let cases = [
            (
                json!({"kind": "adam", "weight_decay": 0.1, "betas": [0.8, 0.95], "eps": 1e-6}),
                "Adam(params, lr=0.1, betas=(0.8, 0.95), eps=1e-6, weight_decay=0.1, foreach=False)",
            ),
            (
                json!({"kind": "adamw", "weight_decay": 0.1}),
                "AdamW(params, lr=0.1, weight_decay=0.1, foreach=False)",
            ),
            (
                json!({"kind": "sgd", "weight_decay": 0.01, "momentum": 0.9, "nesterov": true}),
                "SGD(params, lr=0.1, momentum=0.9, weight_decay=0.01, nesterov=True, foreach=False)",
            ),
            (
                json!({"kind": "sgd"}),
                "SGD(params, lr=0.1, foreach=False)",
            ),
        ];
        for (spec, constructor) in cases {
            let spec: OptimizerSpec = serde_json::from_value(spec).expect("an optimizer spec");
            let (a, b) = (ours(&spec), pytorch(constructor));
            assert_eq!(a.len(), b.len());
            for (mine, theirs) in a.iter().zip(&b) {
                assert_eq!(mine.len(), theirs.len());
                for (x, y) in mine.iter().zip(theirs) {
                    assert!(
                        (x - y).abs() <= 2e-6 * (1.0 + y.abs()),
                        "{constructor}: {x} vs torch.optim's {y}"
                    );
                }
            }
            // The updates moved the parameters (a no-op would match nothing above).
            assert_ne!(
                a[0],
                values(0, None),
                "{constructor} left the parameters alone"
            );
        }
    }
}
