//! NCCL for CUDA ranks, through cudarc's dynamically loaded bindings.
//!
//! Rank 0 creates the NCCL unique id and publishes its 128 bytes (tagged `nccl:`);
//! the others fetch them; every rank binds the CUDA primary context of its device
//! (the one libtorch uses) and joins the communicator. Collectives run in place on
//! the tensor's `data_ptr()` on the null stream, which is libtorch's default stream,
//! so they are ordered after the backward pass that wrote the gradients and before
//! the optimizer step that reads them, with no host synchronisation.
//!
//! cudarc opens `libnccl.so`; it must resolve to the same `libnccl.so.2` that
//! libtorch_cuda loaded (a symlink on the loader path), or `ncclCommInitRank` fails.
//! Unlike the TCP ring, a dead peer is not detected here: NCCL collectives block
//! until NCCL's own timeouts fire.

// Calls C directly: NCCL has no safe wrapper that accepts libtorch's device
// pointers (the C++ shim in `crate::native` is the other such place). Each unsafe block states what it relies on.
#![allow(unsafe_code)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use cudarc::nccl::{result, sys};
use tch::{Device, Kind, Tensor};

use super::{Collective, Rendezvous};
use crate::TrainError;

/// Blob prefix that marks an NCCL unique id.
pub const NCCL_TAG: &[u8] = b"nccl:";
const ID_BYTES: usize = 128;

/// The rendezvous blob for a unique id.
pub fn encode_unique_id(id: &sys::ncclUniqueId) -> Vec<u8> {
    let mut blob = NCCL_TAG.to_vec();
    blob.extend(id.internal.iter().map(|&byte| byte as u8));
    blob
}

/// Parses a blob made by [`encode_unique_id`].
pub fn decode_unique_id(blob: &[u8]) -> Result<sys::ncclUniqueId, String> {
    let bytes = blob.strip_prefix(NCCL_TAG).ok_or(
        "the rendezvous blob is not an NCCL id (is rank 0 on the CPU while this rank is on a GPU?)",
    )?;
    if bytes.len() != ID_BYTES {
        return Err(format!(
            "an NCCL unique id has {ID_BYTES} bytes, the rendezvous carried {}",
            bytes.len()
        ));
    }
    let mut id = sys::ncclUniqueId {
        internal: [0; ID_BYTES],
    };
    for (slot, &byte) in id.internal.iter_mut().zip(bytes) {
        *slot = byte as std::ffi::c_char;
    }
    Ok(id)
}

fn nccl_error(what: &str, err: result::NcclError) -> TrainError {
    // SAFETY: ncclGetErrorString returns a static NUL-terminated string.
    let text = unsafe {
        let ptr = sys::ncclGetErrorString(err.0);
        if ptr.is_null() {
            format!("{:?}", err.0)
        } else {
            std::ffi::CStr::from_ptr(ptr).to_string_lossy().into_owned()
        }
    };
    TrainError::Distributed(format!("nccl {what}: {text}"))
}

/// One rank's NCCL communicator on one CUDA device.
pub struct Nccl {
    comm: sys::ncclComm_t,
    device: usize,
    /// Keeps the primary context retained while the communicator lives.
    _context: Arc<cudarc::driver::CudaContext>,
}

