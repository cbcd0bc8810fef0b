//! `expcluster`: run the experiments of a research paper on a GPU cluster.
//!
//! A thin binary: flags become a validated request, then a library call. With no
//! `--coordinator` (and no EXPCLUSTER_COORDINATOR), `submit` runs an embedded
//! coordinator and local workers in this process, over real gRPC on loopback.

mod commands;
mod connect;
mod dashboard_arg;
mod embedded;
mod mcp;
mod output;
mod progress;
mod workspace_arg;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "expcluster",
    version,
    about = "Run the four stages of an ML research experiment on a GPU cluster, and keep the record."
)]
struct Cli {
    #[command(subcommand)]
    command: commands::Command,
}

fn main() -> ExitCode {
    // `expcluster validate | head` must end quietly when `head` closes the pipe, as
    // other Unix tools do, not panic in println! on EPIPE (Rust ignores SIGPIPE).
    // SAFETY: set once at start, before any thread exists; the default disposition
    // installs no handler code.
    #[allow(unsafe_code)]
    unsafe {
        let _ = nix::sys::signal::signal(
            nix::sys::signal::Signal::SIGPIPE,
            nix::sys::signal::SigHandler::SigDfl,
        );
    }
    let cli = Cli::parse();
    init_tracing();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(commands::run(cli.command)) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("EXPCLUSTER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

// `Subcommand` is used through `commands::Command`.
#[allow(unused_imports)]
use Subcommand as _;
