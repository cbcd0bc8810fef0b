//! What the training loop needs from a data-parallel gang: its shard of each global
//! batch, summed gradients, the shared starting point and periodic agreement on the
//! running loss and on cancellation.
//!
//! Invariant: every rank calls the collectives here at the same points of the loop
//! (they depend only on the step counters, which are identical on all ranks), so the
//! ranks stay in lockstep and never wait on a collective the others will not reach.

use std::sync::atomic::{AtomicBool, Ordering};

use tch::{nn::VarStore, Device, Kind, Tensor};

use super::bootstrap::connect_ring;
use super::nccl::Nccl;
use super::tcp_ring::{RingError, TcpRing};
use super::{bucket, Collective, DistributedRole};
use crate::checkpoint::TrainState;
use crate::optim::Optimizer;
use crate::TrainError;

/// On CUDA, agreeing on the loss and the cancel flag reads a value back to the host,
/// which stalls the GPU's queue; doing it every few steps keeps that cost small.
const CUDA_SYNC_EVERY: u64 = 16;

impl From<RingError> for TrainError {
    fn from(err: RingError) -> TrainError {
        match err {
            RingError::Cancelled => TrainError::Cancelled,
            RingError::Peer(message) => TrainError::Distributed(message),
        }
    }
}

impl Collective for TcpRing {
    fn all_reduce_sum(&mut self, flat: &Tensor, cancel: &AtomicBool) -> Result<(), TrainError> {
        let copy_back = |values: Tensor| tch::no_grad(|| flat.shallow_clone().f_copy_(&values));
        match flat.kind() {
            Kind::Float => {
                let mut values = Vec::<f32>::try_from(flat)?;
                TcpRing::all_reduce_sum(self, &mut values, cancel)?;
                copy_back(Tensor::from_slice(&values))?;
            }
            Kind::Double => {
                let mut values = Vec::<f64>::try_from(flat)?;
                TcpRing::all_reduce_sum(self, &mut values, cancel)?;
                copy_back(Tensor::from_slice(&values))?;
            }
            other => {
                return Err(TrainError::Distributed(format!(
                    "tcp all-reduce of {other:?} is not supported"
                )))
            }
        }
        Ok(())
    }
}

pub struct Gang<'a> {
    rank: usize,
    world: usize,
    device: Device,
    comm: Box<dyn Collective>,
    cancel: &'a AtomicBool,
}

