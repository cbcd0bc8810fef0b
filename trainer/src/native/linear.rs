//! `x W^T + b` on the CPU through oneDNN's fp32 matmul, forward and backward
//! (`csrc/onednn_linear.cpp`), instead of MKL's sgemm, which `Tensor::linear` uses;
//! and `relu(x W^T + b)` as one autograd function ([`linear_relu`]).
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
    fn expcluster_onednn_linear_relu(
        x: *const c_void,
        weight: *const c_void,
        bias: *const c_void,
        out: *mut *mut c_void,
    ) -> *mut c_char;
}

/// Which shim function a call runs.
#[derive(Clone, Copy)]
enum Op {
    Linear,
    LinearRelu,
}

/// `x [.., in]`, `weight [out, in]`, `bias [out]` (fp32, CPU) → `[.., out]`, with an
/// autograd node whose backward runs on oneDNN too.
pub fn linear(x: &Tensor, weight: &Tensor, bias: &Tensor) -> Result<Tensor, TrainError> {
    call(Op::Linear, x, weight, bias)
}

/// `relu(x W^T + b)`, as [`linear`] followed by an in-place ReLU, in one autograd
/// function: the bias and the ReLU are one pass over the matmul's output, and the
/// backward pass masks the gradient and sums the bias gradient in one pass (the
/// column sums accumulated in double, so the bias gradient may differ from
/// libtorch's `sum` in the last bit; the same inputs always give the same bits).
pub fn linear_relu(x: &Tensor, weight: &Tensor, bias: &Tensor) -> Result<Tensor, TrainError> {
    call(Op::LinearRelu, x, weight, bias)
}

fn call(op: Op, x: &Tensor, weight: &Tensor, bias: &Tensor) -> Result<Tensor, TrainError> {
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
    let shim = match op {
        Op::Linear => expcluster_onednn_linear,
        Op::LinearRelu => expcluster_onednn_linear_relu,
    };
    let message = unsafe {
        shim(
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

    /// `linear_relu` against libtorch's `linear` then `relu`: the values, and every
    /// gradient, for flat and batched inputs, with and without a gradient for the
    /// input, with outputs on both sides of zero (so the mask matters) and a
    /// loss that weighs every output differently; the same call twice gives the
    /// same bits; the output is a tensor of its own.
    #[test]
    fn linear_relu_matches_libtorch_linear_then_relu() {
        tch::manual_seed(5);
        let options = (Kind::Float, Device::Cpu);
        for (shape, input_grad) in [
            (vec![64, 33], false),
            (vec![3, 17, 33], true),
            (vec![1, 33], true),
        ] {
            let x = Tensor::randn(shape.as_slice(), options).set_requires_grad(input_grad);
            let w = Tensor::randn([40, 33], options).set_requires_grad(true);
            let b = Tensor::randn([40], options).set_requires_grad(true);
            let ours = linear_relu(&x, &w, &b).expect("onednn linear_relu");
            let theirs = x.linear(&w, Some(&b)).relu();
            assert_eq!(ours.size(), theirs.size());
            assert!(close(&ours, &theirs), "forward differs");
            let positive = theirs.gt(0.0).to_kind(Kind::Float).mean(Kind::Float);
            let positive = positive.double_value(&[]);
            assert!(
                (0.2..0.8).contains(&positive),
                "the test needs outputs on both sides of zero, {positive} are positive"
            );
            let weights = Tensor::randn(theirs.size().as_slice(), options);
            let mut inputs = vec![&w, &b];
            if input_grad {
                inputs.push(&x);
            }
            let backward = |y: &Tensor| {
                Tensor::run_backward(&[(y * &weights).sum(Kind::Float)], &inputs, false, false)
            };
            let g_ours = backward(&ours);
            let g_theirs = backward(&theirs);
            for (a, b) in g_ours.iter().zip(&g_theirs) {
                assert!(a.defined() && close(a, b), "a gradient differs");
            }
            let again = linear_relu(&x, &w, &b).expect("onednn linear_relu");
            assert!(again.equal(&ours), "the same call gave other bits");
            for (a, b) in backward(&again).iter().zip(&g_ours) {
                assert!(a.equal(b), "the same backward gave other bits");
            }
            let bias_before = b.copy();
            let _ = ours.shallow_clone().relu_();
            assert!(b.equal(&bias_before), "the output aliases the bias");
        }
    }

    /// A batch of no rows gives no rows, and zero weight and bias gradients, as
    /// libtorch's linear + relu do (not a crash).
    #[test]
    fn linear_relu_of_no_rows_is_empty_with_zero_gradients() {
        let options = (Kind::Float, Device::Cpu);
        let x = Tensor::zeros([0, 6], options);
        let w = Tensor::ones([4, 6], options).set_requires_grad(true);
        let b = Tensor::ones([4], options).set_requires_grad(true);
        let y = linear_relu(&x, &w, &b).expect("onednn linear_relu");
        assert_eq!(y.size(), vec![0, 4]);
        let grads = Tensor::run_backward(&[y.sum(Kind::Float)], &[&w, &b], false, false);
        for grad in &grads {
            assert!(grad.defined() && grad.abs().sum(Kind::Float).double_value(&[]) == 0.0);
        }
    }
}
