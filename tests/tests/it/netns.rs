//! expcluster on separate hosts: a coordinator on h0 (`head-node`), workers on h1 and
//! h2, the client on h3, each a Linux namespace host with its own hostname and disk
//! (tests/src/netns.rs). Nothing is shared but the network, so these tests catch what
//! loopback tests cannot: a worker reading the workspace, a gang rank advertising
//! 127.0.0.1, a client needing the coordinator's files.
//!
//! They need root, as the Slurm tests do, and fail saying so without it.

use expcluster_tests::netns::{copy_between, Host, NetCluster, HEAD_NODE};
use expcluster_tests::{assert_success, result_lines, wait_until, Proc, TestWorkspace};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

const WORKSPACE: &str = "experiments/my-idea";
const PORT: u16 = 50051;

/// The commands of the docs' blocks marked `<!-- run: cluster <role> -->`, in order.
fn readme_block(role: &str) -> Vec<String> {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let commands: Vec<String> = expcluster_tests::docs::cluster_blocks(&repo, role)
        .into_iter()
        .flat_map(|block| block.commands)
        .collect();
    assert!(
        !commands.is_empty(),
        "README.md has no block marked <!-- run: cluster {role} -->"
    );
    commands
}

/// Runs one README line on `host`: the long-running commands (a coordinator, a
/// worker) in the background, returned; every other one to its end, which must
/// succeed.
fn run_line(host: &Host, line: &str) -> Option<Proc> {
    let program = line.split_whitespace().nth(1).unwrap_or_default();
    if matches!(program, "coordinator" | "worker") {
        return Some(host.spawn(line, &format!("{program}.log")));
    }
    let output = host.run(line);
    let stdout = assert_success(&output);
    eprintln!("{}$ {line}\n{stdout}", host.name);
    None
}

fn log_of(host: &Host, name: &str) -> String {
    std::fs::read_to_string(host.path(name)).unwrap_or_default()
}

/// Starts `expcluster coordinator` on h0 with `extra` flags and waits for its
/// announcement.
fn start_coordinator(h0: &Host, workspace: &str, extra: &str) -> Proc {
    let proc = h0.spawn(
        &format!("expcluster coordinator --workspace {workspace} --listen 0.0.0.0:{PORT} {extra}"),
        "coordinator.log",
    );
    wait_until(Duration::from_secs(30), "the coordinator listens", || {
        log_of(h0, "coordinator.log").contains("listening on")
    });
    proc
}

fn events(workspace: &Path, kind: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(workspace.join("research_log.jsonl")).unwrap_or_default();
    text.lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|event| event["type"] == kind)
        .collect()
}

fn completed_of(workspace: &Path, stage: &str) -> Vec<Value> {
    events(workspace, "job_completed")
        .into_iter()
        .filter(|event| event["stage"] == stage)
        .collect()
}

/// The host names (`h1`, `h2`) in the worker ids of the events.
fn hosts_that_ran(events: &[Value]) -> BTreeSet<String> {
    events
        .iter()
        .filter_map(|event| event["worker_id"].as_str())
        .filter_map(|id| id.split('-').nth(1).map(str::to_owned))
        .collect()
}

/// A worker with `slots` slots on h1 and on h2, reaching the head node at `port`.
fn workers_on_h1_h2(cluster: &NetCluster, port: u16, slots: u32) -> Vec<Proc> {
    ["h1", "h2"]
        .iter()
        .map(|name| {
            cluster.host(name).spawn(
                &format!("expcluster worker --coordinator {HEAD_NODE}:{port} --token-file worker.token --slots {slots}"),
                "worker.log",
            )
        })
        .collect()
}

/// `expcluster submit --stage <stage>` from `client` to the head node at `port`,
/// which must succeed.
fn submit_from(client: &Host, stage: &str, port: u16) {
    assert_success(&client.run(&format!(
        "expcluster submit --stage {stage} --coordinator {HEAD_NODE}:{port} --token-file client.token"
    )));
}

/// Whether a worker on `host` (scratch in its TMPDIR) made a job directory.
fn ran_a_job(host: &Host) -> bool {
    let Ok(entries) = std::fs::read_dir(host.path("tmp")) else {
        return false;
    };
    entries
        .flatten()
        .filter(|entry| {
            entry
                .file_name()
                .to_string_lossy()
                .starts_with("expcluster-worker-")
        })
        .any(|scratch| {
            std::fs::read_dir(scratch.path().join("jobs"))
                .is_ok_and(|mut jobs| jobs.next().is_some())
        })
}

