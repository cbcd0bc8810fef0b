//! `expcluster watch`: follow a coordinator live. With `--stage` the stage's
//! progress bars until it finishes; without, the overview of every stage and worker,
//! redrawn until Ctrl-C. `--json` prints one JSON object a line at each change, for
//! agents.

use super::CoordinatorArgs;
use crate::commands::status::{connect, explain, overview};
use crate::output::stage_status_json;
use crate::progress::StageProgress;
use clap::Args;
use expcluster_proto::v1;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Args, Debug)]
pub struct WatchArgs {
    #[command(flatten)]
    pub coordinator: CoordinatorArgs,
    #[command(flatten)]
    pub connect: crate::connect::ConnectArgs,
    /// Follow this stage until it finishes.
    #[arg(long)]
    pub stage: Option<String>,
    /// Seconds between refreshes.
    #[arg(long, default_value_t = 1.0)]
    pub interval: f64,
    /// One JSON object a line, printed when something changed.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(args: WatchArgs) -> anyhow::Result<ExitCode> {
    let (mut client, address) = connect(&args.coordinator, &args.connect)?;
    let interval = Duration::from_secs_f64(args.interval.clamp(0.1, 3600.0));
    let watching = async {
        match &args.stage {
            Some(stage) => watch_stage(&mut client, &address, stage, interval, args.json).await,
            None => watch_overview(&mut client, &address, interval, args.json).await,
        }
    };
    tokio::select! {
        result = watching => result,
        _ = tokio::signal::ctrl_c() => {
            eprintln!("\nstopped watching (nothing was cancelled)");
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn watch_stage(
    client: &mut expcluster_worker::client::ClientClient,
    address: &str,
    stage: &str,
    interval: Duration,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let mut progress = (!json).then(|| StageProgress::new(stage));
    let mut last = String::new();
    loop {
        let status = client
            .stage_status(v1::StageStatusRequest {
                stage: stage.to_owned(),
            })
            .await
            .map_err(|status| explain(status, address))?
            .into_inner();
        match progress.as_mut() {
            Some(progress) => progress.update(&status),
            None => {
                let line = stage_status_json(&status).to_string();
                if line != last {
                    println!("{line}");
                    last = line;
                }
            }
        }
        if status.finished {
            if let Some(progress) = &progress {
                progress.finish();
                print!("{}", crate::output::jobs_table(&status));
            }
            return Ok(ExitCode::SUCCESS);
        }
        tokio::time::sleep(interval).await;
    }
}

async fn watch_overview(
    client: &mut expcluster_worker::client::ClientClient,
    address: &str,
    interval: Duration,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let mut last = String::new();
    loop {
        let overview = overview(client, address).await?;
        if json {
            let line = overview.to_json().to_string();
            if line != last {
                println!("{line}");
                last = line;
            }
        } else {
            // Clear the screen and home the cursor, then redraw.
            print!("\x1b[2J\x1b[H{}\n(refreshing every {:.1}s; Ctrl-C stops watching, never the jobs)\n", overview.to_text(), interval.as_secs_f64());
        }
        tokio::time::sleep(interval).await;
    }
}
