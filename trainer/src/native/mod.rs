//! libtorch functions that tch does not bind, called through a little C++
//! (`trainer/csrc/*.cpp`, compiled by build.rs against the same libtorch): the fused
//! optimizer steps ([`optim`]), a oneDNN-backed linear layer with or without its ReLU
//! ([`linear`]) and a one-pass cross-entropy ([`loss`]).
//!
//! The C++ takes the `torch::Tensor*` handles tch holds, catches every libtorch
//! exception and returns its message (or null), so nothing unwinds across the FFI.

// Calls into the C++ shim; each unsafe block states what it relies on.
#![allow(unsafe_code)]

pub mod linear;
pub mod loss;
pub mod optim;

use std::ffi::{c_char, c_void, CStr};

use tch::Tensor;

use crate::TrainError;

extern "C" {
    fn expcluster_free_error(message: *mut c_char);
}

/// The `torch::Tensor*` handles, in order.
fn handles(tensors: &[&Tensor]) -> Vec<*const c_void> {
    tensors
        .iter()
        .map(|tensor| tensor.as_ptr() as *const c_void)
        .collect()
}

/// Turns the shim's error message (null on success) into a result.
fn outcome(message: *mut c_char) -> Result<(), TrainError> {
    if message.is_null() {
        return Ok(());
    }
    // SAFETY: a non-null result is a NUL-terminated string the shim allocated with
    // strdup; it is copied, then freed once, by the shim's own free.
    let text = unsafe { CStr::from_ptr(message) }
        .to_string_lossy()
        .into_owned();
    unsafe { expcluster_free_error(message) };
    Err(TrainError::Torch(text))
}