fn hand_out_tokens(cluster: &NetCluster, workspace: &str) {
    let (h0, h3) = (cluster.host("h0"), cluster.host("h3"));
    for worker in ["h1", "h2"] {
        copy_between(
            h0,
            &format!("{workspace}/.expcluster/worker.token"),
            cluster.host(worker),
            "worker.token",
        );
    }
    copy_between(
        h0,
        &format!("{workspace}/.expcluster/client.token"),
        h3,
        "client.token",
    );
}

#[test]
fn the_readme_cluster_path_runs_word_for_word_on_four_hosts() {
    let cluster = NetCluster::new(4);
    let [h0, h1, h2, h3] = cluster.first::<4>();
    let mut running = Vec::new();
    for line in readme_block("head-node") {
        running.extend(run_line(h0, &line));
    }
    wait_until(Duration::from_secs(30), "the coordinator listens", || {
        log_of(h0, "coordinator.log").contains("listening on")
    });
    assert!(
        log_of(h0, "coordinator.log").contains("created new tokens"),
        "the first start of a workspace made by `init` creates its tokens: {}",
        log_of(h0, "coordinator.log")
    );
    hand_out_tokens(&cluster, WORKSPACE);
    for worker in [h1, h2] {
        for line in readme_block("each-worker") {
            running.extend(run_line(worker, &line));
        }
    }
    // Nothing but the network is shared: the workspace is not there for the others.
    for other in [h1, h2, h3] {
        let look = other.run(&format!("test -e '{}'", h0.path(WORKSPACE).display()));
        assert!(
            !look.status.success(),
            "{} can see h0's workspace",
            other.name
        );
    }
    for line in readme_block("client") {
        assert!(run_line(h3, &line).is_none(), "the client's commands end");
    }
    let workspace = h0.path(WORKSPACE);
    let done = completed_of(&workspace, "implementation");
    assert!(!done.is_empty(), "the implementation stage ran jobs");
    for event in &done {
        assert_eq!(event["status"], "succeeded", "{event}");
    }
    let ran_on = hosts_that_ran(&done);
    assert!(
        ran_on.iter().all(|host| host == "h1" || host == "h2"),
        "jobs ran on the worker hosts only: {ran_on:?}"
    );
    // The workers' scratch is on their own disks.
    for worker in [h1, h2] {
        let scratch = std::fs::read_dir(worker.path("tmp"))
            .expect("the worker host's tmp")
            .flatten()
            .any(|entry| {
                entry
                    .file_name()
                    .to_string_lossy()
                    .starts_with("expcluster-worker-")
            });
        assert!(
            scratch,
            "{} keeps its scratch in its own TMPDIR",
            worker.name
        );
    }
    drop(running);
}

/// The digits example with its data copied to each worker node, not shared.
#[test]
fn a_trainer_stage_runs_on_workers_that_hold_only_a_copy_of_the_data() {
    let cluster = NetCluster::new(4);
    let (h0, h3) = (cluster.host("h0"), cluster.host("h3"));
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/digits-mlp");
    let data = Path::new(&std::env::var("EXPCLUSTER_DATA").unwrap_or_else(|_| {
        format!(
            "{}/.cache/expcluster/data",
            std::env::var("HOME").unwrap_or_default()
        )
    }))
    .join("digits.npz");
    assert!(
        data.exists(),
        "{} is missing: run scripts/setup.sh",
        data.display()
    );
    let workspace = "experiments/digits-mlp";
    assert_success(&h0.run(&format!(
        "mkdir -p experiments && cp -r '{}' {workspace} && mkdir -p {workspace}/data && cp '{}' {workspace}/data/",
        example.display(),
        data.display()
    )));
    let _coordinator = start_coordinator(h0, workspace, "");
    hand_out_tokens(&cluster, workspace);
    let mut workers = Vec::new();
    for name in ["h1", "h2"] {
        let worker = cluster.host(name);
        copy_between(
            h0,
            &format!("{workspace}/data/digits.npz"),
            worker,
            "data/digits.npz",
        );
        workers.push(worker.spawn(
            &format!("expcluster worker --coordinator {HEAD_NODE}:{PORT} --token-file worker.token --data-root . --slots 1"),
            "worker.log",
        ));
    }
    for stage in ["implementation", "baselines"] {
        assert_success(&h3.run(&format!(
            "expcluster submit --stage {stage} --coordinator {HEAD_NODE}:{PORT} --token-file client.token"
        )));
    }
    let root = h0.path(workspace);
    let done = completed_of(&root, "baselines");
    assert_eq!(done.len(), 12, "3 methods x 4 seeds");
    for event in &done {
        assert_eq!(event["status"], "succeeded", "{event}");
    }
    assert_eq!(
        hosts_that_ran(&done),
        BTreeSet::from(["h1".to_owned(), "h2".to_owned()]),
        "both worker hosts trained"
    );
    assert!(root.join("baseline_summary.json").exists());
}

