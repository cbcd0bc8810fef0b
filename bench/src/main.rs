//! `expcluster-bench`: the coordinator's speed and scale, each figure printed beside a
//! reference measured in the same run. See BENCHMARKS.md for the method and results.
//!
//! Usage: `expcluster-bench [dispatch|ingest|scale|grid|dashboard|all]...`
//! (`dashboard-ingest` and `dashboard-page` run one half of `dashboard`), or
//! `expcluster-bench relay --listen ADDR --to ADDR --delay-us N` (the delaying TCP
//! relay of the namespace cluster).

mod cluster;
mod dashboard;
mod dispatch;
mod grid;
mod heap;
mod ingest;
mod netpath;
mod relay;
mod report;
mod scale;

const USAGE: &str = "\
usage: expcluster-bench [dispatch|ingest|scale|grid|dashboard|all]...
       expcluster-bench relay --listen ADDR --to ADDR --delay-us N

With no name, every benchmark runs. Each prints a table with its reference row
measured in the same run; BENCHMARKS.md explains them.

Environment:
  EXPCLUSTER_BENCH_WORKERS  dispatch: simulated worker counts, comma-separated
                            (default 16,64)
  EXPCLUSTER_BENCH_JOBS     dispatch: jobs of the throughput stage (default 10000)
  EXPCLUSTER_BENCH_SLOTS    dispatch: slots per simulated worker (default 1, then 8)
  EXPCLUSTER_BENCH_RTT_MS   workers in a network namespace this round trip away
                            (root only; for example 0.2)
";

#[global_allocator]
static ALLOCATOR: heap::Counting = heap::Counting;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut which: Vec<String> = std::env::args().skip(1).collect();
    if which.iter().any(|w| w == "--help" || w == "-h") {
        print!("{USAGE}");
        return Ok(());
    }
    if which.first().map(String::as_str) == Some("relay") {
        let args = relay::RelayArgs::parse(&which[1..])?;
        return tokio::task::spawn_blocking(move || relay::run(&args)).await?;
    }
    if which.is_empty() || which.iter().any(|w| w == "all") {
        which = ["dispatch", "ingest", "scale", "grid", "dashboard"]
            .map(String::from)
            .to_vec();
    }
    crate::netpath::current()?;
    println!(
        "expcluster-bench on {} CPU(s); workers reach the coordinator over {}",
        std::thread::available_parallelism().map_or(1, usize::from),
        netpath::label()
    );
    let result = run_all(&which).await;
    netpath::tear_down();
    result
}

async fn run_all(which: &[String]) -> anyhow::Result<()> {
    for name in which {
        match name.as_str() {
            "dispatch" => dispatch::run(&dispatch::worker_counts()?).await?,
            "ingest" => ingest::run(&[1, 8, 64]).await?,
            "scale" => scale::run().await?,
            "grid" => grid::run().await?,
            "dashboard" => dashboard::run().await?,
            "dashboard-ingest" => dashboard::ingestion_side_by_side().await?,
            "dashboard-page" => dashboard::page_load().await?,
            other => anyhow::bail!(
                "unknown benchmark {other:?}: choose dispatch, ingest, scale, grid, dashboard or all"
            ),
        }
    }
    Ok(())
}