impl Nccl {
    pub fn connect(
        rank: usize,
        world: usize,
        device: usize,
        rendezvous: &dyn Rendezvous,
        cancel: &AtomicBool,
    ) -> Result<Nccl, TrainError> {
        // SAFETY: only probes whether the library can be opened.
        if !unsafe { sys::is_culib_present() } {
            return Err(TrainError::Device(
                "libnccl.so not found on the loader path: link it to the libnccl.so.2 that libtorch loads (site-packages/nvidia/nccl/lib)".into(),
            ));
        }
        // SAFETY: only probes whether the library can be opened.
        if !unsafe { cudarc::driver::sys::is_culib_present() } {
            return Err(TrainError::Device(
                "libcuda.so (the NVIDIA driver) not found: NCCL needs a CUDA machine".into(),
            ));
        }
        let context = cudarc::driver::CudaContext::new(device).map_err(|err| {
            TrainError::Device(format!("binding cuda:{device} for NCCL: {err:?}"))
        })?;
        let id = if rank == 0 {
            let id = result::get_uniqueid().map_err(|err| nccl_error("unique id", err))?;
            rendezvous
                .publish(&encode_unique_id(&id))
                .map_err(|err| TrainError::Distributed(format!("publishing the NCCL id: {err}")))?;
            id
        } else {
            let blob = rendezvous.fetch(cancel).map_err(|err| {
                if cancel.load(Ordering::SeqCst) {
                    TrainError::Cancelled
                } else {
                    TrainError::Distributed(format!("fetching the NCCL id: {err}"))
                }
            })?;
            decode_unique_id(&blob).map_err(TrainError::Distributed)?
        };
        let mut comm: sys::ncclComm_t = std::ptr::null_mut();
        // SAFETY: `comm` is a valid out-pointer; the id came from ncclGetUniqueId.
        unsafe { result::comm_init_rank(&mut comm, world as i32, id, rank as i32) }
            .map_err(|err| nccl_error("communicator init", err))?;
        Ok(Nccl {
            comm,
            device,
            _context: context,
        })
    }
}

impl Collective for Nccl {
    fn all_reduce_sum(&mut self, flat: &Tensor, _cancel: &AtomicBool) -> Result<(), TrainError> {
        let datatype = match flat.kind() {
            Kind::Float => sys::ncclDataType_t::ncclFloat32,
            Kind::Double => sys::ncclDataType_t::ncclFloat64,
            other => {
                return Err(TrainError::Distributed(format!(
                    "nccl all-reduce of {other:?} is not supported"
                )))
            }
        };
        if flat.device() != Device::Cuda(self.device) || !flat.is_contiguous() {
            return Err(TrainError::Distributed(format!(
                "nccl needs a contiguous tensor on cuda:{}, got one on {:?}",
                self.device,
                flat.device()
            )));
        }
        let ptr = flat.data_ptr();
        // SAFETY: `ptr` addresses `numel` contiguous elements of `datatype` on this
        // communicator's device, alive until the call returns (NCCL enqueues on the
        // null stream, ordered with libtorch's later use of the same memory).
        unsafe {
            result::all_reduce(
                ptr,
                ptr,
                flat.numel(),
                datatype,
                sys::ncclRedOp_t::ncclSum,
                self.comm,
                std::ptr::null_mut(),
            )
        }
        .map_err(|err| nccl_error("all-reduce", err))?;
        Ok(())
    }
}

impl Drop for Nccl {
    fn drop(&mut self) {
        // SAFETY: the communicator was initialised and is destroyed once.
        let _ = unsafe { result::comm_destroy(self.comm) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_ids_round_trip_through_the_rendezvous_blob() {
        let mut id = sys::ncclUniqueId {
            internal: [0; ID_BYTES],
        };
        for (i, slot) in id.internal.iter_mut().enumerate() {
            *slot = (i as u8).wrapping_mul(37) as std::ffi::c_char;
        }
        let blob = encode_unique_id(&id);
        assert_eq!(blob.len(), NCCL_TAG.len() + ID_BYTES);
        assert_eq!(decode_unique_id(&blob), Ok(id));
        assert!(decode_unique_id(&blob[..blob.len() - 1]).is_err());
        let wrong = decode_unique_id(b"tcp:127.0.0.1:5000").expect_err("a TCP blob");
        assert!(wrong.contains("not an NCCL id"), "{wrong}");
    }

    /// No GPU needed: scripts/setup.sh links libtorch's NCCL where every binary's
    /// rpath finds it, so a CUDA gang can open it on a GPU node with no set-up.
    #[test]
    fn the_nccl_that_libtorch_ships_is_found_through_the_rpath() {
        // SAFETY: only probes whether the library can be opened.
        assert!(
            unsafe { sys::is_culib_present() },
            "libnccl.so is not on the loader path: run scripts/setup.sh"
        );
        let version = result::get_nccl_version().expect("ncclGetVersion");
        assert!(version >= 2_00_00, "NCCL version code {version}");
    }
}