/// Writes a workspace with `config` (and `files`) on h0.
fn workspace_on(h0: &Host, config: &str, files: &[(&str, &str)]) -> std::path::PathBuf {
    let root = h0.path(WORKSPACE);
    std::fs::create_dir_all(&root).expect("workspace");
    std::fs::write(root.join("config.yaml"), config).expect("config");
    for (name, content) in files {
        std::fs::write(root.join(name), content).expect("file");
    }
    root
}

#[test]
fn a_trainer_gang_with_ranks_on_two_hosts_matches_one_process() {
    let cluster = NetCluster::new(4);
    let (h0, h3) = (cluster.host("h0"), cluster.host("h3"));
    let root = workspace_on(h0, &crate::gang::trainer_config(2), &[]);
    let _coordinator = start_coordinator(h0, WORKSPACE, "");
    hand_out_tokens(&cluster, WORKSPACE);
    // One slot each: the two ranks must be on two hosts, and rank 0's MASTER_ADDR is
    // its host's name (the default advertised host), resolved by the other host.
    let _workers = workers_on_h1_h2(&cluster, PORT, 1);
    submit_from(h3, "baselines", PORT);
    let done = completed_of(&root, "baselines");
    assert_eq!(done.len(), 1);
    assert_eq!(done[0]["status"], "succeeded", "{}", done[0]);
    for name in ["h1", "h2"] {
        assert!(ran_a_job(cluster.host(name)), "{name} ran a rank");
    }
    let gang = result_lines(&root).pop().expect("the gang's results line")["series"].clone();
    // The reference: the same job as one process (embedded, on this host).
    let single_ws = TestWorkspace::new("single", &crate::gang::trainer_config(1), &[]);
    single_ws.submit_here("baselines", &[]);
    let single = single_ws.result_lines().pop().expect("results line")["series"].clone();
    crate::gang::assert_same_learning(&single, &gang);
}

/// A command job printing `step: i` every 0.2 s for `steps` steps.
fn slow_job_config(steps: u32) -> String {
    format!(
        "name: link-cut\nprimary_metric: {{name: step, goal: max}}\n\
         job:\n  command: [\"sh\", \"-c\", \"for i in $(seq 0 {last}); do echo step: $i; sleep 0.2; done\"]\n\
         methods:\n  proposed: {{}}\n\
         stages:\n  implementation: {{seeds: 1}}\n\
         resources: {{max_attempts: 3, timeout: 5m}}\n",
        last = steps - 1
    )
}

