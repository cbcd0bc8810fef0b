//! Throughput of the tch trainer beside the same training in PyTorch eager, in one run.
//!
//! ```text
//! cargo run -p expcluster-trainer --release --example bench_vs_pytorch -- [options]
//!   --threads LIST  intra-op thread counts on both sides, e.g. 1,2 (default 1);
//!                   every case runs at each count
//!   --rounds N      rounds; each runs every case and count on both sides
//!                   (default 5, CUDA 3)
//!   --cases LIST    e.g. 512x512,128x512 (default: the device's cases); a case
//!                   written 512x512@2 runs at 2 threads only, whatever --threads
//!   --packing LIST  instead: aggregate steps/s of N trainer jobs at once on one
//!                   device, for each N in LIST (e.g. 1,4,8), as a worker with
//!                   `--slots-per-gpu N` runs them (threads of one process)
//! ```
//!
//! `BENCH_DEVICE=cuda` runs on `cuda:0` with the GPU cases (`scripts/gpu-check.sh`).
//!
//! Both sides train the same MLP (784-h-h-10, ReLU, Adam lr 1e-3, cross-entropy) on
//! the same data (an npz the PyTorch side writes and the trainer reads), seed 0 each,
//! the same batch size and intra-op thread count. The tch side is the real trainer
//! ([`TchTrainer`]); its per-epoch `samples_per_sec` covers the training steps (the
//! epoch's batches and its one loss read), not evaluation. The PyTorch side
//! (`bench_vs_pytorch.py`, a child process kept for the whole run) times the same
//! steps the same way. Every figure is steps/s of an epoch after a warm-up epoch.
//!
//! The sides take turns epoch by epoch: in each round both start the case afresh,
//! then one trains an epoch, the other an epoch, and so on (the trainer hands over
//! from its metric sink at each epoch's end, while its clock is stopped), who goes
//! first swapping each round. So each of one side's timed epochs lies beside one of
//! the other's, well under a second apart, and load from other processes, which comes
//! and goes over seconds, falls on both. A round's figure is the median of its timed
//! epochs; the table gives the median over rounds and the spread (min–max); the ratio
//! is the median of the per-round ratios. With one intra-op thread on the CPU a second
//! row gives steps per CPU-second of the training thread, which a shared machine's
//! load moves much less than steps/s (it still moves it: other tenants share the
//! caches). The trainer's CPU time is read when it emits an epoch's metrics, so it
//! includes the epoch's evaluation, which the PyTorch loop does not run: the test
//! split is kept to [`TEST_ROWS`] rows, so that evaluation costs about 0.3% of an
//! epoch's CPU (with 256 rows it cost about 2% at b512/h512, an underestimate of the
//! trainer's rate). The header gives the load average before and after, since other
//! tenants move the figures. A CPU run lists the GPU rows too, as unmeasured, saying
//! why.
//!
//! It reports; it never judges: a ratio under its goal is marked in the table, and
//! the exit status is non-zero only when the benchmark could not run (no PyTorch, a
//! crash), which is how `scripts/bench-cpu.sh` (CI's run) uses it.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use expcluster_trainer::{DeviceChoice, MetricSink, TchTrainer, TrainJob, Trainer, TrainerSpec};
use nix::time::{clock_gettime, ClockId};
use serde_json::json;

const FEATURES: usize = 784;
const CLASSES: usize = 10;
/// Rows of the test split. Only the trainer evaluates it (once an epoch, inside its
/// CPU-time window; the PyTorch loop does not), so it is kept small.
const TEST_ROWS: usize = 32;
const SEED: u64 = 0;

/// One row of the table: an MLP shape, a precision and the issue's goal for it.
#[derive(Debug, Clone, Copy)]
struct Case {
    batch: usize,
    hidden: usize,
    bf16: bool,
    /// Minimum trainer/PyTorch ratio, when the issue sets one.
    goal: Option<f64>,
    /// The one intra-op thread count this case runs at (`@N`), instead of each of
    /// `--threads`.
    threads: Option<usize>,
}

