//! Security (issue 6; RELIABILITY.md cases 17 and 18): tokens on every RPC but the
//! health check, separate worker and client roles, fail-closed start-up, the loopback
//! rule, and TLS / mutual TLS end to end with certificates made here by rcgen.

use expcluster_proto::v1;
use expcluster_tests::{expcluster_bin, start_coordinator, token_file, TestWorkspace};
use expcluster_worker::client::{
    channel, client_client, worker_client, ClientClient, ClientSecurity, WorkerClient,
};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tonic::Code;

pub const RUNFILE: &str = "import os\nprint('test_accuracy: 0.75')\nprint('train_loss: 0.5')\n";

pub fn config(name: &str) -> String {
    format!(
        "name: {name}\nprimary_metric: {{name: test_accuracy, goal: max}}\n\
         job:\n  command: [python, runfile.py]\n\
         methods:\n  proposed: {{}}\n\
         stages:\n  implementation: {{seeds: 1}}\nresources: {{max_attempts: 1, timeout: 2m}}\n"
    )
}

pub fn token(workspace: &Path, role: &str) -> String {
    std::fs::read_to_string(token_file(workspace, role))
        .unwrap()
        .trim()
        .to_owned()
}

pub fn security(token: Option<&str>) -> ClientSecurity {
    match token {
        Some(token) => ClientSecurity::none().with_token(token).unwrap(),
        None => ClientSecurity::none(),
    }
}

pub fn clients(address: &str, security: &ClientSecurity) -> (WorkerClient, ClientClient) {
    let channel = channel(address, security).unwrap();
    (
        worker_client(channel.clone(), security),
        client_client(channel, security),
    )
}

/// Every file under `dir` with its size: "nothing written" means this did not change.
pub fn tree(dir: &Path) -> BTreeMap<PathBuf, u64> {
    let mut files = BTreeMap::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let meta = std::fs::symlink_metadata(entry.path()).unwrap();
            if meta.is_dir() {
                pending.push(entry.path());
            } else {
                files.insert(entry.path(), meta.len());
            }
        }
    }
    files
}

/// Calls every worker RPC once with requests that would have effects.
async fn worker_rpcs(client: &mut WorkerClient) -> Vec<(&'static str, tonic::Status)> {
    let register = client
        .register(v1::RegisterRequest {
            hostname: "intruder".into(),
            slots: 4,
            ..Default::default()
        })
        .await;
    let heartbeat = client
        .heartbeat(v1::HeartbeatRequest {
            worker_id: "w1-intruder".into(),
            running: Vec::new(),
        })
        .await;
    let lease_request = v1::LeaseRequest {
        worker_id: "w1-intruder".into(),
        free_slots: 4,
        wait_ms: 0,
    };
    let complete_request = v1::CompleteRequest {
        worker_id: "w1-intruder".into(),
        job_id: "implementation.proposed.s0".into(),
        attempt: 1,
        outcome: v1::Outcome::Succeeded as i32,
        ..Default::default()
    };
    let lease = client.lease(lease_request.clone()).await;
    let metrics = client
        .report_metrics(v1::MetricBatch {
            worker_id: "w1-intruder".into(),
            job_id: "implementation.proposed.s0".into(),
            attempt: 1,
            points: vec![v1::MetricPoint {
                seq: 0,
                name: "test_accuracy".into(),
                step: 0,
                value: 1.0,
                time_ms: 0,
            }],
        })
        .await;
    let upload = client
        .upload_artifact(v1::ArtifactUpload {
            worker_id: "w1-intruder".into(),
            job_id: "implementation.proposed.s0".into(),
            attempt: 1,
            name: "x.npy".into(),
            content: vec![0; 64],
            kind: v1::ArtifactKind::Result as i32,
        })
        .await;
    let append_log = client
        .append_log(v1::LogChunk {
            worker_id: "w1-intruder".into(),
            job_id: "implementation.proposed.s0".into(),
            attempt: 1,
            stream: "stdout".into(),
            offset: 0,
            content: b"forged output\n".to_vec(),
        })
        .await;
    let complete = client.complete(complete_request.clone()).await;
    // The same two over a session: refused when it opens.
    let session = expcluster_worker::session::Session::new(client.clone());
    let session_lease = session.lease(lease_request).await;
    let session_complete = session.complete(complete_request).await;
    vec![
        ("Register", register.unwrap_err()),
        ("Session: Lease", session_lease.unwrap_err()),
        ("Session: Complete", session_complete.unwrap_err()),
        ("Heartbeat", heartbeat.unwrap_err()),
        ("Lease", lease.unwrap_err()),
        ("ReportMetrics", metrics.unwrap_err()),
        ("UploadArtifact", upload.unwrap_err()),
        ("AppendLog", append_log.unwrap_err()),
        ("Complete", complete.unwrap_err()),
    ]
}

