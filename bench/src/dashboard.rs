//! Benchmark 6, the live dashboard: what following a stage in a browser costs the
//! coordinator, and how fast the page is at 10,000 jobs and 64 workers.
//!
//! 1. Ingestion side by side in one run: the ingest benchmark's workload (simulated
//!    workers streaming batches of metric points) with the dashboard off, served but
//!    unwatched, and followed by one Server-Sent Events client subscribed to every
//!    point of the stage (the stage page's stream). The dashboard runs on the
//!    coordinator's runtime, so its CPU is counted as the coordinator's. Rows are
//!    interleaved (each round starting with another mode) and repeated [`REPEATS`]
//!    times; each row reports the median and the
//!    spread (min-max) of points/s and of the coordinator's CPU per point. On a
//!    shared machine points/s moves with other tenants' load; CPU per point much less.
//! 2. Page load: a 10,000-job stage with 64 workers (256 jobs running, each with 20
//!    points): each API answer over HTTP, and the stage page in headless Chromium
//!    from navigation to the jobs table in the DOM (a `performance.mark` the page
//!    sets when it draws the table).

use crate::cluster::{register, submit, Cluster};
use crate::ingest::{config, ingest, Ingested};
use crate::report::{ms, quantile, table};
use expcluster_proto::v1;
use expcluster_worker::session::Session;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

const WORKERS: usize = 8;
const REPEATS: usize = 9;
const PAGE_JOBS: usize = 10_000;
const PAGE_WORKERS: usize = 64;
/// Methods of the page's stage (a stage has at most 1,000 seeds).
const PAGE_METHODS: usize = 10;
const PAGE_LOADS: usize = 9;

pub async fn run() -> anyhow::Result<()> {
    ingestion_side_by_side().await?;
    page_load().await
}

/// Stored batches the watched-path probe publishes.
const PROBE_BATCHES: usize = 200_000;
/// Batches per message in the probe: about what 250 ms hold at the ingestion rows'
/// 2,000 batches a second.
const PROBE_PER_MESSAGE: usize = 500;

/// The watched path alone, on one thread: for each stored batch of 1,000 points, the
/// coordinator's publishing into its live feed (as ReportMetrics does it), and a
/// stage page's stream turning the feed into messages. Its CPU time per stored point
/// is what watching adds to the coordinator, measured apart from the ingestion
/// rows' noise (other tenants' load moves those by more than 5%). Returns
/// (CPU us per point, messages, KB of JSON).
fn watched_path_cost() -> anyhow::Result<(f64, usize, f64)> {
    use expcluster_coordinator::store::live_feed::{LiveEvent, LiveFeed, MetricPoints};
    let feed = LiveFeed::default();
    let mut receiver = feed.subscribe();
    let jobs: Vec<expcluster_core::JobId> = (0..WORKERS)
        .map(|seed| expcluster_core::JobId::parse(&format!("baselines.m0.s{seed}")))
        .collect::<Result<_, _>>()
        .map_err(|err| anyhow::anyhow!("{err}"))?;
    let batch: Vec<(String, u64, f64)> = (0..1000u64)
        .map(|step| ("loss".to_owned(), step, 1.0 / (step as f64 + 1.0)))
        .collect();
    let accepted: Vec<usize> = (0..batch.len()).collect();
    let (mut messages, mut bytes) = (0, 0);
    let before = crate::cluster::this_thread_cpu();
    for index in 0..PROBE_BATCHES {
        let job = &jobs[index % jobs.len()];
        feed.publish(|| {
            LiveEvent::Metrics(std::sync::Arc::new(MetricPoints::sampled(
                job,
                1,
                &accepted,
                |&i| (batch[i].0.as_str(), batch[i].1, batch[i].2),
            )))
        });
        if (index + 1) % PROBE_PER_MESSAGE == 0 {
            let (m, b) = expcluster_dashboard::drain_as_messages(&mut receiver, "baselines");
            messages += m;
            bytes += b;
        }
    }
    let cpu = crate::cluster::this_thread_cpu().saturating_sub(before);
    anyhow::ensure!(messages > 0, "the probe's stream made no message");
    Ok((
        cpu.as_secs_f64() * 1e6 / (PROBE_BATCHES * batch.len()) as f64,
        messages,
        bytes as f64 / 1e3,
    ))
}

/// What the SSE client received.
struct Followed {
    bytes: usize,
    messages: usize,
    points: usize,
}