impl Case {
    const fn new(batch: usize, hidden: usize, bf16: bool, goal: Option<f64>) -> Case {
        Case {
            batch,
            hidden,
            bf16,
            goal,
            threads: None,
        }
    }

    fn precision(&self) -> &'static str {
        if self.bf16 {
            "bf16"
        } else {
            "fp32"
        }
    }

    /// Multiply-adds of one sample's forward pass; a training step is about 3× that
    /// (forward, and two matmuls per layer backward), so 6 × params FLOPs per sample.
    fn params(&self) -> f64 {
        let h = self.hidden as f64;
        (FEATURES as f64 + 1.0) * h + (h + 1.0) * h + (h + 1.0) * CLASSES as f64
    }
}

const CPU_CASES: [Case; 4] = [
    Case::new(64, 256, false, None),
    Case::new(128, 512, false, None),
    Case::new(512, 512, false, Some(1.15)),
    Case::new(1024, 1024, false, None),
];
const CUDA_CASES: [Case; 3] = [
    Case::new(128, 512, false, Some(1.25)),
    Case::new(1024, 1024, false, Some(1.25)),
    Case::new(8192, 4096, true, Some(1.0)),
];
/// The H200's measured bf16 matmul peak (docs: TOOLCHAIN), for the bf16 row's share.
const H200_BF16_PEAK_TFLOPS: f64 = 790.0;
/// Epochs per run: the first is a warm-up, the rest are timed.
const EPOCHS: usize = 4;

struct Options {
    threads: Vec<usize>,
    rounds: usize,
    cases: Vec<Case>,
    packing: Option<Vec<usize>>,
    cuda: bool,
}

fn parse_options() -> Result<Options, String> {
    let cuda = std::env::var("BENCH_DEVICE").is_ok_and(|device| device == "cuda");
    let mut options = Options {
        threads: vec![1],
        rounds: if cuda { 3 } else { 5 },
        cases: if cuda {
            CUDA_CASES.to_vec()
        } else {
            CPU_CASES.to_vec()
        },
        packing: None,
        cuda,
    };
    let mut args = std::env::args().skip(1);
    let number = |value: Option<String>, name: &str| -> Result<usize, String> {
        value
            .and_then(|v| v.parse().ok())
            .filter(|&n: &usize| n > 0)
            .ok_or_else(|| format!("{name} takes a positive number"))
    };
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--threads" => {
                let list = args.next().ok_or("--threads takes a list like 1,2")?;
                options.threads = list
                    .split(',')
                    .map(|n| number(Some(n.to_owned()), "--threads"))
                    .collect::<Result<_, _>>()?;
            }
            "--rounds" => options.rounds = number(args.next(), "--rounds")?,
            "--cases" => {
                let list = args.next().ok_or("--cases takes a list like 512x512")?;
                options.cases = list
                    .split(',')
                    .map(|case| parse_case(case, &options.cases))
                    .collect::<Result<_, _>>()?;
            }
            "--packing" => {
                let list = args.next().ok_or("--packing takes a list like 1,4,8")?;
                let jobs = list
                    .split(',')
                    .map(|n| number(Some(n.to_owned()), "--packing"))
                    .collect::<Result<_, _>>()?;
                options.packing = Some(jobs);
            }
            // The old form: a bare thread count.
            other if other.parse::<usize>().is_ok() => {
                options.threads = vec![number(Some(arg), "")?]
            }
            other => {
                return Err(format!(
                    "unknown argument {other}; see the example's header"
                ))
            }
        }
    }
    Ok(options)
}

