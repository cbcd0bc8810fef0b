//! The expcluster coordinator: the only writer of an experiment's workspace.
//!
//! It expands stages into jobs, leases them to workers over gRPC, stores every metric
//! point and result file exactly once, and writes the research log, the result arrays
//! and the stage summaries.
//!
//! The code lives in rooms, each importing only from the rooms listed below it
//! (docs/architecture.md draws them; `tests/rooms.rs` checks it):
//!
//! - [`service`]: the gRPC handlers, authentication and TLS; each handler decodes,
//!   calls one operation, and encodes the answer.
//! - [`ops`]: the operations, methods of [`ops::CoordinatorState`] (behind one std
//!   mutex in [`Coordinator`], never held across an `.await`): each applies a
//!   transition of [`state`] and records it in [`store`] before it is acknowledged.
//! - [`stage`]: what a stage is made of and yields: aggregation, result arrays,
//!   summaries, claims, the idea's feedback and versions.
//! - [`store`]: everything durable: group commit, the research log and the journal,
//!   the results file, metric spools, logs, the workspace and its lock.
//! - [`state`]: the job and lease state machine, gangs, the scheduler, job and worker
//!   records: plain data and pure functions, no I/O, no clock (time is passed in).
//! - [`error`]: the error every room returns.

pub mod error;
pub mod ops;
pub mod service;
pub mod stage;
pub mod state;
pub mod store;

pub use ops::coordinator::Coordinator;
