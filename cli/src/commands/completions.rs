//! `expcluster completions <shell>`: a completion script for bash, zsh, fish,
//! elvish or PowerShell, printed to stdout.

use clap::{Args, CommandFactory};
use clap_complete::Shell;
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct CompletionsArgs {
    /// bash, zsh, fish, elvish or powershell.
    pub shell: Shell,
}

pub fn run(args: CompletionsArgs) -> anyhow::Result<ExitCode> {
    let mut command = crate::Cli::command();
    clap_complete::generate(
        args.shell,
        &mut command,
        "expcluster",
        &mut std::io::stdout(),
    );
    Ok(ExitCode::SUCCESS)
}
