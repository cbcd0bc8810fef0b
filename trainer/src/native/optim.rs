//! libtorch's fused optimizer kernels (`_fused_adam_`, `_fused_adamw_`, `_fused_sgd_`,
//! what PyTorch runs with `fused=True`), which tch does not bind: the C++ in
//! `csrc/fused_optim.cpp` calls them with the tensors tch holds.
//!
//! One call updates every parameter: one pass over each parameter's memory on the CPU
//! instead of one kernel per arithmetic operation, and a handful of launches in all
//! on CUDA instead of several per parameter. The update rules are PyTorch's.

// Calls into the C++ shim; each unsafe block states what it relies on.
#![allow(unsafe_code)]

use std::ffi::{c_char, c_int, c_void};

use tch::Tensor;

use super::{handles, outcome};
use crate::TrainError;

extern "C" {
    fn expcluster_fused_adam(
        params: *const *const c_void,
        grads: *const *const c_void,
        exp_avgs: *const *const c_void,
        exp_avg_sqs: *const *const c_void,
        steps: *const *const c_void,
        count: c_int,
        lr: f64,
        beta1: f64,
        beta2: f64,
        weight_decay: f64,
        eps: f64,
        decoupled: c_int,
    ) -> *mut c_char;

    fn expcluster_fused_sgd(
        params: *const *const c_void,
        grads: *const *const c_void,
        momentum_buffers: *const *const c_void,
        count: c_int,
        weight_decay: f64,
        momentum: f64,
        lr: f64,
        nesterov: c_int,
    ) -> *mut c_char;

}

/// Hyperparameters of one Adam or AdamW update.
#[derive(Debug, Clone, Copy)]
pub struct AdamStep {
    pub lr: f64,
    pub betas: [f64; 2],
    pub eps: f64,
    pub weight_decay: f64,
    /// AdamW's decoupled decay instead of Adam's L2 term in the gradient.
    pub decoupled: bool,
}

/// One Adam/AdamW update of every parameter, in place on the parameters and their
/// moment buffers. `steps` holds each parameter's step number including this update
/// (a float32 scalar on the parameters' device; the same tensor may serve them all).
/// Runs under `no_grad` (the parameters are leaves that require grad).
pub fn adam(
    params: &[&Tensor],
    grads: &[&Tensor],
    exp_avgs: &[&Tensor],
    exp_avg_sqs: &[&Tensor],
    steps: &[&Tensor],
    step: AdamStep,
) -> Result<(), TrainError> {
    let count = params.len();
    if [grads.len(), exp_avgs.len(), exp_avg_sqs.len(), steps.len()] != [count; 4] {
        return Err(TrainError::Torch(
            "fused adam: every list needs one tensor per parameter".into(),
        ));
    }
    let lists = [params, grads, exp_avgs, exp_avg_sqs, steps].map(handles);
    // SAFETY: each list holds `count` live tensor handles, borrowed for the call; the
    // shim copies them into at::Tensor values and catches every C++ exception.
    let message = tch::no_grad(|| unsafe {
        expcluster_fused_adam(
            lists[0].as_ptr(),
            lists[1].as_ptr(),
            lists[2].as_ptr(),
            lists[3].as_ptr(),
            lists[4].as_ptr(),
            count as c_int,
            step.lr,
            step.betas[0],
            step.betas[1],
            step.weight_decay,
            step.eps,
            c_int::from(step.decoupled),
        )
    });
    outcome(message)
}

/// One SGD update (weight decay, momentum, Nesterov; no dampening) of every parameter,
/// in place. `momentum_buffers` is empty when momentum is 0, else one per parameter;
/// buffers that start at zero make the first update PyTorch's (buffer = gradient).
pub fn sgd(
    params: &[&Tensor],
    grads: &[&Tensor],
    momentum_buffers: &[&Tensor],
    lr: f64,
    weight_decay: f64,
    momentum: f64,
    nesterov: bool,
) -> Result<(), TrainError> {
    let count = params.len();
    let buffers_ok = momentum_buffers.len() == if momentum > 0.0 { count } else { 0 };
    if grads.len() != count || !buffers_ok {
        return Err(TrainError::Torch(
            "fused sgd: one gradient per parameter, and one momentum buffer each when momentum > 0"
                .into(),
        ));
    }
    let (params, grads, buffers) = (handles(params), handles(grads), handles(momentum_buffers));
    let buffers_ptr = if buffers.is_empty() {
        std::ptr::null()
    } else {
        buffers.as_ptr()
    };
    // SAFETY: as in `adam`; a null buffer list means no momentum.
    let message = tch::no_grad(|| unsafe {
        expcluster_fused_sgd(
            params.as_ptr(),
            grads.as_ptr(),
            buffers_ptr,
            count as c_int,
            weight_decay,
            momentum,
            lr,
            c_int::from(nesterov),
        )
    });
    outcome(message)
}