/// `BATCHxHIDDEN` or `BATCHxHIDDEN:bf16`, either followed by `@THREADS`; a known case
/// keeps its goal.
fn parse_case(text: &str, known: &[Case]) -> Result<Case, String> {
    let bad = || {
        format!(
            "case {text:?}: expected BATCHxHIDDEN or BATCHxHIDDEN:bf16, optionally with @THREADS"
        )
    };
    let (case_text, threads) = match text.split_once('@') {
        Some((case, threads)) => {
            let threads = threads.parse().ok().filter(|&n: &usize| n > 0);
            (case, Some(threads.ok_or_else(bad)?))
        }
        None => (text, None),
    };
    let (shape, bf16) = match case_text.split_once(':') {
        Some((shape, "bf16")) => (shape, true),
        Some(_) => return Err(bad()),
        None => (case_text, false),
    };
    let (batch, hidden) = shape.split_once('x').ok_or_else(bad)?;
    let (batch, hidden) = (
        batch.parse().map_err(|_| bad())?,
        hidden.parse().map_err(|_| bad())?,
    );
    let goal = known
        .iter()
        .chain(CPU_CASES.iter())
        .find(|case| case.batch == batch && case.hidden == hidden && case.bf16 == bf16)
        .and_then(|case| case.goal);
    Ok(Case {
        threads,
        ..Case::new(batch, hidden, bf16, goal)
    })
}

/// The PyTorch side: the child process and its pipes.
struct PyTorch {
    child: Child,
    input: ChildStdin,
    output: BufReader<ChildStdout>,
}

impl PyTorch {
    fn start() -> Result<PyTorch, String> {
        let python = python();
        if !python.exists() {
            return Err(format!(
                "{} not found: run scripts/setup.sh (or set EXPCLUSTER_PYTHON)",
                python.display()
            ));
        }
        // Relative to the repository root when run from there (the GPU machine has the
        // tree at another path than the build machine).
        let relative = PathBuf::from("trainer/examples/bench_vs_pytorch.py");
        let script = if relative.exists() {
            relative
        } else {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/bench_vs_pytorch.py")
        };
        let mut child = Command::new(&python)
            .arg(&script)
            // numpy's own BLAS threads would spin beside the measured ones.
            .env("OPENBLAS_NUM_THREADS", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|err| format!("{}: {err}", python.display()))?;
        let input = child.stdin.take().ok_or("no stdin")?;
        let output = BufReader::new(child.stdout.take().ok_or("no stdout")?);
        Ok(PyTorch {
            child,
            input,
            output,
        })
    }

    fn ask(&mut self, command: &str) -> Result<String, String> {
        writeln!(self.input, "{command}").map_err(|err| err.to_string())?;
        let mut answer = String::new();
        self.output
            .read_line(&mut answer)
            .map_err(|err| err.to_string())?;
        if answer.is_empty() {
            return Err(format!("the PyTorch side exited on `{command}`"));
        }
        Ok(answer.trim().to_owned())
    }

    /// A fresh model and optimizer for `case`, seeded, at `threads` intra-op threads.
    fn start_case(&mut self, case: &Case, threads: usize, cuda: bool) -> Result<(), String> {
        let device = if cuda { "cuda:0" } else { "cpu" };
        let answer = self.ask(&format!(
            "start {threads} {device} {} {} {} {SEED}",
            case.batch,
            case.hidden,
            case.precision()
        ))?;
        match answer.as_str() {
            "ok" => Ok(()),
            _ => Err(format!(
                "the PyTorch side could not start the case: {answer}"
            )),
        }
    }

    /// One epoch of the started model: its steps/s and steps per CPU-second.
    fn epoch(&mut self) -> Result<Rate, String> {
        let answer = self.ask("epoch")?;
        let rates: Vec<f64> = answer
            .split_whitespace()
            .map(|rate| rate.parse().map_err(|_| format!("bad answer {answer:?}")))
            .collect::<Result<_, _>>()?;
        match rates[..] {
            [wall, cpu] => Ok(Rate { wall, cpu }),
            _ => Err(format!("bad answer {answer:?}")),
        }
    }
}

impl Drop for PyTorch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn python() -> PathBuf {
    std::env::var_os("EXPCLUSTER_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                .join(".cache/expcluster/venv/bin/python")
        })
}

/// One side's figure for one run: the median over its timed epochs of steps/s, and
/// of steps per CPU-second of the training thread, or with several intra-op threads
/// of the whole process (which other processes' load barely moves: equal to steps/s
/// on an idle machine with one intra-op thread; with several it counts the work, and
/// OpenMP's spin-waiting unless OMP_WAIT_POLICY=PASSIVE).
#[derive(Debug, Clone, Copy)]
struct Rate {
    wall: f64,
    cpu: f64,
}

