//! Benchmark 2, metric ingestion: simulated workers each lease one job and stream
//! batches of metric points as fast as the coordinator acknowledges them
//! (ReportMetrics returns only once the points are stored). Reference in the same
//! run: the floor of durable storage, one thread appending the same batches as JSON
//! lines to a file with an fdatasync per batch.

use crate::cluster::{complete, register, submit, wait_finished, Cluster, CpuMeter, CpuUse};
use crate::report::{ms, quantile, rate, table};
use expcluster_proto::v1;
use expcluster_worker::session::Session;
use std::io::Write;
use std::time::{Duration, Instant};

const BATCH: u64 = 1000;
pub const RUN_FOR: Duration = Duration::from_secs(3);

pub fn config(workers: usize) -> String {
    format!(
        "name: bench\nprimary_metric: {{name: score, goal: max}}\nmetrics: [score, loss]\n\
         job:\n  command: [\"true\"]\nmethods:\n  m0: {{}}\nstages:\n  baselines: {{seeds: {workers}, methods: [m0]}}\n"
    )
}

fn batch_points(first_seq: u64) -> Vec<v1::MetricPoint> {
    (first_seq..first_seq + BATCH)
        .map(|seq| v1::MetricPoint {
            seq,
            name: "loss".to_owned(),
            step: seq,
            value: 1.0 / (seq as f64 + 1.0),
            time_ms: 0,
        })
        .collect()
}

/// What one ingestion run measured.
pub struct Ingested {
    pub points: u64,
    /// The longest worker's streaming time.
    pub elapsed: Duration,
    /// Each batch's acknowledgement delay.
    pub delays: Vec<Duration>,
    pub cpu: CpuUse,
}

impl Ingested {
    pub fn points_per_s(&self) -> f64 {
        rate(self.points, self.elapsed)
    }
}

/// Submits the stage of [`config`]`(workers)` on `cluster`, has `workers` simulated
/// workers each lease a job and stream batches for [`RUN_FOR`], then completes the
/// jobs and waits for the stage to finish.
pub async fn ingest(cluster: &Cluster, workers: usize) -> anyhow::Result<Ingested> {
    let mut client = cluster.client()?;
    submit(&mut client, "baselines", false).await?;
    let mut handles = Vec::new();
    let started = Instant::now();
    let meter = CpuMeter::start();
    for _ in 0..workers {
        let mut worker = cluster.worker()?;
        handles.push(tokio::spawn(async move {
            let worker_id = register(&mut worker, 1).await?;
            let request = v1::LeaseRequest {
                worker_id: worker_id.clone(),
                free_slots: 1,
                wait_ms: 5000,
            };
            let session = Session::new(worker.clone());
            let job = session
                .lease(request)
                .await?
                .jobs
                .pop()
                .ok_or_else(|| anyhow::anyhow!("no job leased"))?;
            let mut delays = Vec::new();
            let mut seq = 0;
            while started.elapsed() < RUN_FOR {
                let batch = v1::MetricBatch {
                    worker_id: worker_id.clone(),
                    job_id: job.job_id.clone(),
                    attempt: job.attempt,
                    points: batch_points(seq),
                };
                let before = Instant::now();
                let acked = worker
                    .report_metrics(batch)
                    .await?
                    .into_inner()
                    .acked_through;
                delays.push(before.elapsed());
                seq = acked;
            }
            let elapsed = started.elapsed();
            // Completed after the CPU reading: the last completion finishes the
            // stage (statistics and arrays), which is not ingestion.
            anyhow::Ok((seq, elapsed, delays, (session, worker_id, job)))
        }));
    }
    let (mut total, mut longest, mut delays) = (0, Duration::ZERO, Vec::new());
    let mut streams = Vec::with_capacity(workers);
    for handle in handles {
        let (points, elapsed, part, stream) = handle.await??;
        total += points;
        longest = longest.max(elapsed);
        delays.extend(part);
        streams.push((points, stream));
    }
    let cpu = meter.stop();
    for (points, (session, worker_id, job)) in streams {
        complete(&session, &worker_id, &job, points).await?;
    }
    wait_finished(&mut client, "baselines").await?;
    Ok(Ingested {
        points: total,
        elapsed: longest,
        delays,
        cpu,
    })
}

pub async fn run(worker_counts: &[usize]) -> anyhow::Result<()> {
    let mut rows = Vec::new();
    let (points, elapsed, mut delays) = file_reference()?;
    rows.push(vec![
        "JSON lines + fdatasync per batch, 1 thread".to_owned(),
        format!("{:.0}", rate(points, elapsed)),
        "-".to_owned(),
        ms(quantile(&mut delays, 0.5)),
        ms(quantile(&mut delays, 0.99)),
    ]);
    for &workers in worker_counts {
        eprintln!("ingest: {workers} simulated workers");
        let cluster = Cluster::start(&config(workers), &[]).await?;
        let mut run = ingest(&cluster, workers).await?;
        cluster.shutdown().await;
        rows.push(vec![
            format!("coordinator, {workers} workers"),
            format!("{:.0}", run.points_per_s()),
            format!(
                "{:.2} cores, {:.2} us/point",
                run.cpu.cores.0,
                run.cpu.coordinator_per(run.points).as_secs_f64() * 1e6
            ),
            ms(quantile(&mut run.delays, 0.5)),
            ms(quantile(&mut run.delays, 0.99)),
        ]);
    }
    table(
        &format!(
            "Metric ingestion: batches of {BATCH} points, acknowledged once stored, {}s per row; workers over {}",
            RUN_FOR.as_secs(),
            crate::netpath::label()
        ),
        &[
            "system",
            "points/s",
            "coordinator CPU",
            "batch ack delay p50",
            "p99",
        ],
        &rows,
    );
    Ok(())
}

fn file_reference() -> anyhow::Result<(u64, Duration, Vec<Duration>)> {
    let dir = tempfile::tempdir()?;
    let mut file = std::fs::File::create(dir.path().join("points.jsonl"))?;
    let started = Instant::now();
    let (mut seq, mut delays) = (0, Vec::new());
    while started.elapsed() < RUN_FOR {
        let before = Instant::now();
        let mut buffer = Vec::new();
        for point in batch_points(seq) {
            serde_json::to_writer(
                &mut buffer,
                &serde_json::json!({"seq": point.seq, "name": point.name, "step": point.step, "value": point.value}),
            )?;
            buffer.push(b'\n');
        }
        file.write_all(&buffer)?;
        file.sync_data()?;
        delays.push(before.elapsed());
        seq += BATCH;
    }
    Ok((seq, started.elapsed(), delays))
}
