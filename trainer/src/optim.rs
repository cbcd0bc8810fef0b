//! SGD (momentum, Nesterov), Adam and AdamW on tensors, with the same update rules as
//! PyTorch's, plus global-norm gradient clipping. Implemented here because tch's
//! optimizers cannot export their state: these save and restore every buffer, so a
//! resumed run continues bit-for-bit.

use expcluster_core::trainer_spec::OptimizerSpec;
use tch::{Device, Tensor};

use crate::TrainError;

pub struct Optimizer {
    spec: OptimizerSpec,
    params: Vec<Tensor>,
    /// Per parameter: SGD `[momentum]`; Adam/AdamW `[m, v]`.
    state: Vec<Vec<Tensor>>,
    /// Updates applied so far (Adam's bias correction uses it).
    pub steps: i64,
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
        Optimizer {
            spec: spec.clone(),
            params,
            state,
            steps: 0,
        }
    }

    pub fn zero_grad(&mut self) {
        for p in &mut self.params {
            p.zero_grad();
        }
    }

    /// Scales the gradients so their global L2 norm is at most `max_norm`. Stays on
    /// the device (no host sync).
    pub fn clip_grad_norm(&mut self, max_norm: f64) {
        let grads: Vec<Tensor> = self
            .params
            .iter()
            .map(Tensor::grad)
            .filter(Tensor::defined)
            .collect();
        if grads.is_empty() {
            return;
        }
        tch::no_grad(|| {
            let norms: Vec<Tensor> = grads.iter().map(|g| g.norm()).collect();
            let total = Tensor::stack(&norms, 0).norm();
            let scale = (max_norm / (total + 1e-6)).clamp_max(1.0);
            for mut g in grads {
                let _ = g.g_mul_(&scale);
            }
        });
    }

    /// One update with learning rate `lr`.
    pub fn step(&mut self, lr: f64) {
        self.steps += 1;
        let t = self.steps as f64;
        tch::no_grad(|| {
            for (p, state) in self.params.iter_mut().zip(&mut self.state) {
                let grad = p.grad();
                if !grad.defined() {
                    continue;
                }
                match &self.spec {
                    OptimizerSpec::Sgd {
                        weight_decay,
                        momentum,
                        nesterov,
                        ..
                    } => {
                        let mut g = if *weight_decay > 0.0 {
                            &grad + &*p * *weight_decay
                        } else {
                            grad
                        };
                        if let Some(buf) = state.first_mut() {
                            // buf starts at zero, so the first step sets buf = g (PyTorch).
                            let _ = buf.g_mul_scalar_(*momentum).g_add_(&g);
                            g = if *nesterov {
                                g + &*buf * *momentum
                            } else {
                                buf.shallow_clone()
                            };
                        }
                        let _ = p.g_add_(&(g * -lr));
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
                        let decoupled = matches!(self.spec, OptimizerSpec::Adamw { .. });
                        let g = if !decoupled && *weight_decay > 0.0 {
                            &grad + &*p * *weight_decay
                        } else {
                            grad
                        };
                        if decoupled && *weight_decay > 0.0 {
                            let _ = p.g_mul_scalar_(1.0 - lr * weight_decay);
                        }
                        let [b1, b2] = *betas;
                        let _ = state[0].lerp_(&g, 1.0 - b1);
                        let _ = state[1].lerp_(&g.square(), 1.0 - b2);
                        let correction1 = 1.0 - b1.powf(t);
                        let correction2 = 1.0 - b2.powf(t);
                        let denom = (state[1].sqrt() / correction2.sqrt()) + *eps;
                        let _ = p.addcdiv_(&(&state[0] * (-lr / correction1)), &denom);
                    }
                }
            }
        });
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
