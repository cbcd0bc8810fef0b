//! expcluster's integration tests: one binary, one module per area.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cli;
mod definition;
mod faults;
mod first_slice;
mod hostile_input;
mod journal;
mod security;
mod slurm;
mod summaries;
