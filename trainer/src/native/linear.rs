//! `x W^T + b` on the CPU through oneDNN's fp32 matmul, forward and backward
//! (`csrc/onednn_linear.cpp`), instead of MKL's sgemm, which `Tensor::linear` uses.
//! On this project's AMD machines MKL runs its AVX2 kernels and oneDNN its AVX-512
//! ones: the MLP benchmark's big matmuls cost about 8% less CPU time. Same fp32
//! arithmetic; results differ from MKL's in the last bits only, and are
//! deterministic for a given thread count.

// Calls into the C++ shim; each unsafe block states what it relies on.
#![allow(unsafe_code)]

use std::ffi::{c_char, c_void};

use tch::Tensor;

use super::outcome;
use crate::TrainError;

extern "C" {
    fn expcluster_onednn_linear(
        x: *const c_void,
        weight: *const c_void,
        bias: *const c_void,
        out: *mut *mut c_void,
    ) -> *mut c_char;
}

/// `x [.., in]`, `weight [out, in]`, `bias [out]` (fp32, CPU) → `[.., out]`, with an
/// autograd node whose backward runs on oneDNN too.
pub fn linear(x: &Tensor, weight: &Tensor, bias: &Tensor) -> Result<Tensor, TrainError> {
    let shape = x.size();
    let (inputs, outputs) = (weight.size()[1], weight.size()[0]);
    let flat = match shape.len() {
        2 => x.shallow_clone(),
        _ => x.f_reshape([-1, inputs])?,
    };
    let mut out: *mut c_void = std::ptr::null_mut();
    // SAFETY: the three handles are live tensors borrowed for the call; on success
    // the shim stores a new `torch::Tensor*` in `out`, which `from_ptr` owns (tch
    // frees it with `delete`, as the shim allocated it with `new`).
    let message = unsafe {
        expcluster_onednn_linear(
            flat.as_ptr() as *const c_void,
            weight.as_ptr() as *const c_void,
            bias.as_ptr() as *const c_void,
            &mut out,
        )
    };
    outcome(message)?;
    let y = unsafe { Tensor::from_ptr(out.cast()) };
    match shape.len() {
        2 => Ok(y),
        _ => {
            let mut leading = shape[..shape.len() - 1].to_vec();
            leading.push(outputs);
            Ok(y.f_reshape(leading)?)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    fn close(a: &Tensor, b: &Tensor) -> bool {
        a.allclose(b, 1e-5, 1e-5, false)
    }

    /// Values and every gradient match libtorch's own `linear` (MKL), for flat and
    /// batched inputs, one row, with and without a gradient for the input; the
    /// output is a tensor of its own (in-place ops on it leave the bias alone).
    #[test]
    fn matches_libtorch_linear_forward_and_backward() {
        tch::manual_seed(3);
        let options = (Kind::Float, Device::Cpu);
        for (shape, input_grad) in [
            (vec![7, 5], false),
            (vec![2, 3, 5], true),
            (vec![1, 5], false),
        ] {
            let x = Tensor::randn(shape.as_slice(), options).set_requires_grad(input_grad);
            let w = Tensor::randn([4, 5], options).set_requires_grad(true);
            let b = Tensor::randn([4], options).set_requires_grad(true);
            let ours = linear(&x, &w, &b).expect("onednn linear");
            let theirs = x.linear(&w, Some(&b));
            assert_eq!(ours.size(), theirs.size());
            assert!(close(&ours, &theirs), "forward differs");
            // A loss that weighs every output differently.
            let weights = Tensor::randn(theirs.size().as_slice(), options);
            let mut inputs = vec![&w, &b];
            if input_grad {
                inputs.push(&x);
            }
            let g_ours = Tensor::run_backward(
                &[(&ours * &weights).sum(Kind::Float)],
                &inputs,
                false,
                false,
            );
            let g_theirs = Tensor::run_backward(
                &[(&theirs * &weights).sum(Kind::Float)],
                &inputs,
                false,
                false,
            );
            for (a, b) in g_ours.iter().zip(&g_theirs) {
                assert!(a.defined() && close(a, b), "a gradient differs");
            }
            let bias_before = b.copy();
            let _ = ours.shallow_clone().relu_();
            assert!(b.equal(&bias_before), "the output aliases the bias");
        }
    }
}
