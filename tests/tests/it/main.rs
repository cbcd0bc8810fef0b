//! expcluster's integration tests: one binary, one module per area.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod across_stages;
mod cli;
mod dashboard;
mod definition;
mod docs_executed;
mod faults;
mod first_slice;
mod gang;
mod hostile_input;
mod journal;
mod logs_follow;
mod mcp;
mod netns;
mod second_look;
mod security;
mod session;
mod slurm;
mod summaries;
