//! Benchmark 3, scale: 1,000 registered simulated workers and a stage of 100,000
//! queued jobs (100 sweep points x 1,000 seeds); the process's RSS (VmRSS) before and
//! after each, and the scheduling rate (lease + complete) with the deep queue.
//! Client, workers and coordinator share this process, so the RSS growth is an upper
//! bound for the coordinator's.

use crate::cluster::{complete_all, register, rss_bytes, submit, Cluster};
use crate::heap::{live_bytes, peak_bytes, reset_peak};
use crate::report::{rate, table};
use expcluster_proto::v1;
use expcluster_worker::session::Session;
use std::time::{Duration, Instant};

const WORKERS: usize = 1000;
const LEASING_WORKERS: usize = 64;
const RUN_FOR: Duration = Duration::from_secs(5);

fn config() -> String {
    let points: Vec<String> = (0..100).map(|x| x.to_string()).collect();
    format!(
        "name: bench\nprimary_metric: {{name: score, goal: max}}\nmetrics: [score]\n\
         job:\n  command: [\"true\"]\n  params: {{x: 0}}\nmethods:\n  m0: {{}}\n\
         stages:\n  full: {{seeds: 1000, methods: [m0], sweep: {{params.x: [{}]}}}}\n",
        points.join(", ")
    )
}

pub async fn run() -> anyhow::Result<()> {
    let cluster = Cluster::start(&config(), &[]).await?;
    let rss_start = rss_bytes();
    let mut workers = Vec::with_capacity(WORKERS);
    for _ in 0..WORKERS {
        let mut client = cluster.worker()?;
        let id = register(&mut client, 1).await?;
        workers.push((client, id));
    }
    let rss_workers = rss_bytes();
    let heap_workers = live_bytes();
    let mut client = cluster.client()?;
    reset_peak();
    let before = Instant::now();
    let queued = submit(&mut client, "full", false).await?;
    let submit_time = before.elapsed();
    let rss_jobs = rss_bytes();
    let heap_jobs = live_bytes();
    let heap_peak = peak_bytes();
    eprintln!("scale: {queued} jobs queued in {submit_time:.2?}");
    let started = Instant::now();
    let mut handles = Vec::new();
    for (worker, id) in workers.drain(..LEASING_WORKERS) {
        let session = Session::new(worker);
        handles.push(tokio::spawn(async move {
            let mut done = 0u64;
            // As in dispatch: a job's completion goes out with the next lease.
            let mut ended: Option<v1::JobSpec> = None;
            while started.elapsed() < RUN_FOR {
                let request = v1::LeaseRequest {
                    worker_id: id.clone(),
                    free_slots: 1,
                    wait_ms: 100,
                };
                let completion = complete_all(&session, &id, ended.as_slice());
                let (completed, leased) = tokio::join!(completion, session.lease(request));
                completed?;
                done += u64::from(ended.is_some());
                ended = leased?.jobs.pop();
            }
            complete_all(&session, &id, ended.as_slice()).await?;
            done += u64::from(ended.is_some());
            anyhow::Ok(done)
        }));
    }
    let mut done = 0;
    for handle in handles {
        done += handle.await??;
    }
    let elapsed = started.elapsed();
    cluster.shutdown().await;
    let kb = |bytes: u64| format!("{:.1} KB", bytes as f64 / 1024.0);
    let per_worker = rss_workers.saturating_sub(rss_start) / WORKERS as u64;
    let per_job = rss_jobs.saturating_sub(rss_workers) / u64::from(queued.max(1));
    // Live heap: what the queued jobs keep, without transient peaks of the submit.
    let heap_per_job = heap_jobs.saturating_sub(heap_workers) / u64::from(queued.max(1));
    // The most the heap held at once during the submit: the part of the RSS growth
    // that is a transient peak rather than what the jobs keep.
    let peak_per_job = heap_peak.saturating_sub(heap_workers) / u64::from(queued.max(1));
    table(
        "Scale: 1,000 workers, 100,000 queued jobs (RSS of the whole bench process)",
        &["measure", "value", "target"],
        &[
            vec!["RSS at start".into(), kb(rss_start), "-".into()],
            vec![
                format!("RSS after {WORKERS} workers registered"),
                kb(rss_workers),
                "-".into(),
            ],
            vec![
                format!("RSS after {queued} jobs queued"),
                kb(rss_jobs),
                "-".into(),
            ],
            vec![
                "memory per worker (client connection included)".into(),
                kb(per_worker),
                "<= 100 KB".into(),
            ],
            vec![
                "memory per queued job (RSS growth)".into(),
                kb(per_job),
                "<= 2 KB".into(),
            ],
            vec![
                "memory per queued job (live heap growth)".into(),
                kb(heap_per_job),
                "<= 2 KB".into(),
            ],
            vec![
                "peak heap growth during the submit, per queued job".into(),
                kb(peak_per_job),
                "-".into(),
            ],
            vec![
                "submit of the 100,000-job stage".into(),
                format!("{:.2?}", submit_time),
                "-".into(),
            ],
            vec![
                format!("scheduling rate, {LEASING_WORKERS} workers, deep queue"),
                format!(
                    "{:.0} jobs/s ({done} in {:.1?})",
                    rate(done, elapsed),
                    elapsed
                ),
                ">= 20,000 jobs/s".into(),
            ],
        ],
    );
    Ok(())
}
