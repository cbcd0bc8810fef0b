//! Uploaded `.npy` files come from workers, which the coordinator does not trust: the
//! validator must refuse bad input without panicking, and what it accepts must be
//! internally consistent (body length = product of the shape x item size).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(info) = expcluster_core::npy::validate_npy(data) {
        let count: usize = info.shape.iter().product();
        assert!(
            count <= data.len(),
            "accepted a body shorter than its shape: {info:?}"
        );
    }
});