/// Follows `/api/events?stage=baselines` until the server ends the stream.
fn follow(url: &str, token: &str) -> anyhow::Result<std::thread::JoinHandle<Followed>> {
    let host = url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    let mut stream = TcpStream::connect(&host)?;
    write!(
        stream,
        "GET /api/events?stage=baselines HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n\r\n"
    )?;
    Ok(std::thread::spawn(move || {
        let mut followed = Followed {
            bytes: 0,
            messages: 0,
            points: 0,
        };
        let mut buffer = vec![0u8; 1 << 16];
        let mut pending = Vec::new();
        while let Ok(n) = stream.read(&mut buffer) {
            if n == 0 {
                break;
            }
            followed.bytes += n;
            pending.extend_from_slice(&buffer[..n]);
            // Each complete `update` message: its points are counted from its JSON.
            while let Some(end) = pending.windows(2).position(|w| w == b"\n\n") {
                let message: Vec<u8> = pending.drain(..end + 2).collect();
                let text = String::from_utf8_lossy(&message);
                if !text.contains("event: update") {
                    continue;
                }
                followed.messages += 1;
                let data: String = text
                    .lines()
                    .filter_map(|line| line.strip_prefix("data: "))
                    .collect();
                if let Ok(update) = serde_json::from_str::<serde_json::Value>(&data) {
                    followed.points += update["metrics"].as_array().map_or(0, |series| {
                        series
                            .iter()
                            .map(|s| s[3].as_array().map_or(0, Vec::len))
                            .sum()
                    });
                }
            }
        }
        followed
    }))
}

/// `median (min-max)` of `values`, with `digits` decimals.
fn spread(values: &[f64], digits: usize) -> String {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match (sorted.first(), sorted.last()) {
        (Some(min), Some(max)) => format!(
            "{:.digits$} ({min:.digits$}-{max:.digits$})",
            sorted[sorted.len() / 2]
        ),
        _ => "-".to_owned(),
    }
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted.get(sorted.len() / 2).copied().unwrap_or(f64::NAN)
}

pub async fn ingestion_side_by_side() -> anyhow::Result<()> {
    let modes = [
        "dashboard off",
        "dashboard on, no client",
        "dashboard on, 1 SSE client (every point of the stage)",
    ];
    let mut runs: Vec<Vec<(Ingested, Option<Followed>)>> =
        modes.iter().map(|_| Vec::new()).collect();
    for repeat in 0..REPEATS {
        // Each round starts with another mode: no mode always runs first or last in
        // its round (after the previous run's workspace was removed, say).
        for turn in 0..modes.len() {
            let mode = (turn + repeat) % modes.len();
            let results = &mut runs[mode];
            eprintln!("dashboard: ingestion, {} (run {})", modes[mode], repeat + 1);
            let cluster = if mode > 0 {
                Cluster::start_with_dashboard(&config(WORKERS), &[]).await?
            } else {
                Cluster::start(&config(WORKERS), &[]).await?
            };
            let follower = match (&cluster.dashboard_url, mode) {
                (Some(url), 2) => Some(follow(url, &cluster.client_token)?),
                _ => None,
            };
            let ingested = ingest(&cluster, WORKERS).await?;
            cluster.shutdown().await;
            let followed = match follower {
                Some(handle) => Some(
                    tokio::task::spawn_blocking(move || handle.join())
                        .await?
                        .map_err(|_| anyhow::anyhow!("the SSE client panicked"))?,
                ),
                None => None,
            };
            results.push((ingested, followed));
        }
    }
    let rates = |results: &[(Ingested, Option<Followed>)]| -> Vec<f64> {
        results.iter().map(|(run, _)| run.points_per_s()).collect()
    };
    let cpu = |results: &[(Ingested, Option<Followed>)]| -> Vec<f64> {
        results
            .iter()
            .map(|(run, _)| run.cpu.coordinator_per(run.points).as_secs_f64() * 1e6)
            .collect()
    };
    let base_rate = median(&rates(&runs[0]));
    let base_cpu = cpu(&runs[0]);
    let mut rows = Vec::new();
    for (mode, results) in runs.iter_mut().enumerate() {
        let (rate, per_point) = (rates(results), cpu(results));
        let mut delays: Vec<Duration> = results
            .iter_mut()
            .flat_map(|(run, _)| run.delays.drain(..))
            .collect();
        let followed: Vec<(u64, &Followed)> = results
            .iter()
            .filter_map(|(run, followed)| followed.as_ref().map(|f| (run.points, f)))
            .collect();
        let followed = if followed.is_empty() {
            "-".to_owned()
        } else {
            let runs = followed.len() as f64;
            let share: f64 = followed
                .iter()
                .map(|(points, f)| f.points as f64 / (*points).max(1) as f64)
                .sum::<f64>()
                / runs;
            let messages = followed.iter().map(|(_, f)| f.messages).sum::<usize>() as f64 / runs;
            let bytes = followed.iter().map(|(_, f)| f.bytes).sum::<usize>() as f64 / runs;
            format!(
                "{:.3}% of points, {messages:.0} msgs, {:.0} KB",
                100.0 * share,
                bytes / 1e3
            )
        };
        rows.push(vec![
            modes[mode].to_owned(),
            spread(&rate, 0),
            format!("{:+.1}%", (median(&rate) / base_rate - 1.0) * 100.0),
            spread(&per_point, 3),
            // Paired: each run against the "off" run of the same round, which ran
            // seconds before under about the same load from other tenants.
            spread(
                &per_point
                    .iter()
                    .zip(&base_cpu)
                    .map(|(cpu, off)| (cpu / off - 1.0) * 100.0)
                    .collect::<Vec<_>>(),
                1,
            ),
            ms(quantile(&mut delays, 0.5)),
            ms(quantile(&mut delays, 0.99)),
            followed,
        ]);
    }
    let (probe, probe_messages, probe_kb) =
        tokio::task::spawn_blocking(watched_path_cost).await??;
    let off_cpu = median(&base_cpu);
    rows.push(vec![
        format!("the watched path alone: publish + stream, one thread, {PROBE_BATCHES} batches"),
        "-".to_owned(),
        "-".to_owned(),
        format!("{probe:.4}"),
        format!("{:+.1}", 100.0 * probe / off_cpu),
        "-".to_owned(),
        "-".to_owned(),
        format!("{probe_messages} msgs, {probe_kb:.0} KB"),
    ]);
    table(
        &format!(
            "Ingestion with the dashboard: {WORKERS} simulated workers, batches of 1000 points, {}s per run, {REPEATS} interleaved runs per row: median (min-max)",
            crate::ingest::RUN_FOR.as_secs()
        ),
        &[
            "coordinator",
            "points/s",
            "vs off",
            "coordinator CPU us/point",
            "CPU vs off, paired (%)",
            "ack p50",
            "ack p99",
            "the SSE client got (mean of runs)",
        ],
        &rows,
    );
    Ok(())
}