/// Calls every client RPC but Health once.
async fn client_rpcs(client: &mut ClientClient) -> Vec<(&'static str, tonic::Status)> {
    let submit = client
        .submit_stage(v1::SubmitStageRequest {
            stage: "implementation".into(),
            rerun: true,
            seeds_for_power: false,
        })
        .await;
    let status = client
        .stage_status(v1::StageStatusRequest {
            stage: "implementation".into(),
        })
        .await;
    let cancel = client
        .cancel(v1::CancelRequest {
            stage: "implementation".into(),
            job_id: String::new(),
        })
        .await;
    let workers = client.list_workers(v1::ListWorkersRequest {}).await;
    let log = client
        .job_log(v1::JobLogRequest {
            job_id: "implementation.proposed.s0".into(),
            attempt: 0,
            stream: "stdout".into(),
            offset: 0,
        })
        .await;
    vec![
        ("SubmitStage", submit.unwrap_err()),
        ("StageStatus", status.unwrap_err()),
        ("Cancel", cancel.unwrap_err()),
        ("ListWorkers", workers.unwrap_err()),
        ("JobLog", log.unwrap_err()),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rpc_refuses_a_missing_wrong_or_other_role_token_and_nothing_is_written() {
    let ws = TestWorkspace::new("authz", &config("authz"), &[("runfile.py", RUNFILE)]);
    let (_coordinator, address) = start_coordinator(&ws.root, &[]);
    let (worker_token, client_token) = (token(&ws.root, "worker"), token(&ws.root, "client"));
    assert_ne!(worker_token, client_token);
    for role in ["worker", "client"] {
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(token_file(&ws.root, role))
                .unwrap()
                .permissions(),
        );
        assert_eq!(mode & 0o777, 0o600, "{role} token file mode");
    }
    let before = tree(&ws.root);
    let wrong = format!("ecc_{}", "0".repeat(64));
    let cases: [(&str, Option<&str>, Code, Code); 4] = [
        (
            "no token",
            None,
            Code::Unauthenticated,
            Code::Unauthenticated,
        ),
        (
            "a wrong token",
            Some(&wrong),
            Code::Unauthenticated,
            Code::Unauthenticated,
        ),
        (
            "the client token",
            Some(&client_token),
            Code::PermissionDenied,
            Code::Ok,
        ),
        (
            "the worker token",
            Some(&worker_token),
            Code::Ok,
            Code::PermissionDenied,
        ),
    ];
    for (what, token, on_worker_rpcs, on_client_rpcs) in cases {
        let (mut workers, mut clients) = clients(&address, &security(token));
        if on_worker_rpcs != Code::Ok {
            for (rpc, status) in worker_rpcs(&mut workers).await {
                assert_eq!(
                    status.code(),
                    on_worker_rpcs,
                    "{rpc} with {what}: {status:?}"
                );
            }
        }
        if on_client_rpcs != Code::Ok {
            for (rpc, status) in client_rpcs(&mut clients).await {
                assert_eq!(
                    status.code(),
                    on_client_rpcs,
                    "{rpc} with {what}: {status:?}"
                );
            }
        }
        // Health alone answers anyone.
        let health = clients
            .health(v1::HealthRequest {})
            .await
            .unwrap()
            .into_inner();
        assert_eq!(health.protocol_version, expcluster_proto::PROTOCOL_VERSION);
    }
    assert_eq!(tree(&ws.root), before, "a refused call wrote something");

    // The same calls with the right role do take effect (so the refusals above meant it).
    let (_, mut clients) = clients(&address, &security(Some(&client_token)));
    assert!(
        clients
            .list_workers(v1::ListWorkersRequest {})
            .await
            .unwrap()
            .into_inner()
            .workers
            .is_empty(),
        "no intruder registered"
    );
    let (mut workers, _) = self::clients(&address, &security(Some(&worker_token)));
    workers
        .register(v1::RegisterRequest {
            hostname: "real".into(),
            slots: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        clients
            .list_workers(v1::ListWorkersRequest {})
            .await
            .unwrap()
            .into_inner()
            .workers
            .len(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_in_the_environment_or_a_file_reaches_the_cli_and_a_bad_one_is_explained() {
    let ws = TestWorkspace::new("cli-auth", &config("cli-auth"), &[("runfile.py", RUNFILE)]);
    let (_coordinator, address) = start_coordinator(&ws.root, &[]);
    let status = |env: &[(&str, String)], extra: &[&str]| {
        let mut command = std::process::Command::new(expcluster_bin());
        command
            .args(["workers", "--json", "--coordinator", &address])
            .args(extra);
        command
            .env_remove("EXPCLUSTER_TOKEN")
            .env_remove("EXPCLUSTER_TOKEN_FILE")
            .current_dir(ws.root.parent().unwrap());
        for (key, value) in env {
            command.env(key, value);
        }
        command.output().unwrap()
    };
    let client_file = token_file(&ws.root, "client");
    assert!(
        status(&[("EXPCLUSTER_TOKEN", token(&ws.root, "client"))], &[])
            .status
            .success()
    );
    assert!(status(
        &[("EXPCLUSTER_TOKEN_FILE", client_file.display().to_string())],
        &[]
    )
    .status
    .success());
    assert!(
        status(&[], &["--token-file", client_file.to_str().unwrap()])
            .status
            .success()
    );
    let denied = status(
        &[],
        &[
            "--token-file",
            token_file(&ws.root, "worker").to_str().unwrap(),
        ],
    );
    assert!(!denied.status.success());
    assert!(
        String::from_utf8_lossy(&denied.stderr).contains("use the client token"),
        "{}",
        String::from_utf8_lossy(&denied.stderr)
    );
    let missing = status(&[], &[]);
    assert!(!missing.status.success());
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("--token-file"),
        "{}",
        String::from_utf8_lossy(&missing.stderr)
    );
}

#[test]
fn a_coordinator_whose_token_file_is_missing_or_empty_does_not_start() {
    let ws = TestWorkspace::new(
        "failclosed",
        &config("failclosed"),
        &[("runfile.py", RUNFILE)],
    );
    let (first, _) = start_coordinator(&ws.root, &[]);
    drop(first);
    let old_client = token(&ws.root, "client");
    let start = |extra: &[&str]| {
        std::process::Command::new(expcluster_bin())
            .args([
                "coordinator",
                "--workspace",
                ws.root.to_str().unwrap(),
                "--listen",
                "127.0.0.1:0",
            ])
            .args(extra)
            .output()
            .unwrap()
    };
    std::fs::remove_file(token_file(&ws.root, "client")).unwrap();
    let output = start(&[]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "started without its client token");
    assert!(
        stderr.contains("client.token") && stderr.contains("--new-tokens"),
        "{stderr}"
    );
    assert!(
        !token_file(&ws.root, "client").exists(),
        "no silent replacement"
    );

    std::fs::write(token_file(&ws.root, "client"), "").unwrap();
    let output = start(&[]);
    assert!(!output.status.success(), "started with an empty token file");
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("empty"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    // Asked for, new tokens are made and the old one no longer works.
    let (_coordinator, _) = start_coordinator(&ws.root, &["--new-tokens"]);
    assert_ne!(token(&ws.root, "client"), old_client);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_auth_the_coordinator_serves_loopback_only() {
    let ws = TestWorkspace::new("noauth", &config("noauth"), &[("runfile.py", RUNFILE)]);
    let refused = std::process::Command::new(expcluster_bin())
        .args([
            "coordinator",
            "--workspace",
            ws.root.to_str().unwrap(),
            "--listen",
            "0.0.0.0:0",
            "--insecure-no-auth",
        ])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("loopback"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    assert!(!token_file(&ws.root, "client").exists());

    let (_coordinator, address) = start_coordinator(&ws.root, &["--insecure-no-auth"]);
    let (_, mut clients) = clients(&address, &ClientSecurity::none());
    clients
        .list_workers(v1::ListWorkersRequest {})
        .await
        .unwrap();
}

#[path = "security_tls.rs"]
mod tls;
