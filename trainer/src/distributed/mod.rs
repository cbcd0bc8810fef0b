//! Data-parallel training: one process per rank, each training on its shard of every
//! global batch, gradients averaged every step so all ranks take identical optimizer
//! steps.
//!
//! The gang is bootstrapped from a single opaque blob that rank 0 publishes through a
//! [`Rendezvous`] (the coordinator in production, a file in tests): a TCP address for
//! CPU ranks, an NCCL unique id for CUDA ranks.

use std::sync::atomic::AtomicBool;

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
