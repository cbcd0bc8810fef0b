//! `expcluster-bench`: the coordinator's speed and scale, each figure printed beside a
//! reference measured in the same run. See BENCHMARKS.md for the method and results.
//!
//! Usage: `expcluster-bench [dispatch|ingest|scale|grid|all]...`

mod cluster;
mod dispatch;
mod grid;
mod heap;
mod ingest;
mod report;
mod scale;

#[global_allocator]
static ALLOCATOR: heap::Counting = heap::Counting;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut which: Vec<String> = std::env::args().skip(1).collect();
    if which.is_empty() || which.iter().any(|w| w == "all") {
        which = ["dispatch", "ingest", "scale", "grid"]
            .map(String::from)
            .to_vec();
    }
    println!(
        "expcluster-bench on {} CPU(s)",
        std::thread::available_parallelism().map_or(1, usize::from)
    );
    for name in &which {
        match name.as_str() {
            "dispatch" => dispatch::run(&dispatch::worker_counts()?).await?,
            "ingest" => ingest::run(&[1, 8, 64]).await?,
            "scale" => scale::run().await?,
            "grid" => grid::run().await?,
            other => anyhow::bail!(
                "unknown benchmark {other:?}: choose dispatch, ingest, scale, grid or all"
            ),
        }
    }
    Ok(())
}