/// Per-epoch `samples_per_sec` as the trainer emits it, and the training thread's
/// (or with `all_threads` the process's) CPU time when it does (the sink runs on that
/// thread at the end of each epoch; the difference between two epochs includes the
/// later one's evaluation of the few test rows). With `pytorch` set, each epoch's end
/// then hands over to the PyTorch side for one epoch of its own (up to [`EPOCHS`]):
/// the trainer's thread waits on the pipe, using no CPU, and its wall clock for the
/// next epoch starts after the wait.
#[derive(Default)]
struct Throughput<'a> {
    all_threads: bool,
    samples_per_sec: Vec<f64>,
    cpu_seconds_at: Vec<f64>,
    pytorch: Option<&'a mut PyTorch>,
    pytorch_epochs: Vec<Rate>,
    pytorch_error: Option<String>,
}

impl Throughput<'_> {
    /// One PyTorch epoch, unless it has had all of them or failed.
    fn pytorch_turn(&mut self) {
        let Some(pytorch) = self.pytorch.as_deref_mut() else {
            return;
        };
        if self.pytorch_epochs.len() >= EPOCHS || self.pytorch_error.is_some() {
            return;
        }
        match pytorch.epoch() {
            Ok(rate) => self.pytorch_epochs.push(rate),
            Err(err) => self.pytorch_error = Some(err),
        }
    }
}

impl MetricSink for Throughput<'_> {
    fn emit(&mut self, name: &str, value: f64) {
        if name == "samples_per_sec" {
            self.samples_per_sec.push(value);
            self.cpu_seconds_at.push(if self.all_threads {
                process_cpu_seconds()
            } else {
                thread_cpu_seconds()
            });
            self.pytorch_turn();
        }
    }
}

/// This process's CPU time, every thread's (the intra-op threads count too; the
/// bench's process does nothing else while it trains): `CLOCK_PROCESS_CPUTIME_ID`,
/// the clock of the PyTorch side's `time.process_time`.
fn process_cpu_seconds() -> f64 {
    cpu_clock(ClockId::CLOCK_PROCESS_CPUTIME_ID)
}

/// This thread's CPU time: `CLOCK_THREAD_CPUTIME_ID`, the clock of the PyTorch side's
/// `time.thread_time`. (Not `/proc/thread-self/schedstat`, which lags the running
/// thread's time by up to a scheduler tick.)
fn thread_cpu_seconds() -> f64 {
    cpu_clock(ClockId::CLOCK_THREAD_CPUTIME_ID)
}

fn cpu_clock(clock: ClockId) -> f64 {
    clock_gettime(clock).map_or(f64::NAN, |now| {
        now.tv_sec() as f64 + now.tv_nsec() as f64 / 1e9
    })
}

fn trainer_spec(case: &Case, threads: usize, epochs: usize) -> Result<TrainerSpec, String> {
    TrainerSpec::from_json(&json!({
        "dataset": {"kind": "npz", "path": "bench.npz"},
        "model": {"kind": "mlp", "hidden": [case.hidden, case.hidden]},
        "optimizer": {"kind": "adam", "lr": 1.0e-3},
        "epochs": epochs, "batch_size": case.batch, "threads": threads,
        "checkpoint_every": epochs, "precision": case.precision(),
    }))
}

/// Trains one job in this thread, emitting into `sink`.
fn train(
    spec: &TrainerSpec,
    data: &Path,
    cuda: bool,
    sink: &mut Throughput<'_>,
) -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|err| err.to_string())?;
    let cancel = AtomicBool::new(false);
    let job = TrainJob {
        spec,
        seed: SEED,
        device: if cuda {
            DeviceChoice::Cuda(0)
        } else {
            DeviceChoice::Cpu
        },
        data_root: data,
        output_dir: dir.path(),
        checkpoint_dir: &dir.path().join("ckpt"),
        cancel: &cancel,
        distributed: None,
    };
    TchTrainer
        .train(&job, sink)
        .map_err(|err| err.to_string())?;
    Ok(())
}

