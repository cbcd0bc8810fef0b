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
//! A dead or silent peer would leave a collective pending on the GPU forever: the
//! [`super::watchdog`] follows every collective with a CUDA event and aborts the
//! communicator when one stalls, when NCCL reports an error of its own, or soon after
//! a stop while one stalls; from then on the rank fails as having lost a peer.

// Calls C directly: NCCL has no safe wrapper that accepts libtorch's device
// pointers (the C++ shim in `crate::native` is the other such place). Each unsafe block states what it relies on.
#![allow(unsafe_code)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use cudarc::driver::{result as driver, sys as cuda, DriverError};
use cudarc::nccl::{result, sys};
use tch::{Device, Kind, Tensor};

use super::watchdog::{Abort, Marker, Watchdog, Watched};
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
    TrainError::Distributed(format!("nccl {what}: {}", error_text(err.0)))
}

/// The raw communicator, for the watchdog's thread.
struct Comm(sys::ncclComm_t);

// SAFETY: NCCL communicators may be used from any thread; ncclCommGetAsyncError and
// ncclCommAbort are documented as callable from another thread than the one that
// enqueues, and the watchdog aborts only while it holds the lock that enqueuing takes.
unsafe impl Send for Comm {}

/// The communicator as the watchdog's thread owns it: destroyed when the thread
/// ends (the watchdog is dropped with the [`Nccl`]), unless it was aborted (which
/// frees it).
struct WatchedComm {
    comm: Comm,
    aborted: bool,
    /// Keeps the primary context retained while the communicator lives.
    context: Arc<cudarc::driver::CudaContext>,
}

impl Drop for WatchedComm {
    fn drop(&mut self) {
        if !self.aborted {
            // SAFETY: the communicator was initialised and is destroyed once, after
            // the last collective was enqueued (the Nccl is being dropped).
            let _ = unsafe { result::comm_destroy(self.comm.0) };
        }
    }
}

impl Watched for WatchedComm {
    type Marker = Event;

    fn async_error(&self) -> Option<String> {
        let mut state = sys::ncclResult_t::ncclSuccess;
        // SAFETY: the communicator lives as long as this value (see its Drop).
        let asked = unsafe { sys::ncclCommGetAsyncError(self.comm.0, &mut state) };
        match (asked, state) {
            (sys::ncclResult_t::ncclSuccess, sys::ncclResult_t::ncclSuccess)
            | (sys::ncclResult_t::ncclSuccess, sys::ncclResult_t::ncclInProgress) => None,
            (sys::ncclResult_t::ncclSuccess, error) => Some(error_text(error)),
            (failed, _) => Some(format!("asking for its state: {}", error_text(failed))),
        }
    }

    fn abort(&mut self) {
        // SAFETY: called once, with the enqueue lock held (no collective is being
        // enqueued); the communicator is not destroyed afterwards (see Nccl's Drop).
        let _ = unsafe { result::comm_abort(self.comm.0) };
        self.aborted = true;
    }

    fn enter_thread(&self) {
        if let Err(err) = self.context.bind_to_thread() {
            tracing::warn!(?err, "the collective watchdog cannot bind the CUDA context");
        }
    }
}

/// A CUDA event recorded behind a collective on the stream it runs on.
struct Event(cuda::CUevent);

// SAFETY: CUDA events may be queried and recorded from any thread of the process.
unsafe impl Send for Event {}

impl Marker for Event {
    fn passed(&self) -> Result<bool, String> {
        // SAFETY: the event was created by cuEventCreate and is destroyed only on drop.
        match unsafe { driver::event::query(self.0) } {
            Ok(()) => Ok(true),
            Err(DriverError(cuda::cudaError_enum::CUDA_ERROR_NOT_READY)) => Ok(false),
            Err(err) => Err(format!("{err:?}")),
        }
    }
}

impl Drop for Event {
    fn drop(&mut self) {
        // SAFETY: destroyed once; a pending event is released when it completes.
        let _ = unsafe { driver::event::destroy(self.0) };
    }
}

fn error_text(code: sys::ncclResult_t) -> String {
    // SAFETY: ncclGetErrorString returns a static NUL-terminated string.
    unsafe {
        let ptr = sys::ncclGetErrorString(code);
        if ptr.is_null() {
            format!("{code:?}")
        } else {
            std::ffi::CStr::from_ptr(ptr).to_string_lossy().into_owned()
        }
    }
}

fn lost_peer(abort: Abort) -> TrainError {
    TrainError::Distributed(format!("nccl: {abort}"))
}

/// One rank's NCCL communicator on one CUDA device, watched.
pub struct Nccl {
    comm: sys::ncclComm_t,
    device: usize,
    /// Follows every collective; aborts the communicator when the gang stalls. It owns
    /// the communicator: dropping it destroys it.
    watchdog: Watchdog<WatchedComm>,
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
        let watched = WatchedComm {
            comm: Comm(comm),
            aborted: false,
            context,
        };
        Ok(Nccl {
            comm,
            device,
            watchdog: Watchdog::start(watched),
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
        // Held until the collective and its marker are enqueued: the watchdog cannot
        // abort (and so free) the communicator in between.
        let mut enqueue = self.watchdog.enqueue().map_err(lost_peer)?;
        let marker = match enqueue.spare() {
            Some(marker) => marker,
            None => Event(
                driver::event::create(cuda::CUevent_flags::CU_EVENT_DISABLE_TIMING)
                    .map_err(|err| TrainError::Device(format!("creating a CUDA event: {err:?}")))?,
            ),
        };
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
        // SAFETY: the event is alive; the null stream is the one the collective is on.
        unsafe { driver::event::record(marker.0, std::ptr::null_mut()) }
            .map_err(|err| TrainError::Device(format!("recording a CUDA event: {err:?}")))?;
        enqueue.follow(marker);
        Ok(())
    }

    fn healthy(&self) -> Result<(), TrainError> {
        self.watchdog.healthy().map_err(lost_peer)
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