impl<'a> Gang<'a> {
    /// Joins the gang: TCP ring on the CPU, NCCL on a CUDA device.
    pub fn connect(
        role: &DistributedRole<'_>,
        device: Device,
        cancel: &'a AtomicBool,
    ) -> Result<Gang<'a>, TrainError> {
        let (rank, world) = (role.rank, role.world_size);
        if world == 0 || rank >= world {
            return Err(TrainError::InvalidSpec(format!(
                "rank {rank} is not in a world of size {world}"
            )));
        }
        let comm: Box<dyn Collective> = match device {
            Device::Cuda(index) => {
                Box::new(Nccl::connect(rank, world, index, role.rendezvous, cancel)?)
            }
            _ if world == 1 => Box::new(TcpRing::solo()),
            _ => Box::new(connect_ring(
                rank,
                world,
                role.advertise_host,
                role.rendezvous,
                cancel,
            )?),
        };
        tracing::info!(rank, world, ?device, "joined the data-parallel gang");
        Ok(Gang {
            rank,
            world,
            device,
            comm,
            cancel,
        })
    }

    pub fn rank(&self) -> usize {
        self.rank
    }

    pub fn is_leader(&self) -> bool {
        self.rank == 0
    }

    /// Err once the communicator was aborted by its watchdog: what the device
    /// computed since is not to be saved.
    pub fn healthy(&self) -> Result<(), TrainError> {
        self.comm.healthy()
    }

    /// This rank's rows `(start, len)` of a global batch of `rows`: contiguous,
    /// sizes differing by at most one (possibly zero for a tiny last batch).
    pub fn shard(&self, rows: i64) -> (i64, i64) {
        let (rank, world) = (self.rank as i64, self.world as i64);
        let start = rank * rows / world;
        (start, (rank + 1) * rows / world - start)
    }

    /// Whether the loss and cancel agreement is due after `global_step`.
    pub fn sync_due(&self, global_step: u64) -> bool {
        !matches!(self.device, Device::Cuda(_)) || global_step % CUDA_SYNC_EVERY == 0
    }

    /// Sums this step's gradients across ranks, in place (each rank scaled its loss by
    /// its share of the global batch, so the sum is the global batch's gradient).
    pub fn sum_gradients(&mut self, grads: &[Tensor]) -> Result<(), TrainError> {
        let grads: Vec<Tensor> = grads
            .iter()
            .filter(|grad| grad.defined())
            .map(Tensor::shallow_clone)
            .collect();
        bucket::all_reduce_sum(self.comm.as_mut(), &grads, self.cancel)
    }

    /// The global loss sum and whether any rank was asked to cancel.
    pub fn agree(&mut self, local_loss_sum: f64) -> Result<(f64, bool), TrainError> {
        let cancel = f64::from(u8::from(self.cancel.load(Ordering::SeqCst)));
        let values = self.sum(&[local_loss_sum, cancel])?;
        Ok((values[0], values[1] > 0.0))
    }

    /// Rank 0's `value` on every rank.
    pub fn broadcast_flag(&mut self, value: bool) -> Result<bool, TrainError> {
        let mine = if self.is_leader() {
            f64::from(u8::from(value))
        } else {
            0.0
        };
        Ok(self.sum(&[mine])?[0] > 0.0)
    }

    /// Copies rank 0's weights, optimizer buffers and loop state (resumed or fresh)
    /// to every rank, so all start from the same point.
    pub fn share_start(
        &mut self,
        vs: &VarStore,
        optimizer: &mut Optimizer,
        state: &mut TrainState,
    ) -> Result<(), TrainError> {
        let mut variables: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
        variables.sort_by(|a, b| a.0.cmp(&b.0));
        let mut tensors: Vec<Tensor> = variables.into_iter().map(|(_, t)| t).collect();
        tensors.extend(optimizer.named_state().into_iter().map(|(_, t)| t));
        if !self.is_leader() {
            tch::no_grad(|| {
                for tensor in &tensors {
                    let _ = tensor.shallow_clone().zero_();
                }
            });
        }
        bucket::all_reduce_sum(self.comm.as_mut(), &tensors, self.cancel)?;

        let json =
            serde_json::to_vec(state).map_err(|err| TrainError::Checkpoint(err.to_string()))?;
        let shared = self.broadcast_bytes(&json)?;
        let received: TrainState = serde_json::from_slice(&shared)
            .map_err(|err| TrainError::Distributed(format!("rank 0's loop state: {err}")))?;
        if received.fingerprint != state.fingerprint {
            return Err(TrainError::InvalidSpec(format!(
                "rank 0 runs another trainer spec or seed ({} vs {}); every rank of a gang must run the same job",
                received.fingerprint, state.fingerprint
            )));
        }
        *state = received;
        optimizer.steps = state.optimizer_steps;
        Ok(())
    }

    /// Rank 0's bytes on every rank (one byte per f64: only for small payloads).
    fn broadcast_bytes(&mut self, bytes: &[u8]) -> Result<Vec<u8>, TrainError> {
        let leader = self.is_leader();
        let len = self.sum(&[if leader { bytes.len() as f64 } else { 0.0 }])?[0] as usize;
        let values: Vec<f64> = if leader {
            bytes.iter().map(|&b| f64::from(b)).collect()
        } else {
            vec![0.0; len]
        };
        Ok(self.sum(&values)?.into_iter().map(|v| v as u8).collect())
    }

    fn sum(&mut self, values: &[f64]) -> Result<Vec<f64>, TrainError> {
        let tensor = Tensor::from_slice(values).to_device(self.device);
        self.comm.all_reduce_sum(&tensor, self.cancel)?;
        let values = Vec::<f64>::try_from(tensor.to_device(Device::Cpu))?;
        // The read may have returned because the watchdog aborted the collective.
        self.comm.healthy()?;
        Ok(values)
    }
}