/// One round of a case: both sides start it afresh and train [`EPOCHS`] epochs each,
/// taking turns epoch by epoch (PyTorch's first epoch before the trainer's when
/// `pytorch_first`); each side's median over its epochs after the first.
fn round(
    case: &Case,
    threads: usize,
    options: &Options,
    data: &Path,
    pytorch: &mut PyTorch,
    pytorch_first: bool,
) -> Result<(Rate, Rate), String> {
    let spec = trainer_spec(case, threads, EPOCHS)?;
    pytorch.start_case(case, threads, options.cuda)?;
    let mut run = Throughput {
        all_threads: threads > 1,
        pytorch: Some(pytorch),
        ..Throughput::default()
    };
    if pytorch_first {
        run.pytorch_turn();
    }
    train(&spec, data, options.cuda, &mut run)?;
    while run.pytorch_epochs.len() < EPOCHS && run.pytorch_error.is_none() {
        run.pytorch_turn();
    }
    if let Some(err) = run.pytorch_error {
        return Err(err);
    }
    let steps_per_epoch = rows(options).div_ceil(case.batch) as f64;
    let wall: Vec<f64> = run.samples_per_sec[1..]
        .iter()
        .map(|samples| samples / case.batch as f64)
        .collect();
    let cpu: Vec<f64> = run
        .cpu_seconds_at
        .windows(2)
        .map(|pair| steps_per_epoch / (pair[1] - pair[0]))
        .collect();
    let none = || "the trainer emitted no timed epochs".to_owned();
    let ours = Rate {
        wall: median(&wall).ok_or_else(none)?,
        cpu: median(&cpu).ok_or_else(none)?,
    };
    let timed = &run.pytorch_epochs[1..];
    let theirs = Rate {
        wall: median(&timed.iter().map(|rate| rate.wall).collect::<Vec<_>>())
            .ok_or("the PyTorch side ran no timed epochs")?,
        cpu: median(&timed.iter().map(|rate| rate.cpu).collect::<Vec<_>>())
            .ok_or("the PyTorch side ran no timed epochs")?,
    };
    Ok((ours, theirs))
}

fn median(values: &[f64]) -> Option<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(sorted[n / 2]),
        _ => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2.0),
    }
}

/// `median (min–max)`.
fn summary(values: &[f64], digits: usize) -> String {
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mid = median(values).unwrap_or(f64::NAN);
    format!("{mid:.digits$} ({min:.digits$}–{max:.digits$})")
}

/// Training rows: on CUDA enough that the largest batch still makes 16 steps an
/// epoch (each epoch ends with one host read, which must not dominate).
fn rows(options: &Options) -> usize {
    if options.cuda {
        131_072
    } else {
        8192
    }
}

/// One row of the comparison: a case at an intra-op thread count.
#[derive(Debug, Clone, Copy)]
struct Setting {
    case: Case,
    threads: usize,
}

/// A row whose per-round ratios span more than this factor (max / min) is marked
/// unstable rather than judged against its goal: on shared cores a 2-thread round can
/// lose a thread to another tenant on one side only.
const UNSTABLE_SPREAD: f64 = 1.5;

