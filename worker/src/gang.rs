//! One rank of a data-parallel gang on this worker: its place in the gang, the
//! rendezvous through the coordinator, and the environment `torch.distributed`
//! scripts expect (what torchrun would set).
//!
//! Rank 0 publishes a communicator id through the coordinator's `Rendezvous` call;
//! the other ranks wait for it. For command jobs the id is `host:port` of a free port
//! on rank 0's worker, which becomes MASTER_ADDR/MASTER_PORT (the port is probed by
//! binding port 0 and released for the script's own store, as torchrun does; a race
//! for it fails the attempt, which is retried). For the built-in trainer the id is
//! whatever its backend needs (a TCP address, an NCCL unique id).

use crate::client::{is_retryable, WorkerClient};
use expcluster_proto::v1;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How long a rank waits for rank 0 before the attempt fails (rank 0 may be
/// queued behind a slow job start, or its worker may have died).
const RENDEZVOUS_TIMEOUT: Duration = Duration::from_secs(300);
/// One long-poll call's wait on the coordinator.
const POLL_WAIT_MS: u32 = 2_000;

/// This attempt's place in its gang.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GangRole {
    pub rank: u32,
    pub world_size: u32,
    pub local_rank: u32,
    pub local_world_size: u32,
}

impl GangRole {
    /// The role of a leased job, or `None` for an ordinary (one-rank) job.
    pub fn of(spec: &v1::JobSpec) -> Option<Self> {
        (spec.world_size > 1).then_some(Self {
            rank: spec.rank,
            world_size: spec.world_size,
            local_rank: spec.local_rank,
            local_world_size: spec.local_world_size.max(1),
        })
    }

    /// Rank 0 reports the metrics, results and logs; the others only their end.
    pub fn is_primary(&self) -> bool {
        self.rank == 0
    }
}

/// The coordinator's rendezvous for one rank of one attempt.
#[derive(Clone)]
pub struct CoordinatorRendezvous {
    pub client: WorkerClient,
    pub worker_id: String,
    pub job_id: String,
    pub attempt: u32,
    pub rank: u32,
}

impl CoordinatorRendezvous {
    /// Rank 0: makes `id` available to the other ranks.
    pub async fn publish(&self, id: &[u8]) -> Result<(), String> {
        self.call(id.to_vec(), 0).await.map(|_| ())
    }

    /// Other ranks: waits for rank 0's id, until `cancel` is set or the timeout.
    pub async fn fetch(&self, cancel: &AtomicBool) -> Result<Vec<u8>, String> {
        let give_up = Instant::now() + RENDEZVOUS_TIMEOUT;
        loop {
            if cancel.load(Ordering::Relaxed) {
                return Err("stopped while waiting for rank 0".into());
            }
            if Instant::now() >= give_up {
                return Err(format!(
                    "rank 0 did not publish its communicator id within {}s",
                    RENDEZVOUS_TIMEOUT.as_secs()
                ));
            }
            if let Some(id) = self.call(Vec::new(), POLL_WAIT_MS).await? {
                return Ok(id);
            }
        }
    }

    /// One call; `None` when rank 0 has not published yet. Retries while the
    /// coordinator is unreachable.
    async fn call(&self, publish: Vec<u8>, wait_ms: u32) -> Result<Option<Vec<u8>>, String> {
        let request = v1::RendezvousRequest {
            worker_id: self.worker_id.clone(),
            job_id: self.job_id.clone(),
            attempt: self.attempt,
            rank: self.rank,
            publish,
            wait_ms,
        };
        let mut backoff = Duration::from_millis(100);
        let give_up = Instant::now() + RENDEZVOUS_TIMEOUT;
        loop {
            match self.client.clone().rendezvous(request.clone()).await {
                Ok(response) => {
                    let response = response.into_inner();
                    return Ok(response.ready.then_some(response.id));
                }
                Err(status) if is_retryable(&status) && Instant::now() < give_up => {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
                Err(status) => return Err(format!("rendezvous: {}", status.message())),
            }
        }
    }
}

/// The trainer's blocking view of the rendezvous (it runs on a blocking thread).
pub struct BlockingRendezvous {
    pub inner: CoordinatorRendezvous,
    pub runtime: tokio::runtime::Handle,
}

impl expcluster_trainer::Rendezvous for BlockingRendezvous {
    fn publish(&self, id: &[u8]) -> Result<(), String> {
        self.runtime.block_on(self.inner.publish(id))
    }

    fn fetch(&self, cancel: &AtomicBool) -> Result<Vec<u8>, String> {
        self.runtime.block_on(self.inner.fetch(cancel))
    }
}

/// The torchrun environment of a command job's rank: rank 0 picks MASTER_PORT on
/// `advertise_host` and publishes it; the others wait for it.
pub async fn torchrun_environment(
    role: GangRole,
    rendezvous: &CoordinatorRendezvous,
    advertise_host: &str,
    cancel: &AtomicBool,
) -> Result<Vec<(String, String)>, String> {
    let master = if role.is_primary() {
        let port = free_port(advertise_host)?;
        let master = format!("{advertise_host}:{port}");
        rendezvous.publish(master.as_bytes()).await?;
        master
    } else {
        let id = rendezvous.fetch(cancel).await?;
        String::from_utf8(id).map_err(|_| "rank 0 published a non-text address".to_owned())?
    };
    let (host, port) = master
        .rsplit_once(':')
        .ok_or_else(|| format!("rank 0 published {master:?}, not host:port"))?;
    Ok(vec![
        ("MASTER_ADDR".into(), host.to_owned()),
        ("MASTER_PORT".into(), port.to_owned()),
        ("RANK".into(), role.rank.to_string()),
        ("WORLD_SIZE".into(), role.world_size.to_string()),
        ("LOCAL_RANK".into(), role.local_rank.to_string()),
        ("LOCAL_WORLD_SIZE".into(), role.local_world_size.to_string()),
        ("GROUP_RANK".into(), "0".into()),
        ("TORCHELASTIC_RUN_ID".into(), rendezvous.job_id.clone()),
    ])
}

/// A port that is free right now on `host` (bound, then released).
fn free_port(host: &str) -> Result<u16, String> {
    let listener = std::net::TcpListener::bind((host, 0))
        .map_err(|err| format!("cannot bind a port on {host} for MASTER_PORT: {err}"))?;
    listener
        .local_addr()
        .map(|addr| addr.port())
        .map_err(|err| err.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(rank: u32, world_size: u32) -> v1::JobSpec {
        v1::JobSpec {
            rank,
            world_size,
            local_rank: rank,
            local_world_size: world_size,
            ..Default::default()
        }
    }

    #[test]
    fn only_jobs_of_several_ranks_have_a_gang_role() {
        assert_eq!(GangRole::of(&spec(0, 0)), None);
        assert_eq!(GangRole::of(&spec(0, 1)), None);
        let role = GangRole::of(&spec(1, 2)).expect("a gang");
        assert!(!role.is_primary());
        assert_eq!(role.world_size, 2);
    }

    #[test]
    fn a_free_port_is_found_on_loopback() {
        let port = free_port("127.0.0.1").expect("a port");
        assert!(port > 0);
    }
}