#[test]
fn a_worker_cut_off_mid_job_is_replaced_and_its_stale_attempt_fenced() {
    let cluster = NetCluster::new(4);
    let [h0, h1, h2, h3] = cluster.first::<4>();
    let steps = 60;
    let root = workspace_on(h0, &slow_job_config(steps), &[]);
    let _coordinator = start_coordinator(h0, WORKSPACE, "--lease-timeout 3s");
    hand_out_tokens(&cluster, WORKSPACE);
    let worker = |host: &Host| {
        host.spawn(
            &format!("expcluster worker --coordinator {HEAD_NODE}:{PORT} --token-file worker.token --slots 1 --work-dir scratch"),
            "worker.log",
        )
    };
    let _w1 = worker(h1);
    assert_success(&h3.run(&format!(
        "expcluster submit --stage implementation --detach --coordinator {HEAD_NODE}:{PORT} --token-file client.token"
    )));
    wait_until(Duration::from_secs(60), "the job runs on h1", || {
        h1.path("scratch/jobs")
            .read_dir()
            .is_ok_and(|mut d| d.next().is_some())
    });
    let _w2 = worker(h2);
    h1.set_link(false);
    wait_until(
        Duration::from_secs(60),
        "the lease runs out and the job is requeued",
        || !events(&root, "job_requeued").is_empty(),
    );
    let requeued = &events(&root, "job_requeued")[0];
    assert_eq!(requeued["reason"], "lease_expired", "{requeued}");
    assert!(
        requeued["worker_id"]
            .as_str()
            .unwrap_or_default()
            .contains("-h1-"),
        "{requeued}"
    );
    wait_until(Duration::from_secs(90), "the job completes on h2", || {
        !completed_of(&root, "implementation").is_empty()
    });
    h1.set_link(true);
    // h1's attempt ends (it runs 12 s) and reports into a coordinator that has moved on.
    wait_until(
        Duration::from_secs(60),
        "h1 is told its attempt is stale",
        || {
            let log = log_of(h1, "worker.log").to_lowercase();
            log.contains("stale") || log.contains("fenced") || log.contains("superseded")
        },
    );
    let done = completed_of(&root, "implementation");
    assert_eq!(done.len(), 1, "one completion: {done:?}");
    assert_eq!(done[0]["status"], "succeeded");
    assert_eq!(done[0]["attempt"], 2);
    assert!(done[0]["worker_id"]
        .as_str()
        .unwrap_or_default()
        .contains("-h2-"));
    // Every point of the attempt that counts is stored once, in order.
    let lines = result_lines(&root);
    assert_eq!(lines.len(), 1, "one results line");
    let series: Vec<f64> = lines[0]["series"]["step"]
        .as_array()
        .expect("the step series")
        .iter()
        .filter_map(Value::as_f64)
        .collect();
    let expected: Vec<f64> = (0..steps).map(f64::from).collect();
    assert_eq!(series, expected, "each point once");
}

#[test]
fn a_200_job_stage_completes_exactly_once_over_a_slow_lossy_network() {
    let cluster = NetCluster::new(4);
    let (h0, h3) = (cluster.host("h0"), cluster.host("h3"));
    let config = "name: lossy\nprimary_metric: {name: score, goal: max}\n\
         job:\n  command: [\"sh\", \"-c\", \"echo score: $EXP_SEED\"]\n\
         methods:\n  proposed: {}\n  other: {}\n\
         stages:\n  baselines: {seeds: 100}\n\
         resources: {max_attempts: 3, timeout: 5m}\n";
    let root = workspace_on(h0, config, &[]);
    let _coordinator = start_coordinator(h0, WORKSPACE, "");
    hand_out_tokens(&cluster, WORKSPACE);
    // 10 ms each way through the relay on h0; 1% of every host's packets dropped.
    let relay_port = PORT + 1;
    let _relay = h0.spawn(
        &format!("expcluster-bench relay --listen 0.0.0.0:{relay_port} --to 127.0.0.1:{PORT} --delay-us 10000"),
        "relay.log",
    );
    wait_until(Duration::from_secs(10), "the relay listens", || {
        log_of(h0, "relay.log").contains("listening")
    });
    for host in &cluster.hosts {
        host.drop_outgoing(1);
    }
    let _workers = workers_on_h1_h2(&cluster, relay_port, 4);
    submit_from(h3, "baselines", relay_port);
    let done = completed_of(&root, "baselines");
    let mut per_job: BTreeMap<String, usize> = BTreeMap::new();
    for event in &done {
        assert_eq!(event["status"], "succeeded", "{event}");
        *per_job
            .entry(event["job_id"].as_str().unwrap_or_default().to_owned())
            .or_default() += 1;
    }
    assert_eq!(per_job.len(), 200, "every job completed");
    assert!(per_job.values().all(|&n| n == 1), "each once: {per_job:?}");
    let lines = result_lines(&root);
    assert_eq!(lines.len(), 200, "one results line per job");
    for line in &lines {
        let points = line["series"]["score"].as_array().map_or(0, Vec::len);
        assert_eq!(points, 1, "each point stored once: {line}");
    }
    assert_eq!(
        hosts_that_ran(&done),
        BTreeSet::from(["h1".to_owned(), "h2".to_owned()])
    );
}