fn compare(options: &Options) -> Result<(), String> {
    let load_before = load_average();
    let mut pytorch = PyTorch::start()?;
    let data = tempfile::tempdir().map_err(|err| err.to_string())?;
    let answer = pytorch.ask(&format!(
        "data {} {} {TEST_ROWS} {FEATURES} {CLASSES} {SEED}",
        data.path().join("bench.npz").display(),
        rows(options),
    ))?;
    if answer != "ok" {
        return Err(format!(
            "the PyTorch side could not write the data: {answer}"
        ));
    }
    let mut settings: Vec<Setting> = options
        .cases
        .iter()
        .flat_map(|&case| {
            let counts = case.threads.map_or(options.threads.clone(), |n| vec![n]);
            counts
                .into_iter()
                .map(move |threads| Setting { case, threads })
        })
        .collect();
    // Rows grouped by thread count, cases in the order given.
    settings.sort_by_key(|setting| setting.threads);
    let mut ours = vec![Vec::new(); settings.len()];
    let mut theirs = vec![Vec::new(); settings.len()];
    for turn in 0..options.rounds {
        for (i, setting) in settings.iter().enumerate() {
            let (case, threads) = (&setting.case, setting.threads);
            // Swap who goes first every round.
            let pytorch_first = turn % 2 == 1;
            let (a, b) = round(
                case,
                threads,
                options,
                data.path(),
                &mut pytorch,
                pytorch_first,
            )?;
            ours[i].push(a);
            theirs[i].push(b);
            eprintln!(
                "round {}/{}: {}x{} {}, {threads} thread(s): trainer {:.1}, PyTorch {:.1} steps/s; per CPU-second {:.1}, {:.1}",
                turn + 1,
                options.rounds,
                case.batch,
                case.hidden,
                case.precision(),
                a.wall,
                b.wall,
                a.cpu,
                b.cpu
            );
        }
    }
    let device = if options.cuda { "cuda:0" } else { "CPU" };
    let mut threads: Vec<usize> = settings.iter().map(|setting| setting.threads).collect();
    threads.dedup();
    let threads: Vec<String> = threads.iter().map(usize::to_string).collect();
    println!(
        "MLP {FEATURES}-h-h-{CLASSES}, Adam, {device}, intra-op threads {}, {} rounds, {} CPUs, \
         OMP_WAIT_POLICY={}; load average {load_before} before, {} after; steps/s, median (min–max)",
        threads.join(","),
        options.rounds,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        std::env::var("OMP_WAIT_POLICY").unwrap_or_else(|_| "unset".to_owned()),
        load_average(),
    );
    println!("| case | trainer | PyTorch eager | ratio | goal |");
    println!("|---|---|---|---|---|");
    for (i, setting) in settings.iter().enumerate() {
        let (case, threads) = (&setting.case, setting.threads);
        let label = if options.cuda {
            format!(
                "{device}, b{}/h{}, {}",
                case.batch,
                case.hidden,
                case.precision()
            )
        } else {
            let plural = if threads == 1 { "" } else { "s" };
            format!(
                "{device} {threads} thread{plural}, b{}/h{}, {}",
                case.batch,
                case.hidden,
                case.precision()
            )
        };
        let wall = |rates: &[Rate]| rates.iter().map(|rate| rate.wall).collect::<Vec<_>>();
        let (ours_wall, theirs_wall) = (wall(&ours[i]), wall(&theirs[i]));
        print_row(&label, &ours_wall, &theirs_wall, case.goal);
        if !options.cuda {
            let cpu = |rates: &[Rate]| rates.iter().map(|rate| rate.cpu).collect::<Vec<_>>();
            let label = if threads == 1 {
                format!("{label}, per CPU-second")
            } else {
                format!("{label}, per CPU-second of all threads")
            };
            print_row(&label, &cpu(&ours[i]), &cpu(&theirs[i]), case.goal);
        }
        if case.bf16 {
            let tflops = |steps: &[f64]| -> Vec<f64> {
                let per_step = 6.0 * case.params() * case.batch as f64 / 1e12;
                steps.iter().map(|s| s * per_step).collect()
            };
            let (a, b) = (tflops(&ours_wall), tflops(&theirs_wall));
            let share = median(&a).unwrap_or(f64::NAN) / H200_BF16_PEAK_TFLOPS;
            println!(
                "| {label}, TFLOP/s | {} | {} | - | trainer ≥ 75% of {H200_BF16_PEAK_TFLOPS} (H200 peak): {:.0}% |",
                summary(&a, 0),
                summary(&b, 0),
                share * 100.0
            );
        }
    }
    if !options.cuda {
        print_unmeasured_gpu_rows();
    }
    Ok(())
}

