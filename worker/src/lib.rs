//! The expcluster worker: one per node, one slot per GPU (or CPU slots).
//!
//! It registers with the coordinator, heartbeats on its own task whatever the load,
//! leases jobs for its free slots, runs each one (a command in a child process, or
//! the built-in tch trainer), streams metric points as they are produced, uploads the
//! result files and logs, and reports how the attempt ended. The coordinator fences
//! every report by (worker, job, attempt); the worker stops any attempt the
//! coordinator tells it is no longer current. A worker restarted on the same work dir
//! carries on the command jobs its previous incarnation left running (`adopt.rs`).

pub mod adopt;
pub mod agent;
pub mod attempt_record;
pub mod client;
pub mod command;
pub mod gang;
pub mod job_dir;
pub mod job_wrapper;
pub mod log_stream;
pub mod reporter;
pub mod runner;
pub mod session;
pub mod slurm_env;
pub mod spool;
pub mod stdout_tail;
pub mod trainer_job;
pub mod work_dir;

pub use agent::{run_worker, WorkerConfig};
