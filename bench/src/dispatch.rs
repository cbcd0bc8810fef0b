//! Benchmark 1, dispatch: no-op command jobs through the real coordinator to
//! simulated workers (lease, then complete at once: the command is never run), beside
//! the reference of spawning the same no-op process (`true`) directly. The simulated
//! workers speak the real worker's protocol: leases and completions over one session
//! stream each (`expcluster_worker::session`).
//!
//! Submit-to-start is measured from just before the SubmitStage call to the moment
//! a worker's Lease call returns the job: once on an idle cluster (one job at a time,
//! every worker long-polling), and for every job of a 10,000-job stage (where it is
//! mostly time spent queued behind the others).

use crate::cluster::{
    complete_all, register, rss_bytes, submit, wait_finished, Cluster, CpuMeter, CpuUse,
};
use crate::report::{ms, quantile, rate, table};
use expcluster_proto::v1;
use expcluster_worker::session::Session;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

const METHODS: usize = 10;
const IDLE_ROUNDS: usize = 200;

/// Slots per simulated worker, one run each: `EXPCLUSTER_BENCH_SLOTS` (default 1 and
/// 8). With more than one, a worker leases up to that many jobs per call and completes
/// them together, as a node with one slot per GPU does.
fn slot_counts() -> anyhow::Result<Vec<u32>> {
    match std::env::var("EXPCLUSTER_BENCH_SLOTS") {
        Ok(value) => {
            let slots: u32 = value.trim().parse().map_err(|_| {
                anyhow::anyhow!("EXPCLUSTER_BENCH_SLOTS={value:?} is not a number: set it to 1-64")
            })?;
            Ok(vec![slots.clamp(1, 64)])
        }
        Err(_) => Ok(vec![1, 8]),
    }
}

/// Simulated workers, one run each: `EXPCLUSTER_BENCH_WORKERS` (default 16 and 64;
/// for example `64` to profile the target case alone).
pub fn worker_counts() -> anyhow::Result<Vec<usize>> {
    let Ok(value) = std::env::var("EXPCLUSTER_BENCH_WORKERS") else {
        return Ok(vec![16, 64]);
    };
    value
        .split(',')
        .map(|count| match count.trim().parse::<usize>() {
            Ok(count) if count > 0 => Ok(count),
            _ => Err(anyhow::anyhow!(
                "EXPCLUSTER_BENCH_WORKERS={value:?}: give worker counts above 0, separated by commas (for example 16,64)"
            )),
        })
        .collect()
}