/// One table row: both sides' figures, the per-round ratios, and the goal with
/// whether the median ratio meets it (a report, never a failure).
fn print_row(label: &str, ours: &[f64], theirs: &[f64], goal: Option<f64>) {
    let ratios: Vec<f64> = ours.iter().zip(theirs).map(|(a, b)| a / b).collect();
    let ratio = median(&ratios).unwrap_or(f64::NAN);
    let min = ratios.iter().copied().fold(f64::INFINITY, f64::min);
    let max = ratios.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let verdict = match goal {
        None => "-".to_owned(),
        Some(goal) if max / min > UNSTABLE_SPREAD => format!(
            "≥ {goal:.2}: not judged, per-round ratios {min:.2}–{max:.2} (load from other processes)"
        ),
        Some(goal) if ratio >= goal => format!("≥ {goal:.2}: met"),
        Some(goal) => format!("≥ {goal:.2}: NOT met"),
    };
    println!(
        "| {label} | {} | {} | {} | {verdict} |",
        summary(ours, 1),
        summary(theirs, 1),
        summary(&ratios, 2),
    );
}

/// The GPU rows of a CPU run, saying why they have no figures.
fn print_unmeasured_gpu_rows() {
    let why = if tch::Cuda::is_available() {
        "not measured in a CPU run: BENCH_DEVICE=cuda (scripts/gpu-check.sh)"
    } else {
        "not measured: no GPU"
    };
    for case in CUDA_CASES {
        let goal = case
            .goal
            .map_or("-".to_owned(), |goal| format!("≥ {goal:.2}"));
        let label = format!(
            "cuda:0, b{}/h{}, {}",
            case.batch,
            case.hidden,
            case.precision()
        );
        println!("| {label} | {why} | {why} | - | {goal} |");
        if case.bf16 {
            println!(
                "| {label}, TFLOP/s | {why} | {why} | - | trainer ≥ 75% of {H200_BF16_PEAK_TFLOPS} (H200 peak) |"
            );
        }
    }
}

/// `/proc/loadavg`'s 1, 5 and 15 minute figures (empty off Linux).
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

/// N copies of a small job at once, each in its own thread on the one device.
fn packing(options: &Options, counts: &[usize]) -> Result<(), String> {
    let mut pytorch = PyTorch::start()?;
    let data = tempfile::tempdir().map_err(|err| err.to_string())?;
    pytorch.ask(&format!(
        "data {} {} {TEST_ROWS} {FEATURES} {CLASSES} {SEED}",
        data.path().join("bench.npz").display(),
        rows(options),
    ))?;
    drop(pytorch);
    let case = Case::new(128, 512, false, None);
    let epochs = 3;
    let threads = options.threads.first().copied().unwrap_or(1);
    let spec = trainer_spec(&case, threads, epochs)?;
    let steps_per_job = epochs * rows(options).div_ceil(case.batch);
    let device = if options.cuda { "cuda:0" } else { "CPU" };
    println!(
        "Packing: N trainer jobs at once on {device} (threads of one process, as \
         `--slots-per-gpu N`), each MLP b128/h512 fp32, {epochs} epochs of {} rows",
        rows(options)
    );
    println!(
        "| jobs | aggregate steps/s (wall, start-up included) | per job, median of its epochs | × the first row |"
    );
    println!("|---|---|---|---|");
    let mut first = None;
    for &jobs in counts {
        let began = Instant::now();
        let results: Vec<Result<Throughput, String>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..jobs)
                .map(|_| {
                    scope.spawn(|| {
                        let mut run = Throughput::default();
                        train(&spec, data.path(), options.cuda, &mut run).map(|()| run)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|handle| handle.join().map_err(|_| "a job panicked".to_owned())?)
                .collect()
        });
        let wall = began.elapsed().as_secs_f64();
        let mut per_job = Vec::new();
        for run in results {
            let rates = run?.samples_per_sec;
            per_job.push(median(&rates[1..]).unwrap_or(f64::NAN) / case.batch as f64);
        }
        let aggregate = (jobs * steps_per_job) as f64 / wall;
        let base = *first.get_or_insert(aggregate);
        println!(
            "| {jobs} | {aggregate:.1} | {} | {:.2}× |",
            summary(&per_job, 1),
            aggregate / base
        );
    }
    Ok(())
}

fn main() -> Result<(), String> {
    let options = parse_options()?;
    match &options.packing {
        Some(counts) => packing(&options, counts),
        None => compare(&options),
    }
}
