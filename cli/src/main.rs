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

/// `expcluster status | head` must end quietly when `head` closes the pipe, as other
/// Unix tools do (exit status 141, as if killed by SIGPIPE), not with a panic message.
///
/// SIGPIPE itself stays ignored, as Rust sets it: this process also runs gRPC servers
/// and clients, and hyper writes sockets with `writev`, which raises SIGPIPE when the
/// peer has gone. With the default disposition that killed the whole process (an
/// embedded `submit` died of signal 13 at shutdown, after printing its results).
/// Only a failed print to stdout, which `println!` reports by panicking, ends it here.
fn end_quietly_when_stdout_closes() {
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if message.starts_with("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(141);
        }
        default_hook(info);
    }));
}

fn main() -> ExitCode {
    end_quietly_when_stdout_closes();
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
