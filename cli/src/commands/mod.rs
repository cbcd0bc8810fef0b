//! The subcommands. Each module turns its flags into a library call.

pub mod cancel;
mod completions;
mod coordinator;
pub mod idea;
pub mod init;
pub mod logs;
mod logs_follow;
mod plot;
pub mod report;
mod slurm;
pub mod status;
pub mod submit;
mod summarize;
pub mod validate;
mod watch;
mod worker;

use clap::{Args, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args, Debug, Clone)]
pub struct WorkspaceArgs {
    /// The experiment folder (experiments/<idea>).
    #[arg(long, short = 'w')]
    pub workspace: Option<PathBuf>,
    /// The idea's name, for experiments/<idea>.
    #[arg(long)]
    pub idea: Option<String>,
}

#[derive(Args, Debug, Clone)]
pub struct CoordinatorArgs {
    /// Address of a running coordinator (host:port).
    #[arg(long, env = "EXPCLUSTER_COORDINATOR")]
    pub coordinator: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create experiments/<idea>/ with idea.md, idea.json, a commented config.yaml,
    /// a runfile.py template and the folders a run fills.
    #[command(
        after_help = "Example:\n  expcluster init label-smoothing\n  $EDITOR experiments/label-smoothing/config.yaml"
    )]
    Init(init::InitArgs),
    /// Check config.yaml and print the job matrix of every stage, running nothing.
    #[command(after_help = "Example:\n  expcluster validate --idea label-smoothing")]
    Validate(validate::ValidateArgs),
    /// Run a stage (implementation, baselines, full, ablations) or `all` of them.
    #[command(
        after_help = "Examples:\n  expcluster submit --stage implementation          # embedded coordinator, local workers\n  expcluster submit --stage all --slots 2\n  expcluster submit --stage full --coordinator 10.0.0.5:50051"
    )]
    Submit(submit::SubmitArgs),
    /// Show every stage and worker (slots), or one stage's jobs and their latest metrics.
    #[command(
        after_help = "Examples:\n  expcluster status --coordinator 127.0.0.1:50051\n  expcluster status --stage baselines --coordinator 127.0.0.1:50051 --json"
    )]
    Status(status::StatusArgs),
    /// List the workers registered with a coordinator.
    #[command(after_help = "Example:\n  expcluster workers --coordinator 127.0.0.1:50051")]
    Workers(status::WorkersArgs),
    /// Cancel a stage's jobs, or one job.
    #[command(
        after_help = "Example:\n  expcluster cancel --stage full --coordinator 127.0.0.1:50051"
    )]
    Cancel(cancel::CancelArgs),
    /// Follow a stage's progress live (or every stage, redrawn until Ctrl-C).
    #[command(
        after_help = "Examples:\n  expcluster watch --stage full --coordinator 127.0.0.1:50051\n  expcluster watch --coordinator 127.0.0.1:50051 --json     # one JSON line per change"
    )]
    Watch(watch::WatchArgs),
    /// Print a job's stdout, stderr or worker log; --follow streams it live until the job ends.
    #[command(
        after_help = "Examples:\n  expcluster logs full.proposed.s3 --stream stderr --coordinator 127.0.0.1:50051\n  expcluster logs full.proposed.s3 --follow --coordinator 127.0.0.1:50051\n  expcluster logs full.proposed.s3 --idea label-smoothing   # from the workspace's logs/"
    )]
    Logs(logs::LogsArgs),
    /// Draw figures/ (learning curves, final-metric bars with 95% CIs, ablation impact).
    #[command(
        after_help = "Examples:\n  expcluster plot --idea label-smoothing\n  expcluster plot --idea label-smoothing --stage ablations --json"
    )]
    Plot(plot::PlotArgs),
    /// Write report.md: the idea, every summary, the claims' verdicts, the figures, the idea's evolution.
    #[command(after_help = "Example:\n  expcluster report --idea label-smoothing --plot")]
    Report(report::ReportArgs),
    /// Print a shell completion script.
    #[command(
        after_help = "Examples:\n  expcluster completions bash > ~/.local/share/bash-completion/completions/expcluster\n  expcluster completions zsh > ~/.zfunc/_expcluster"
    )]
    Completions(completions::CompletionsArgs),
    /// Serve an experiment workspace to workers and clients over gRPC.
    #[command(
        after_help = "Example:\n  expcluster coordinator --workspace experiments/label-smoothing --listen 127.0.0.1:50051"
    )]
    Coordinator(coordinator::CoordinatorCmd),
    /// Run jobs leased from a coordinator (one worker per node).
    #[command(
        after_help = "Example:\n  expcluster worker --coordinator 127.0.0.1:50051 --slots 2"
    )]
    Worker(worker::WorkerArgs),
    /// Record a change to the idea (`update`) or show its versions (`log`).
    #[command(
        after_help = "Examples:\n  expcluster idea update --idea x --reason \"claim narrowed after the baselines\" --from new_idea.md\n  expcluster idea log --idea x"
    )]
    Idea(idea::IdeaArgs),
    /// Recompute a stage's summary from the stored per-job results (no coordinator).
    #[command(after_help = "Example:\n  expcluster summarize --idea x --stage baselines")]
    Summarize(summarize::SummarizeArgs),
    /// Serve the Model Context Protocol, so an AI agent drives the research loop
    /// (stdio, or Streamable HTTP with --listen); see docs/agents.md.
    #[command(
        after_help = "Examples:\n  expcluster mcp --workspace experiments/label-smoothing\n  expcluster mcp --workspace experiments/label-smoothing --listen 127.0.0.1:8765"
    )]
    Mcp(crate::mcp::McpArgs),
    /// Launch workers (and a coordinator) as Slurm jobs, or cancel them.
    #[command(
        after_help = "Examples:\n  expcluster slurm launch --nodes 4 --gpus-per-node 8 --partition gpu --time 12:00:00\n  expcluster slurm launch --nodes 8 --gpus-per-node 4 --coordinator 10.0.0.5:50051\n  expcluster slurm stop"
    )]
    Slurm(slurm::SlurmArgs),
}

pub async fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Init(args) => init::run(args),
        Command::Validate(args) => validate::run(args),
        Command::Submit(args) => submit::run(args).await,
        Command::Status(args) => status::run(args).await,
        Command::Workers(args) => status::run_workers(args).await,
        Command::Cancel(args) => cancel::run(args).await,
        Command::Watch(args) => watch::run(args).await,
        Command::Logs(args) => logs::run(args).await,
        Command::Plot(args) => plot::run(args),
        Command::Report(args) => report::run(args),
        Command::Completions(args) => completions::run(args),
        Command::Coordinator(args) => coordinator::run(args).await,
        Command::Worker(args) => worker::run(args).await,
        Command::Idea(args) => idea::run(args),
        Command::Summarize(args) => summarize::run(args),
        Command::Slurm(args) => slurm::run(args),
        Command::Mcp(args) => crate::mcp::run(args).await,
    }
}
