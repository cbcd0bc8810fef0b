//! Hostile input from a worker (RELIABILITY.md cases 18–20): traversal names, planted
//! symlinks, reports for another worker's attempt, oversized messages and malformed
//! `.npy` files. The worker side is this test calling the gRPC API directly with a
//! registered worker's identity, as a compromised worker could.

use crate::security::{clients, config, security, token, tree, RUNFILE};
use expcluster_proto::v1;
use expcluster_tests::{assert_success, start_coordinator, start_worker, submit_to, TestWorkspace};
use expcluster_worker::client::{channel, ProtocolHeader, WorkerClient};
use tonic::Code;

/// A valid little-endian float64 `.npy` of `values` (header `(len,)`, or `shape`).
fn npy(values: &[f64], shape: &str) -> Vec<u8> {
    let mut header = format!("{{'descr': '<f8', 'fortran_order': False, 'shape': {shape}, }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend((header.len() as u16).to_le_bytes());
    bytes.extend(header.as_bytes());
    for value in values {
        bytes.extend(value.to_le_bytes());
    }
    bytes
}

pub struct Leased {
    pub worker: WorkerClient,
    pub worker_id: String,
    pub job_id: String,
    pub attempt: u32,
    pub fingerprint: String,
}

/// Submits the implementation stage with the client token.
pub async fn submit_implementation(address: &str, ws: &TestWorkspace) -> v1::SubmitStageResponse {
    let (_, mut client) = clients(address, &security(Some(&token(&ws.root, "client"))));
    client
        .submit_stage(v1::SubmitStageRequest {
            stage: "implementation".into(),
            rerun: false,
            seeds_for_power: false,
        })
        .await
        .unwrap()
        .into_inner()
}

/// Submits the implementation stage and leases its job as a new worker.
pub async fn lease_the_job(address: &str, ws: &TestWorkspace) -> Leased {
    submit_implementation(address, ws).await;
    let (mut worker, _) = clients(address, &security(Some(&token(&ws.root, "worker"))));
    let worker_id = worker
        .register(v1::RegisterRequest {
            hostname: "node".into(),
            slots: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .worker_id;
    let spec = worker
        .lease(v1::LeaseRequest {
            worker_id: worker_id.clone(),
            free_slots: 1,
            wait_ms: 5_000,
        })
        .await
        .unwrap()
        .into_inner()
        .jobs
        .pop()
        .expect("a job to lease");
    Leased {
        worker,
        worker_id,
        job_id: spec.job_id,
        attempt: spec.attempt,
        fingerprint: spec.fingerprint,
    }
}

fn upload(leased: &Leased, name: &str, content: Vec<u8>) -> v1::ArtifactUpload {
    v1::ArtifactUpload {
        worker_id: leased.worker_id.clone(),
        job_id: leased.job_id.clone(),
        attempt: leased.attempt,
        name: name.to_owned(),
        content,
        kind: v1::ArtifactKind::Result as i32,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traversal_names_and_bad_arrays_are_refused_and_nothing_lands_outside_the_job() {
    let ws = TestWorkspace::new(
        "traversal",
        &config("traversal"),
        &[("runfile.py", RUNFILE)],
    );
    let (_coordinator, address) = start_coordinator(&ws.root, &[]);
    let mut leased = lease_the_job(&address, &ws).await;
    let around = ws.root.parent().unwrap().to_path_buf();
    let outside = around.join("outside.npy");
    let long = format!("{}.npy", "a".repeat(4092));
    let corpus: Vec<String> = [
        "../x",
        "../x.npy",
        "/etc/passwd",
        "a/../../b",
        "a/../../b.npy",
        "..%2f..%2fetc",
        "..%2f..%2fetc.npy",
        "x\0y",
        "x\0y.npy",
        ".",
        "..",
        "",
        ".npy",
        "sub/x.npy",
        "..\\x.npy",
        "x.npy/",
        "./x.npy",
        "~/x.npy",
        "x.npy\n",
        " x.npy",
    ]
    .iter()
    .map(|name| name.to_string())
    .chain([outside.display().to_string(), long])
    .collect();
    let before = tree(&around);
    for name in &corpus {
        let err = leased
            .worker
            .upload_artifact(upload(&leased, name, npy(&[1.0, 2.0], "(2,)")))
            .await
            .expect_err(name);
        assert_eq!(err.code(), Code::InvalidArgument, "{name:?}: {err:?}");
    }
    // Malformed arrays under a good name: bad magic, truncated body, shape disagreeing with the body.
    let mut truncated = npy(&[1.0, 2.0, 3.0], "(3,)");
    truncated.truncate(truncated.len() - 3);
    let bad_arrays = [
        b"PK\x03\x04 not numpy".to_vec(),
        truncated,
        npy(&[1.0, 2.0], "(3,)"),
        npy(&[1.0, 2.0], "(2, 2)"),
        Vec::new(),
    ];
    for (index, content) in bad_arrays.into_iter().enumerate() {
        let err = leased
            .worker
            .upload_artifact(upload(&leased, "arr.npy", content))
            .await
            .expect_err("bad array");
        assert_eq!(
            err.code(),
            Code::InvalidArgument,
            "bad array {index}: {err:?}"
        );
    }
    assert_eq!(
        tree(&around),
        before,
        "a refused upload created or changed a file"
    );
    assert!(!outside.exists());

    // The same identity with a plain name is stored, inside the job's own directory.
    let ack = leased
        .worker
        .upload_artifact(upload(&leased, "good.npy", npy(&[1.0, 2.0], "(2,)")))
        .await
        .unwrap()
        .into_inner();
    let job_dir = format!(
        "experiment_results/jobs/{}/{}",
        leased.job_id, leased.fingerprint
    );
    assert_eq!(ack.stored_as, format!("{job_dir}/good.npy"));
    let changed: Vec<_> = tree(&around)
        .into_keys()
        .filter(|path| !before.contains_key(path))
        .collect();
    assert!(
        changed
            .iter()
            .all(|path| path.starts_with(ws.path(&job_dir))
                || path.starts_with(ws.path(".expcluster"))),
        "{changed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_workers_reports_are_permission_denied_and_change_nothing() {
    let ws = TestWorkspace::new("fencing", &config("fencing"), &[("runfile.py", RUNFILE)]);
    let (_coordinator, address) = start_coordinator(&ws.root, &[]);
    let owner = lease_the_job(&address, &ws).await;
    let (mut other, _) = clients(&address, &security(Some(&token(&ws.root, "worker"))));
    let other_id = other
        .register(v1::RegisterRequest {
            hostname: "other".into(),
            slots: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .worker_id;
    let before = tree(&ws.root);
    let metrics = other
        .report_metrics(v1::MetricBatch {
            worker_id: other_id.clone(),
            job_id: owner.job_id.clone(),
            attempt: owner.attempt,
            points: vec![v1::MetricPoint {
                seq: 0,
                name: "test_accuracy".into(),
                step: 0,
                value: 1.0,
                time_ms: 0,
            }],
        })
        .await
        .unwrap_err();
    let mut artifact = upload(&owner, "good.npy", npy(&[1.0], "(1,)"));
    artifact.worker_id = other_id.clone();
    let uploaded = other.upload_artifact(artifact).await.unwrap_err();
    let completed = other
        .complete(v1::CompleteRequest {
            worker_id: other_id,
            job_id: owner.job_id.clone(),
            attempt: owner.attempt,
            outcome: v1::Outcome::Succeeded as i32,
            ..Default::default()
        })
        .await
        .unwrap_err();
    for (rpc, err) in [
        ("ReportMetrics", metrics),
        ("UploadArtifact", uploaded),
        ("Complete", completed),
    ] {
        assert_eq!(err.code(), Code::PermissionDenied, "{rpc}: {err:?}");
    }
    assert_eq!(tree(&ws.root), before);
    assert!(ws.events_of("job_completed").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_64_mib_message_is_resource_exhausted_without_buffering_it() {
    let ws = TestWorkspace::new(
        "oversized",
        &config("oversized"),
        &[("runfile.py", RUNFILE)],
    );
    let (coordinator, address) = start_coordinator(&ws.root, &[]);
    let leased = lease_the_job(&address, &ws).await;
    let huge = vec![0u8; 64 * 1024 * 1024];
    // A client without the workers' 16 MiB send limit.
    let raw = |token: Option<&str>| {
        let security = security(token);
        v1::worker_service_client::WorkerServiceClient::with_interceptor(
            channel(&address, &security).unwrap(),
            ProtocolHeader::new(&security),
        )
        .max_encoding_message_size(usize::MAX)
    };
    let before = tree(&ws.root);
    // The binary maps libtorch (hundreds of MiB): what matters is the growth.
    let peak_before = peak_kib(coordinator.pid());
    let err = raw(Some(&token(&ws.root, "worker")))
        .upload_artifact(upload(&leased, "big.npy", huge.clone()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    let err = raw(None)
        .upload_artifact(upload(&leased, "big.npy", huge))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
    assert_eq!(tree(&ws.root), before);
    let grown_kib = peak_kib(coordinator.pid()) - peak_before;
    eprintln!("coordinator peak resident memory grew by {grown_kib} KiB over two 64 MiB messages");
    assert!(
        grown_kib < 16 * 1024,
        "the coordinator's peak memory grew by {grown_kib} KiB: the message was buffered"
    );
}

/// The peak resident memory (VmHWM) of a process, in KiB.
fn peak_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[test]
fn a_job_planting_symlinks_in_its_output_gets_none_of_them_stored() {
    let outside_dir = tempfile::tempdir().unwrap();
    let target = outside_dir.path().join("secret.npy");
    std::fs::write(&target, npy(&[42.0], "(1,)")).unwrap();
    let runfile = format!(
        "import os\nimport numpy as np\nout = os.environ['EXP_OUTPUT_DIR']\n\
         os.symlink({target:?}, os.path.join(out, 'evil.npy'))\n\
         os.symlink('/etc/passwd', os.path.join(out, 'passwd.npy'))\n\
         os.symlink({dir:?}, os.path.join(out, 'dir.npy'))\n\
         np.save(os.path.join(out, 'good.npy'), np.arange(3.0))\nprint('test_accuracy: 0.5')\n",
        target = target.display().to_string(),
        dir = outside_dir.path().display().to_string(),
    );
    let ws = TestWorkspace::new("symlinks", &config("symlinks"), &[("runfile.py", &runfile)]);
    let (_coordinator, address) = start_coordinator(&ws.root, &[]);
    let scratch = tempfile::tempdir().unwrap();
    let _worker = start_worker(&address, 1, scratch.path());
    let outside_before = tree(outside_dir.path());
    submit_to(&address, "implementation", &[]);
    let done = &ws.events_of("job_completed")[0];
    let job_dir = ws.path(&format!(
        "experiment_results/jobs/{}/{}",
        done["job_id"].as_str().unwrap(),
        done["fingerprint"].as_str().unwrap()
    ));
    assert!(job_dir.join("good.npy").is_file());
    for planted in ["evil.npy", "passwd.npy", "dir.npy"] {
        assert!(!job_dir.join(planted).exists(), "{planted} was stored");
        assert!(
            !ws.path(&format!("experiment_results/{planted}")).exists(),
            "{planted} was copied"
        );
    }
    assert_eq!(
        tree(outside_dir.path()),
        outside_before,
        "something outside changed"
    );
}

#[test]
fn every_array_numpy_writes_passes_the_validator() {
    let dir = tempfile::tempdir().unwrap();
    let script = "import sys, numpy as np\nd = sys.argv[1]\n\
        arrays = {'f8': np.arange(6.0).reshape(2, 3), 'f4': np.ones(5, np.float32), 'i8': np.arange(4), \
        'u1': np.zeros((2, 2, 2), np.uint8), 'b': np.array([True, False]), 'c16': np.array([1 + 2j]), \
        'scalar': np.float64(3.5), 'empty': np.zeros((0, 3)), 'fortran': np.asfortranarray(np.ones((3, 2))), \
        'big_endian': np.arange(3, dtype='>f8')}\n\
        for name, a in arrays.items():\n    np.save(f'{d}/{name}.npy', a)\n";
    let output = std::process::Command::new(expcluster_tests::python())
        .args(["-c", script])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_success(&output);
    let mut checked = 0;
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        expcluster_core::npy::validate_npy(&bytes)
            .unwrap_or_else(|err| panic!("{}: {err}", path.display()));
        checked += 1;
    }
    assert_eq!(checked, 10);
}

// Hostile configs (issue 19, item 3): a config that would expand to millions of jobs
// or gigabytes of values is refused by `validate`, `submit` and the coordinator, each
// at once, with the position, the limit and how to raise it, in bounded memory.

/// Runs its arguments as a child, kills the child if its resident memory passes the
/// cap (so a regression cannot take the machine down), and writes the child's peak
/// resident memory in KiB (getrusage of this process's children) to the first argument.
const WATCH_MEMORY: &str = "import resource, subprocess, sys, time
peak_file, cap = sys.argv[1], int(sys.argv[2])
child = subprocess.Popen(sys.argv[3:])
while child.poll() is None:
    try:
        with open(f'/proc/{child.pid}/status') as status:
            rss = next((int(l.split()[1]) for l in status if l.startswith('VmRSS:')), 0)
    except OSError:
        rss = 0
    if rss > cap:
        child.kill()
    time.sleep(0.01)
open(peak_file, 'w').write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))
sys.exit(child.returncode if child.returncode >= 0 else 128 - child.returncode)
";

/// `expcluster <args>` under [`WATCH_MEMORY`]: its output and peak resident KiB.
fn expcluster_watched(args: &[&str], cap_kib: u64) -> (std::process::Output, u64) {
    let dir = tempfile::tempdir().unwrap();
    let peak_file = dir.path().join("peak");
    let output = std::process::Command::new(expcluster_tests::python())
        .args(["-c", WATCH_MEMORY])
        .arg(&peak_file)
        .arg(cap_kib.to_string())
        .arg(expcluster_tests::expcluster_bin())
        .args(args)
        .env("PATH", expcluster_tests::path_with_venv())
        .env_remove("EXPCLUSTER_COORDINATOR")
        .output()
        .unwrap();
    let peak = std::fs::read_to_string(&peak_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    (output, peak)
}

/// How much more than `expcluster validate` of a one-job config a refusal may take.
const REFUSAL_GROWTH_KIB: u64 = 64 * 1024;

/// The peak resident KiB of `expcluster validate` of a one-job config (the binary
/// maps libtorch, so this is hundreds of MiB).
fn valid_config_peak() -> u64 {
    let ws = TestWorkspace::new("baseline", &config("baseline"), &[("runfile.py", RUNFILE)]);
    let root = ws.root.to_str().unwrap();
    let (output, peak) = expcluster_watched(&["validate", "--workspace", root], u64::MAX);
    assert_success(&output);
    peak
}

/// The 1-based line of the first line of `text` starting with `prefix`.
fn line_of(text: &str, prefix: &str) -> usize {
    text.lines()
        .position(|line| line.starts_with(prefix))
        .unwrap()
        + 1
}

/// Refused by `expcluster validate`, by `expcluster submit` before anything starts,
/// and by a coordinator's SubmitStage, each saying everything in `says` (the
/// position and the limit with how to raise it), none in much more memory than a
/// valid config takes.
async fn assert_refused_everywhere(ws: &TestWorkspace, stage: &str, says: &[String]) {
    let baseline = valid_config_peak();
    let cap = baseline + 1024 * 1024;
    let root = ws.root.to_str().unwrap();
    let before = tree(&ws.root);
    for args in [
        vec!["validate", "--workspace", root],
        vec!["submit", "--workspace", root, "--stage", stage],
    ] {
        let (output, peak) = expcluster_watched(&args, cap);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?} accepted it:\n{stderr}");
        for said in says {
            assert!(
                stderr.contains(said.as_str()),
                "{args:?} does not say {said:?}:\n{stderr}"
            );
        }
        eprintln!("{args:?}: peak {peak} KiB, a valid config's {baseline} KiB");
        assert!(
            peak < baseline + REFUSAL_GROWTH_KIB,
            "{args:?} peaked at {peak} KiB, a valid config at {baseline} KiB"
        );
    }
    assert_eq!(validate_exit_code(root), Some(2));
    assert_eq!(tree(&ws.root), before, "submit started something");

    let (coordinator, address) = start_coordinator(&ws.root, &[]);
    let peak_before = peak_kib(coordinator.pid());
    let (_, mut client) = clients(&address, &security(Some(&token(&ws.root, "client"))));
    let refused = client
        .submit_stage(v1::SubmitStageRequest {
            stage: stage.into(),
            rerun: false,
            seeds_for_power: false,
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    for said in says {
        assert!(
            refused.message().contains(said.as_str()),
            "the coordinator does not say {said:?}: {refused:?}"
        );
    }
    let grown_kib = peak_kib(coordinator.pid()) - peak_before;
    assert!(
        grown_kib < REFUSAL_GROWTH_KIB,
        "the coordinator's peak grew by {grown_kib} KiB"
    );
}

fn validate_exit_code(root: &str) -> Option<i32> {
    expcluster_tests::expcluster(&["validate", "--workspace", root])
        .status
        .code()
}

fn numbers(count: usize) -> String {
    (0..count)
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ten_million_job_sweep_is_refused_at_once_in_bounded_memory() {
    let text = format!(
        "name: huge\nprimary_metric: {{name: test_accuracy, goal: max}}\n\
         job:\n  command: [python, runfile.py]\n  params: {{a: 0, b: 0}}\n\
         methods:\n  proposed: {{}}\n\
         stages:\n  full:\n    seeds: 1000\n    sweep:\n      params.a: [{}]\n      params.b: [{}]\n",
        numbers(100),
        numbers(100)
    );
    let ws = TestWorkspace::new("huge", &text, &[("runfile.py", RUNFILE)]);
    let says = [
        format!(
            "{}/config.yaml:{}:3: stage `full` expands to 10000000 jobs (1 variant × 10000 sweep points × 1000 seeds), more than the limit of 100000 (limits.jobs_per_stage)",
            ws.root.display(),
            line_of(&text, "  full:")
        ),
        "raise the limit with `limits: {jobs_per_stage: N}` at the top level of config.yaml".to_owned(),
    ];
    assert_refused_everywhere(&ws, "full", &says).await;
}

/// A "billion laughs": nine levels of nine aliases over a 60 KB string, 60 KB of text
/// that expands to 9^9 copies of it. serde_yaml's own guard (at most 100 alias jumps
/// per event) stopped it only once the parse had taken some 650 MB.
fn billion_laughs() -> String {
    let mut levels = vec![
        format!("    s: &s {}", "x".repeat(60_000)),
        format!("    l0: &l0 [{}]", ["*s"; 9].join(", ")),
    ];
    for level in 1..9 {
        let aliases = vec![format!("*l{}", level - 1); 9].join(", ");
        levels.push(format!("    l{level}: &l{level} [{aliases}]"));
    }
    format!(
        "name: laughs\nprimary_metric: {{name: test_accuracy, goal: max}}\n\
         job:\n  command: [python, runfile.py]\n  params:\n    a: 0\n{}\n\
         methods:\n  proposed: {{}}\nstages:\n  implementation: {{seeds: 1}}\n",
        levels.join("\n")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_yaml_bomb_is_refused_at_once_in_bounded_memory() {
    let text = billion_laughs();
    let ws = TestWorkspace::new("laughs", &text, &[("runfile.py", RUNFILE)]);
    let says = [
        // Where the expansion passed the limit: inside the anchored string.
        format!(
            "{}/config.yaml:{}:8: ",
            ws.root.display(),
            line_of(&text, "    s: &s")
        ),
        "the config's values take more than 16777216 bytes once YAML aliases are expanded"
            .to_owned(),
        "(4 × limits.config_bytes".to_owned(),
        "raise the limit with `limits: {config_bytes: N}` at the top level of config.yaml"
            .to_owned(),
    ];
    assert_refused_everywhere(&ws, "implementation", &says).await;
}

#[test]
fn a_config_longer_than_the_limit_is_refused_before_it_is_parsed() {
    // 12 MiB in one flow list: 2 million values the parse would hold.
    let text = format!(
        "name: long\nprimary_metric: {{name: test_accuracy, goal: max}}\n\
         job: {{command: [python, runfile.py], params: {{a: [{}]}}}}\n\
         methods: {{proposed: {{}}}}\nstages: {{implementation: {{seeds: 1}}}}\n",
        vec!["1234"; 2 << 20].join(", ")
    );
    let ws = TestWorkspace::new("long", &text, &[("runfile.py", RUNFILE)]);
    let root = ws.root.to_str().unwrap();
    let (output, peak) = expcluster_watched(&["validate", "--workspace", root], u64::MAX);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    let column = (4 << 20) - text.find("job:").unwrap() + 1;
    assert!(
        stderr.contains(&format!("{root}/config.yaml:3:{column}: the config is {} bytes, more than the limit of 4194304 (limits.config_bytes)", text.len())),
        "{stderr}"
    );
    assert!(stderr.contains("`limits: {config_bytes: N}`"), "{stderr}");
    // The offending line is shown cut around the column, not 12 MiB wide.
    assert!(stderr.len() < 2048, "{} bytes of stderr", stderr.len());
    let baseline = valid_config_peak();
    eprintln!("validate of an 8 MiB config: peak {peak} KiB, a valid config's {baseline} KiB");
    assert!(peak < baseline + REFUSAL_GROWTH_KIB, "peak {peak} KiB");
}
