//! The mean cross-entropy of fp32 CPU logits against class ids as one autograd
//! function (`csrc/cross_entropy.cpp`): a pass per row forward, one backward, instead
//! of libtorch's log_softmax and nll_loss kernels and their backward passes, whose
//! last-dimension softmax is slow for a handful of classes (0.12 ms a step of the
//! MLP benchmark's 512 × 10 logits, against a few microseconds).

// Calls into the C++ shim; each unsafe block states what it relies on.
#![allow(unsafe_code)]

use std::ffi::{c_char, c_void};

use tch::Tensor;

use super::outcome;
use crate::TrainError;

extern "C" {
    fn expcluster_cross_entropy(
        logits: *const c_void,
        target: *const c_void,
        out: *mut *mut c_void,
    ) -> *mut c_char;
}

/// Mean cross-entropy of `logits [n, classes]` (fp32, CPU) against `target [n]`
/// (int64 class ids in `0..classes`; any other id is an error naming it), without
/// label smoothing or class weights: `cross_entropy_loss(.., Reduction::Mean, -100,
/// 0.0)` up to float rounding, and bit-for-bit the same for the same inputs.
pub fn cross_entropy(logits: &Tensor, target: &Tensor) -> Result<Tensor, TrainError> {
    let mut out: *mut c_void = std::ptr::null_mut();
    // SAFETY: both handles are live tensors borrowed for the call; on success the
    // shim stores a new `torch::Tensor*` in `out`, which `from_ptr` owns (tch frees
    // it with `delete`, as the shim allocated it with `new`).
    let message = unsafe {
        expcluster_cross_entropy(
            logits.as_ptr() as *const c_void,
            target.as_ptr() as *const c_void,
            &mut out,
        )
    };
    outcome(message)?;
    Ok(unsafe { Tensor::from_ptr(out.cast()) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind, Reduction};

    /// Loss and logit gradient match libtorch's `cross_entropy_loss` for several
    /// shapes (one row, two classes, many classes, logits far from zero), with an
    /// incoming gradient other than 1; the same call gives the same bits.
    #[test]
    fn matches_libtorch_cross_entropy() {
        tch::manual_seed(11);
        let options = (Kind::Float, Device::Cpu);
        for (rows, classes, scale) in [(512, 10, 3.0), (1, 2, 1.0), (37, 100, 30.0)] {
            let logits =
                (Tensor::randn([rows, classes], options) * scale + 50.0).set_requires_grad(true);
            let target = Tensor::randint(classes, [rows], (Kind::Int64, Device::Cpu));
            let ours = cross_entropy(&logits, &target).expect("cross_entropy");
            let theirs =
                logits.cross_entropy_loss::<Tensor>(&target, None, Reduction::Mean, -100, 0.0);
            assert_eq!(ours.size(), Vec::<i64>::new());
            let (a, b) = (ours.double_value(&[]), theirs.double_value(&[]));
            assert!((a - b).abs() <= 1e-5 * b.abs().max(1.0), "loss {a} vs {b}");
            let grad = |loss: &Tensor| {
                Tensor::run_backward(&[loss * 2.5], &[&logits], false, false).remove(0)
            };
            let (g_ours, g_theirs) = (grad(&ours), grad(&theirs));
            assert!(
                g_ours.allclose(&g_theirs, 1e-5, 1e-7, false),
                "the logits' gradient differs"
            );
            let again = cross_entropy(&logits, &target).expect("cross_entropy");
            assert!(again.equal(&ours), "the same call gave other bits");
            assert!(
                grad(&again).equal(&g_ours),
                "the same backward gave other bits"
            );
        }
    }

    /// Bad input is an error that says what is wrong, not a crash.
    #[test]
    fn rejects_out_of_range_class_ids_and_wrong_kinds() {
        let logits = Tensor::zeros([3, 4], (Kind::Float, Device::Cpu));
        let target = Tensor::from_slice(&[0i64, 4, 1]);
        let err = cross_entropy(&logits, &target).expect_err("class id 4 of 4");
        assert!(
            err.to_string()
                .contains("class id 4 in row 1 is outside [0, 4)"),
            "{err}"
        );
        let err =
            cross_entropy(&logits, &Tensor::from_slice(&[0i32, 1, 2])).expect_err("int32 ids");
        assert!(err.to_string().contains("int64 class ids"), "{err}");
        let err = cross_entropy(&logits.to_kind(Kind::Double), &target.clamp(0, 3))
            .expect_err("fp64 logits");
        assert!(err.to_string().contains("fp32 CPU logits"), "{err}");
    }
}