fn page_config() -> String {
    format!(
        "name: bench\nprimary_metric: {{name: score, goal: max}}\nmetrics: [score, loss]\n\
         job:\n  command: [\"true\"]\nmethods:\n{}stages:\n  baselines: {{seeds: {}}}\n",
        (0..PAGE_METHODS)
            .map(|m| format!("  m{m}: {{}}\n"))
            .collect::<String>(),
        PAGE_JOBS / PAGE_METHODS
    )
}

/// 64 workers of 4 slots lease 256 jobs; each gets 20 points of `loss`.
async fn populate(cluster: &Cluster) -> anyhow::Result<()> {
    let mut client = cluster.client()?;
    submit(&mut client, "baselines", false).await?;
    let mut tasks = Vec::new();
    for _ in 0..PAGE_WORKERS {
        let mut worker = cluster.worker()?;
        tasks.push(tokio::spawn(async move {
            let worker_id = register(&mut worker, 4).await?;
            let session = Session::new(worker.clone());
            let jobs = session
                .lease(v1::LeaseRequest {
                    worker_id: worker_id.clone(),
                    free_slots: 4,
                    wait_ms: 5000,
                })
                .await?
                .jobs;
            for job in jobs {
                let points = (0..20)
                    .map(|step| v1::MetricPoint {
                        seq: step,
                        name: "loss".to_owned(),
                        step,
                        value: 1.0 / (step as f64 + 1.0),
                        time_ms: 0,
                    })
                    .collect();
                worker
                    .report_metrics(v1::MetricBatch {
                        worker_id: worker_id.clone(),
                        job_id: job.job_id.clone(),
                        attempt: job.attempt,
                        points,
                    })
                    .await?;
            }
            // Kept: the workers' leases (they do not heartbeat; the lease is long).
            anyhow::Ok(session)
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(())
}

/// One GET with the bearer token: (status, body bytes, time to the last byte).
fn get(url: &str, path: &str, token: &str) -> anyhow::Result<(u16, usize, Duration)> {
    let host = url.trim_start_matches("http://").trim_end_matches('/');
    let started = Instant::now();
    let mut stream = TcpStream::connect(host)?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    )?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer)?;
    let elapsed = started.elapsed();
    let text = String::from_utf8_lossy(&answer);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map_or(0, |(_, body)| body.len());
    Ok((status, body, elapsed))
}

pub async fn page_load() -> anyhow::Result<()> {
    eprintln!("dashboard: page load, {PAGE_JOBS} jobs and {PAGE_WORKERS} workers");
    let cluster = Cluster::start_with_dashboard(&page_config(), &[]).await?;
    populate(&cluster).await?;
    let url = cluster
        .dashboard_url
        .clone()
        .ok_or_else(|| anyhow::anyhow!("no dashboard"))?;
    let token = cluster.client_token.clone();
    let mut rows = Vec::new();
    for path in [
        "/",
        "/app.js",
        "/api/overview",
        "/api/stages/baselines/jobs",
        "/api/stages/baselines/series?metric=loss",
        "/api/claims",
    ] {
        let (url, token, asked) = (url.clone(), token.clone(), path.to_owned());
        let (status, bytes, mut times) = tokio::task::spawn_blocking(move || {
            let mut times = Vec::new();
            let mut last = (0, 0);
            for _ in 0..PAGE_LOADS {
                let (status, bytes, elapsed) = get(&url, &asked, &token)?;
                times.push(elapsed);
                last = (status, bytes);
            }
            anyhow::Ok((last.0, last.1, times))
        })
        .await??;
        anyhow::ensure!(status == 200, "{path} answered {status}");
        rows.push(vec![
            format!("GET {path}"),
            format!("{:.0} KB", bytes as f64 / 1e3),
            ms(quantile(&mut times, 0.5)),
            ms(quantile(&mut times, 1.0)),
        ]);
    }
    let browser = {
        let (url, token) = (url.clone(), token.clone());
        tokio::task::spawn_blocking(move || browser_load(&url, &token)).await?
    };
    match browser {
        Ok((mut times, dom_rows)) => rows.push(vec![
            format!("Chromium: stage page, navigation → {PAGE_JOBS}-job table drawn ({dom_rows} rows in the DOM)"),
            "-".to_owned(),
            ms(quantile(&mut times, 0.5)),
            ms(quantile(&mut times, 1.0)),
        ]),
        Err(err) => eprintln!("dashboard: no browser measurement: {err:#}"),
    }
    cluster.shutdown().await;
    table(
        &format!("Dashboard page load: {PAGE_JOBS} jobs (256 running with 20 points each), {PAGE_WORKERS} workers; {PAGE_LOADS} loads each, median and max"),
        &["what", "size", "median", "max"],
        &rows,
    );
    Ok(())
}

/// Loads the stage page in headless Chromium `PAGE_LOADS` times; each time from
/// navigation start to the page's `expcluster:jobs-table` mark. Also returns how
/// many job rows the DOM held (the table draws those in view).
fn browser_load(url: &str, token: &str) -> anyhow::Result<(Vec<Duration>, u64)> {
    let installed = std::process::Command::new("sh")
        .args(["-c", "command -v chromium"])
        .output()
        .is_ok_and(|output| output.status.success());
    anyhow::ensure!(
        installed,
        "chromium is not installed (scripts/setup.sh installs it)"
    );
    let browser = expcluster_tests::browser::Browser::start();
    let mut page = browser.page();
    page.call("Network.enable", serde_json::json!({}));
    page.call(
        "Network.setExtraHTTPHeaders",
        serde_json::json!({"headers": {"Authorization": format!("Bearer {token}")}}),
    );
    let mut times = Vec::new();
    for load in 0..PAGE_LOADS {
        // A URL of its own each time: a new document, never the previous one (the
        // same URL again could be taken for a fragment change of the page shown).
        page.navigate(&format!("{url}?load={load}#/stage/baselines"));
        page.wait_for(
            "the jobs table",
            Duration::from_secs(60),
            &format!("location.search === '?load={load}' && document.querySelector('#jobs') && document.querySelector('#jobs').dataset.rows === '{PAGE_JOBS}' && performance.getEntriesByName('expcluster:jobs-table').length > 0"),
        );
        let mark = page.eval("performance.getEntriesByName('expcluster:jobs-table')[0].startTime");
        let ms = mark
            .as_f64()
            .ok_or_else(|| anyhow::anyhow!("no mark: {mark}"))?;
        eprintln!("dashboard: stage page drawn after {ms:.1} ms");
        times.push(Duration::from_secs_f64(ms / 1e3));
    }
    let dom_rows = page
        .eval("document.querySelectorAll('#jobs tbody tr[data-job]').length")
        .as_u64()
        .unwrap_or(0);
    anyhow::ensure!(
        dom_rows > 0 && dom_rows < PAGE_JOBS as u64 / 10,
        "the jobs table has {dom_rows} rows in the DOM for {PAGE_JOBS} jobs"
    );
    Ok((times, dom_rows))
}
