//! Benchmark 5, a grid of 60 short real jobs end to end: real `expcluster worker`
//! processes (the binary next to this one) run a Python job that sleeps and prints
//! metric lines, through the real coordinator. Against two baselines measured in the
//! same run: the ideal (the sum of the jobs' own run times over the slots) and the
//! same 60 commands run directly by a local pool of as many threads as slots.
//!
//! Job run times are what the workers report (`duration_s`: the process's wall time,
//! interpreter start included), so the overhead is everything around the processes:
//! submission, leasing, metric streaming, completion, the stage's results.

use crate::cluster::{submit, wait_finished, Cluster};
use crate::report::table;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const METHODS: usize = 6;
const SEEDS: usize = 10;
const WORKERS: usize = 2;
const SLOTS_PER_WORKER: usize = 2;

/// Sleeps a method-dependent time in 5 steps, printing one metric per step.
const JOB: &str = r#"
import json, os, time
params = json.loads(os.environ["EXP_CONFIG"])["params"]
seed = int(os.environ["EXP_SEED"])
for step in range(5):
    time.sleep(params["seconds"] / 5)
    print(f"loss: {1.0 / (step + 1 + seed)}", flush=True)
print(f"score: {params['seconds'] + seed / 100}")
"#;

fn seconds(method: usize) -> f64 {
    0.3 + 0.1 * method as f64
}

fn config() -> String {
    let methods: String = (0..METHODS)
        .map(|m| format!("  m{m}: {{params.seconds: {}}}\n", seconds(m)))
        .collect();
    format!(
        "name: grid\nprimary_metric: {{name: score, goal: max}}\nmetrics: [loss, score]\n\
         job:\n  command: [python3, job.py]\n  params: {{seconds: 0.5}}\nmethods:\n{methods}\
         stages:\n  full: {{seeds: {SEEDS}}}\n"
    )
}

/// Worker processes, killed when dropped.
struct Workers(Vec<Child>);

impl Drop for Workers {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn start_workers(cluster: &Cluster, scratch: &std::path::Path) -> anyhow::Result<Workers> {
    let exe = std::env::current_exe()?;
    let bin = exe
        .parent()
        .map(|dir| dir.join("expcluster"))
        .filter(|bin| bin.exists())
        .ok_or_else(|| {
            anyhow::anyhow!(
                "the expcluster binary is not next to this one: build it first with `cargo build --release -p expcluster-cli`"
            )
        })?;
    let mut workers = Workers(Vec::new());
    for index in 0..WORKERS {
        let child = Command::new(&bin)
            .args(["worker", "--coordinator", &cluster.address, "--slots"])
            .arg(SLOTS_PER_WORKER.to_string())
            .arg("--work-dir")
            .arg(scratch.join(format!("worker-{index}")))
            .env("EXPCLUSTER_TOKEN", &cluster.worker_token)
            .env_remove("EXPCLUSTER_TOKEN_FILE")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        workers.0.push(child);
    }
    Ok(workers)
}

/// Runs every job's command directly, `threads` at a time; returns the total time
/// and the sum of the processes' own times.
fn run_directly(dir: &std::path::Path, threads: usize) -> anyhow::Result<(Duration, Duration)> {
    let jobs: Vec<(usize, usize)> = (0..METHODS)
        .flat_map(|m| (0..SEEDS).map(move |s| (m, s)))
        .collect();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let started = Instant::now();
    let sums = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| -> anyhow::Result<Duration> {
                    let mut sum = Duration::ZERO;
                    loop {
                        let index = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(&(method, seed)) = jobs.get(index) else {
                            return Ok(sum);
                        };
                        let config =
                            format!("{{\"params\": {{\"seconds\": {}}}}}", seconds(method));
                        let before = Instant::now();
                        let status = Command::new("python3")
                            .arg(dir.join("job.py"))
                            .env("EXP_CONFIG", config)
                            .env("EXP_SEED", seed.to_string())
                            .stdout(Stdio::null())
                            .status()?;
                        sum += before.elapsed();
                        anyhow::ensure!(status.success(), "the job failed when run directly");
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .map_err(|_| anyhow::anyhow!("a job thread panicked"))?
            })
            .collect::<anyhow::Result<Vec<Duration>>>()
    })?;
    Ok((started.elapsed(), sums.into_iter().sum()))
}

pub async fn run() -> anyhow::Result<()> {
    let slots = WORKERS * SLOTS_PER_WORKER;
    let jobs = METHODS * SEEDS;
    let scratch = tempfile::tempdir()?;
    std::fs::write(scratch.path().join("job.py"), JOB)?;
    eprintln!("grid: {jobs} jobs run directly, {slots} at a time");
    let (direct_total, direct_sum) = run_directly(scratch.path(), slots)?;

    eprintln!(
        "grid: {jobs} jobs through the coordinator, {WORKERS} workers x {SLOTS_PER_WORKER} slots"
    );
    let cluster = Cluster::start(&config(), &[("job.py", JOB)]).await?;
    let _workers = start_workers(&cluster, scratch.path())?;
    let mut client = cluster.client()?;
    // The clock starts with every worker registered (process start-up is not the
    // coordinator's overhead).
    while client
        .list_workers(expcluster_proto::v1::ListWorkersRequest {})
        .await?
        .into_inner()
        .workers
        .len()
        < WORKERS
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let before = Instant::now();
    let queued = submit(&mut client, "full", false).await?;
    let status = wait_finished(&mut client, "full").await?;
    let total = before.elapsed();
    cluster.shutdown().await;
    let succeeded = status
        .jobs
        .iter()
        .filter(|job| job.state == expcluster_proto::v1::JobState::Succeeded as i32)
        .count();
    anyhow::ensure!(
        succeeded == jobs && queued as usize == jobs,
        "{succeeded} of {jobs} jobs succeeded ({queued} queued): see the workers' logs"
    );
    let job_sum: f64 = status.jobs.iter().map(|job| job.duration_s).sum();

    // Two ideals: from the job times the workers report, and from the same commands'
    // times measured by the direct pool (the two clocks start at slightly different
    // moments of a process's start).
    let direct_ideal = direct_sum.as_secs_f64() / slots as f64;
    let row = |system: &str, total: Duration, sum: f64| {
        let ideal = sum / slots as f64;
        let over = |ideal: f64| format!("{:+.1}%", (total.as_secs_f64() / ideal - 1.0) * 100.0);
        vec![
            system.to_owned(),
            format!("{:.2} s", total.as_secs_f64()),
            format!("{sum:.2} s"),
            format!("{ideal:.2} s"),
            over(ideal),
            over(direct_ideal),
        ]
    };
    table(
        &format!("Grid: {jobs} short real jobs (Python, 0.3-0.8 s each), {slots} slots"),
        &[
            "system",
            "total",
            "sum of job times",
            "ideal (sum / slots)",
            "overhead over ideal",
            "over the direct run's ideal",
        ],
        &[
            row(
                &format!("run directly, {slots} threads"),
                direct_total,
                direct_sum.as_secs_f64(),
            ),
            row(
                &format!("coordinator, {WORKERS} workers x {SLOTS_PER_WORKER} slots"),
                total,
                job_sum,
            ),
        ],
    );
    Ok(())
}