/// Seeds per method: `EXPCLUSTER_BENCH_JOBS` / 10 (default 10,000 jobs in all).
fn seeds_per_method() -> usize {
    std::env::var("EXPCLUSTER_BENCH_JOBS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .map_or(1000, |jobs| (jobs / METHODS).clamp(1, 1000))
}

fn config() -> String {
    let seeds = seeds_per_method();
    let methods: String = (0..METHODS).map(|m| format!("  m{m}: {{}}\n")).collect();
    format!(
        "name: bench\nprimary_metric: {{name: score, goal: max}}\nmetrics: [score]\n\
         job:\n  command: [\"true\"]\nmethods:\n{methods}\
         stages:\n  baselines: {{seeds: 1, methods: [m0]}}\n  full: {{seeds: {seeds}}}\n"
    )
}

pub async fn run(worker_counts: &[usize]) -> anyhow::Result<()> {
    let jobs = METHODS * seeds_per_method();
    let slot_counts = slot_counts()?;
    let mut rows = Vec::new();
    let mut notes = Vec::new();
    for &workers in worker_counts {
        eprintln!("dispatch: spawning `true` {jobs} times from {workers} threads");
        let reference = spawn_reference(jobs, workers)?;
        eprintln!("dispatch: the coordinator with {workers} simulated workers");
        rows.push(vec![
            format!("`true` spawned directly, {workers} threads"),
            jobs.to_string(),
            format!("{:.0}", reference.0),
            ms(reference.1),
            ms(reference.2),
            "-".to_owned(),
            "-".to_owned(),
        ]);
        eprintln!("dispatch: the gRPC floor with {workers} simulated workers");
        let floor = rpc_floor(workers).await?;
        rows.push(vec![
            format!("unary gRPC floor: 2 Heartbeat calls per job, {workers} workers"),
            format!("{}", floor.calls / 2),
            format!("{:.0}", floor.jobs_per_s),
            "-".to_owned(),
            "-".to_owned(),
            "-".to_owned(),
            cpu_cell(&floor.cpu, floor.calls / 2),
        ]);
        for &slots in &slot_counts {
            for wait in [true, false] {
                let measured = coordinator_dispatch(workers, slots, wait).await?;
                let leases = if wait {
                    "leases answered after their commit (before)"
                } else {
                    "leases answered at once"
                };
                notes.push(format!(
                    "{workers} workers x {slots} slot(s), {leases}: the last job started {:.0} ms after the submit, every completion was acknowledged at {:.0} ms, the stage was seen finished (statistics, arrays and summary written, aggregated off the state lock) at {:.0} ms; live heap still held per job after the stage finished: {:.2} KB (RSS now {:.0} MB).",
                    measured.last_started_after.as_secs_f64() * 1e3,
                    measured.completed_after.as_secs_f64() * 1e3,
                    measured.stage_finished_after.as_secs_f64() * 1e3,
                    measured.kept_per_job as f64 / 1024.0,
                    rss_bytes() as f64 / 1e6
                ));
                rows.push(vec![
                    format!("coordinator, {workers} simulated workers x {slots} slot(s), {leases}"),
                    jobs.to_string(),
                    format!("{:.0}", measured.jobs_per_s),
                    ms(measured.idle_p50),
                    ms(measured.idle_p99),
                    format!("{} / {}", ms(measured.batch_p50), ms(measured.batch_p99)),
                    cpu_cell(&measured.cpu, measured.jobs),
                ]);
            }
        }
    }
    table(
        &format!(
            "Dispatch: {jobs} no-op jobs (leases and completions over one session per worker; a job's completion is sent with the next lease; workers over {})",
            crate::netpath::label()
        ),
        &[
            "system",
            "jobs",
            "jobs/s (submit to the last completion acknowledged)",
            "submit-to-start p50 (idle)",
            "p99 (idle)",
            "p50 / p99 in the batch",
            "coordinator CPU per job; cores busy (coordinator / all)",
        ],
        &rows,
    );
    println!(
        "\nReference latency is the time `Command::spawn` takes to return (fork + exec of `true`)."
    );
    for note in notes {
        println!("{note}");
    }
    Ok(())
}

fn cpu_cell(cpu: &CpuUse, jobs: u64) -> String {
    let (coordinator, all) = cpu.cores;
    format!(
        "{:.0} us; {coordinator:.2} / {all:.2}",
        cpu.coordinator_per(jobs).as_secs_f64() * 1e6
    )
}

/// Spawns `true` `jobs` times from `threads` threads; returns (processes/s, spawn p50, p99).
fn spawn_reference(jobs: usize, threads: usize) -> anyhow::Result<(f64, Duration, Duration)> {
    let started = Instant::now();
    let per_thread = jobs.div_ceil(threads);
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let count = per_thread.min(jobs.saturating_sub(t * per_thread));
            std::thread::spawn(move || -> std::io::Result<Vec<Duration>> {
                let mut latencies = Vec::with_capacity(count);
                for _ in 0..count {
                    let before = Instant::now();
                    let mut child = std::process::Command::new("true").spawn()?;
                    latencies.push(before.elapsed());
                    child.wait()?;
                }
                Ok(latencies)
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(jobs);
    for handle in handles {
        let part = handle
            .join()
            .map_err(|_| anyhow::anyhow!("a spawning thread panicked"))??;
        latencies.extend(part);
    }
    let elapsed = started.elapsed();
    Ok((
        rate(jobs as u64, elapsed),
        quantile(&mut latencies, 0.5),
        quantile(&mut latencies, 0.99),
    ))
}

/// How fast the same coordinator answers the cheapest worker call (Heartbeat: token
/// check, one hash lookup under the state mutex, the commit layer) from the same
/// number of connections: what dispatch would reach if a job cost nothing but its two
/// round trips (lease, complete).
struct Floor {
    calls: u64,
    jobs_per_s: f64,
    cpu: CpuUse,
}

async fn rpc_floor(workers: usize) -> anyhow::Result<Floor> {
    const RUN_FOR: Duration = Duration::from_secs(3);
    let cluster = Cluster::start(&config(), &[]).await?;
    let mut clients = Vec::with_capacity(workers);
    for _ in 0..workers {
        let mut client = cluster.worker()?;
        let worker_id = register(&mut client, 1).await?;
        clients.push((client, worker_id));
    }
    let started = Instant::now();
    let meter = CpuMeter::start();
    let mut handles = Vec::new();
    for (mut client, worker_id) in clients {
        handles.push(tokio::spawn(async move {
            let mut calls = 0u64;
            while started.elapsed() < RUN_FOR {
                let request = v1::HeartbeatRequest {
                    worker_id: worker_id.clone(),
                    running: Vec::new(),
                };
                client.heartbeat(request).await?;
                calls += 1;
            }
            anyhow::Ok(calls)
        }));
    }
    let mut calls = 0;
    for handle in handles {
        calls += handle.await??;
    }
    let elapsed = started.elapsed();
    let cpu = meter.stop();
    cluster.shutdown().await;
    Ok(Floor {
        calls,
        jobs_per_s: rate(calls, elapsed) / 2.0,
        cpu,
    })
}

/// When the simulated workers' leases returned jobs, in the order they returned. The
/// workers put the instants here and count them; the measuring task is woken only
/// when the count it waits for is reached. (A channel message per job woke it once
/// per job: CPU of the benchmark's own that no real worker spends, on the cores the
/// coordinator and the workers share.)
#[derive(Default)]
struct Starts {
    at: std::sync::Mutex<Vec<Instant>>,
    count: AtomicUsize,
    wanted: AtomicUsize,
    reached: Notify,
}

impl Starts {
    /// `jobs` jobs started at `now`.
    fn record(&self, now: Instant, jobs: usize) {
        if jobs == 0 {
            return;
        }
        self.lock().extend(std::iter::repeat_n(now, jobs));
        // Counted after the instants are in: a count that is reached has them all.
        let count = self.count.fetch_add(jobs, Ordering::SeqCst) + jobs;
        if count >= self.wanted.load(Ordering::SeqCst) {
            self.reached.notify_one();
        }
    }

    /// Waits until `count` jobs have started in all; returns every start so far. Fails
    /// if a simulated worker stopped meanwhile (its error is in its handle).
    async fn wait_for(
        &self,
        count: usize,
        workers: &[tokio::task::JoinHandle<anyhow::Result<()>>],
    ) -> anyhow::Result<Vec<Instant>> {
        self.wanted.store(count, Ordering::SeqCst);
        while self.count.load(Ordering::SeqCst) < count {
            if workers.iter().any(tokio::task::JoinHandle::is_finished) {
                anyhow::bail!("a simulated worker stopped before {count} jobs started");
            }
            // A worker's count past `wanted` notifies; a notification that came
            // before this wait is kept for it. Rechecked every 100 ms for a worker
            // that stopped.
            let _ = tokio::time::timeout(Duration::from_millis(100), self.reached.notified()).await;
        }
        Ok(self.lock().clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Instant>> {
        self.at.lock().unwrap_or_else(|p| p.into_inner())
    }
}

struct Dispatch {
    jobs: u64,
    /// Jobs over the time from the submit to the last completion's answer.
    jobs_per_s: f64,
    completed_after: Duration,
    last_started_after: Duration,
    /// When the stage was seen finished (its statistics, arrays and summary recorded;
    /// polled every 5 ms).
    stage_finished_after: Duration,
    /// CPU used while the stage was dispatched.
    cpu: CpuUse,
    /// Live heap still held per job once the stage has finished (bytes).
    kept_per_job: u64,
    idle_p50: Duration,
    idle_p99: Duration,
    batch_p50: Duration,
    batch_p99: Duration,
}

/// `leases_wait_for_commit`: answer leases only once their journal record is durable
/// (the coordinator before leases were answered at once), for the "before" rows.
async fn coordinator_dispatch(
    workers: usize,
    slots: u32,
    leases_wait_for_commit: bool,
) -> anyhow::Result<Dispatch> {
    let cluster = Cluster::start_with(&config(), &[], |settings| {
        settings.leases_wait_for_commit = leases_wait_for_commit;
    })
    .await?;
    let stop = Arc::new(AtomicBool::new(false));
    let started = Arc::new(Starts::default());
    // When the latest completion was answered.
    let last_completed = Arc::new(std::sync::Mutex::new(Instant::now()));
    let mut handles = Vec::new();
    for _ in 0..workers {
        let mut client = cluster.worker()?;
        let worker_id = register(&mut client, slots).await?;
        // Leases and completions over a session, as the real worker sends them.
        let session = Session::new(client);
        let stop = stop.clone();
        let started = started.clone();
        let last_completed = last_completed.clone();
        handles.push(tokio::spawn(async move {
            // The jobs leased last round. Each ends at once (a no-op); as in the real
            // worker, its end frees the slot, so its completion and the next lease
            // are sent together (one message on the session).
            let mut ended: Vec<v1::JobSpec> = Vec::new();
            // As the real worker's reporter, completions are acknowledged in the
            // background: a slot is leased again as soon as its job ended.
            let mut acks = tokio::task::JoinSet::new();
            while !stop.load(Ordering::Relaxed) {
                let request = v1::LeaseRequest {
                    worker_id: worker_id.clone(),
                    free_slots: slots,
                    wait_ms: 300,
                };
                if !ended.is_empty() {
                    let (session, worker_id, jobs) = (
                        session.clone(),
                        worker_id.clone(),
                        std::mem::take(&mut ended),
                    );
                    let last_completed = last_completed.clone();
                    acks.spawn(async move {
                        complete_all(&session, &worker_id, &jobs).await?;
                        let mut last = last_completed.lock().unwrap_or_else(|p| p.into_inner());
                        *last = (*last).max(Instant::now());
                        anyhow::Ok(())
                    });
                }
                while let Some(acked) = acks.try_join_next() {
                    acked??;
                }
                let jobs = session.lease(request).await?.jobs;
                started.record(Instant::now(), jobs.len());
                ended = jobs;
            }
            while let Some(acked) = acks.join_next().await {
                acked??;
            }
            complete_all(&session, &worker_id, &ended).await?;
            anyhow::Ok(())
        }));
    }
    let mut client = cluster.client()?;
    // Idle: one job at a time, every worker already waiting in a lease call.
    let mut idle = Vec::with_capacity(IDLE_ROUNDS);
    for round in 0..IDLE_ROUNDS {
        let before = Instant::now();
        submit(&mut client, "baselines", true).await?;
        let at = started.wait_for(round + 1, &handles).await?[round];
        idle.push(at.duration_since(before));
        wait_finished(&mut client, "baselines").await?;
    }
    eprintln!("dispatch: idle latency done");
    // Throughput: one stage of METHODS x SEEDS no-op jobs.
    let before = Instant::now();
    let meter = CpuMeter::start();
    let heap_before = crate::heap::live_bytes();
    let queued = submit(&mut client, "full", false).await? as usize;
    eprintln!(
        "dispatch: {queued} jobs queued after {:.2?}",
        before.elapsed()
    );
    let mut batch: Vec<Duration> = started.wait_for(IDLE_ROUNDS + queued, &handles).await?
        [IDLE_ROUNDS..]
        .iter()
        .map(|at| at.duration_since(before))
        .collect();
    eprintln!(
        "dispatch: {} jobs started after {:.2?}",
        batch.len(),
        before.elapsed()
    );
    wait_finished(&mut client, "full").await?;
    let stage_finished_after = before.elapsed();
    let completed_after = last_completed
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .duration_since(before);
    let cpu = meter.stop();
    let kept_per_job = crate::heap::live_bytes().saturating_sub(heap_before) / queued.max(1) as u64;
    stop.store(true, Ordering::Relaxed);
    for handle in handles {
        handle.await??;
    }
    cluster.shutdown().await;
    Ok(Dispatch {
        jobs: queued as u64,
        jobs_per_s: rate(queued as u64, completed_after),
        completed_after,
        stage_finished_after,
        last_started_after: batch.iter().copied().max().unwrap_or_default(),
        cpu,
        kept_per_job,
        idle_p50: quantile(&mut idle, 0.5),
        idle_p99: quantile(&mut idle, 0.99),
        batch_p50: quantile(&mut batch, 0.5),
        batch_p99: quantile(&mut batch, 0.99),
    })
}
