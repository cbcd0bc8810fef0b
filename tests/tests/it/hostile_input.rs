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
