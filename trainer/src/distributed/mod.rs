//! Data-parallel training: one process per rank, each training on its shard of every
//! global batch, gradients summed every step (bucketed, one collective per bucket) so
//! all ranks take identical optimizer steps; rank 0 alone checkpoints, emits metrics
//! and writes results.
//!
//! The gang is bootstrapped from a single opaque blob that rank 0 publishes through a
//! [`Rendezvous`] (the coordinator in production, memory or a file elsewhere): a TCP
//! address for CPU ranks ([`tcp_ring`]), an NCCL unique id for CUDA ranks ([`nccl`]).

mod bootstrap;
mod bucket;
pub(crate) mod gang;
pub mod nccl;
mod rendezvous;
pub mod tcp_ring;
pub mod watchdog;

use std::sync::atomic::AtomicBool;

pub use bootstrap::{connect_ring, BOOTSTRAP_TIMEOUT};
pub use rendezvous::{FileRendezvous, MemoryRendezvous};

/// This process's place in a data-parallel gang.
pub struct DistributedRole<'a> {
    pub rank: usize,
    pub world_size: usize,
    /// Host name or IP at which the other ranks can reach this process (rank 0 binds
    /// its TCP listener here).
    pub advertise_host: &'a str,
    pub rendezvous: &'a dyn Rendezvous,
}

/// Carries one opaque blob from rank 0 to every other rank (through the coordinator
/// in production).
pub trait Rendezvous: Send + Sync {
    /// Rank 0: hand `id` (a TCP address, or an NCCL unique id) to every other rank.
    fn publish(&self, id: &[u8]) -> Result<(), String>;
    /// Other ranks: block until rank 0 has published; give up with Err when `cancel`
    /// is set.
    fn fetch(&self, cancel: &AtomicBool) -> Result<Vec<u8>, String>;
}

/// A communicator that sums a flat, contiguous Float or Double tensor across ranks in
/// place (every rank ends with bit-identical values).
pub trait Collective {
    fn all_reduce_sum(
        &mut self,
        flat: &tch::Tensor,
        cancel: &AtomicBool,
    ) -> Result<(), crate::TrainError>;

    /// Err once the communicator was aborted (see [`watchdog`]): values read back
    /// from the device since then are worthless and must not be used or saved.
    fn healthy(&self) -> Result<(), crate::TrainError> {
        Ok(())
    }
}
