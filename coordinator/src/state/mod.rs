//! The job and lease state machine, gangs, the scheduler, and the records of jobs and
//! workers: plain data and pure functions. Nothing here reads a file, a socket or a
//! clock (time is passed in) or needs tokio, so every transition is tested as a table
//! ([`transitions_tests`]) without a coordinator.

pub mod gang;
pub mod lifecycle;
pub mod records;
pub mod reports;
pub mod scheduler;
#[cfg(test)]
mod transitions_tests;