#[test]
fn tls_with_a_certificate_naming_the_head_node() {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair,
        KeyUsagePurpose, SanType,
    };
    let cluster = NetCluster::new(4);
    let (h0, h1, h3) = (cluster.host("h0"), cluster.host("h1"), cluster.host("h3"));
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "cluster CA");
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let authority =
        CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("key")).expect("ca");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params
        .distinguished_name
        .push(DnType::CommonName, HEAD_NODE);
    params.subject_alt_names = vec![SanType::DnsName(HEAD_NODE.try_into().expect("dns name"))];
    let key = KeyPair::generate().expect("key");
    let cert = params.signed_by(&key, &authority).expect("cert");
    std::fs::write(h0.path("server.pem"), cert.pem()).expect("cert file");
    std::fs::write(h0.path("server.key"), key.serialize_pem()).expect("key file");
    for host in [h1, h3] {
        std::fs::write(host.path("ca.pem"), authority.pem()).expect("ca file");
    }
    let root = workspace_on(h0, &slow_job_config(3).replace("link-cut", "tls"), &[]);
    let _coordinator =
        start_coordinator(h0, WORKSPACE, "--tls-cert server.pem --tls-key server.key");
    hand_out_tokens(&cluster, WORKSPACE);
    let _worker = h1.spawn(
        &format!("expcluster worker --coordinator {HEAD_NODE}:{PORT} --token-file worker.token --tls-ca ca.pem"),
        "worker.log",
    );
    assert_success(&h3.run(&format!(
        "expcluster submit --stage implementation --coordinator {HEAD_NODE}:{PORT} --token-file client.token --tls-ca ca.pem"
    )));
    assert_eq!(completed_of(&root, "implementation").len(), 1);
    // The same server by its address: the certificate does not name it, so the
    // client refuses to talk.
    let by_address = h3.run(&format!(
        "expcluster status --coordinator {}:{PORT} --token-file client.token --tls-ca ca.pem",
        h0.ip
    ));
    assert!(
        !by_address.status.success(),
        "a certificate that does not name the address is refused"
    );
}

#[test]
fn a_gang_whose_peer_host_is_cut_off_is_requeued_whole_without_spending_its_failure_budget() {
    let cluster = NetCluster::new(5);
    let (h0, h1, h2, h3, h4) = (
        cluster.host("h0"),
        cluster.host("h1"),
        cluster.host("h2"),
        cluster.host("h3"),
        cluster.host("h4"),
    );
    let root = workspace_on(h0, crate::gang::LONG_GANG_ONE_ATTEMPT, &[]);
    let _coordinator = start_coordinator(h0, WORKSPACE, "--lease-timeout 3s");
    hand_out_tokens(&cluster, WORKSPACE);
    copy_between(
        h0,
        &format!("{WORKSPACE}/.expcluster/worker.token"),
        h4,
        "worker.token",
    );
    let _workers = workers_on_h1_h2(&cluster, PORT, 1);
    assert_success(&h3.run(&format!(
        "expcluster submit --stage baselines --detach --coordinator {HEAD_NODE}:{PORT} --token-file client.token"
    )));
    wait_until(Duration::from_secs(60), "both ranks run", || {
        ran_a_job(h1) && ran_a_job(h2)
    });
    let _spare = h4.spawn(
        &format!("expcluster worker --coordinator {HEAD_NODE}:{PORT} --token-file worker.token --slots 1"),
        "worker.log",
    );
    // h2 drops off the network: its rank's peer sees silence, not a closed socket.
    h2.set_link(false);
    wait_until(
        Duration::from_secs(30),
        "the gang is requeued once h2's lease runs out",
        || !events(&root, "job_requeued").is_empty(),
    );
    wait_until(Duration::from_secs(180), "the job completes", || {
        !completed_of(&root, "baselines").is_empty()
    });
    let done = &completed_of(&root, "baselines")[0];
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["attempt"], 2, "{done}");
    assert!(
        events(&root, "job_attempt_failed").is_empty(),
        "the surviving rank's lost peer is not a failure"
    );
    let requeued = events(&root, "job_requeued");
    assert_eq!(requeued.len(), 1, "{requeued:?}");
    assert_eq!(requeued[0]["reason"], "lease_expired");
    assert!(
        requeued[0]["worker_id"]
            .as_str()
            .unwrap_or_default()
            .contains("-h2-"),
        "the host that vanished is named: {}",
        requeued[0]
    );
    assert!(ran_a_job(h4), "the spare host ran a rank of attempt 2");
}
