//! `WorkerService.Session` (issue 10's dispatch path): leases and completions over one
//! stream give the unary calls' answers and errors, match concurrent answers to their
//! calls, and survive a coordinator restart by reopening, with nothing acknowledged
//! lost. The coordinator is the real binary; the worker side is this test calling
//! through the worker's own `Session`.

use crate::hostile_input::submit_implementation;
use crate::security::{clients, security, token, RUNFILE};
use expcluster_proto::v1;
use expcluster_tests::{start_coordinator, start_coordinator_at, TestWorkspace};
use expcluster_worker::session::Session;
use std::time::Duration;
use tonic::Code;

fn config(name: &str, seeds: u32) -> String {
    format!(
        "name: {name}\nprimary_metric: {{name: test_accuracy, goal: max}}\n\
         job:\n  command: [python, runfile.py]\n\
         methods:\n  proposed: {{}}\n\
         stages:\n  implementation: {{seeds: {seeds}}}\nresources: {{max_attempts: 2, timeout: 2m}}\n"
    )
}

async fn submit(address: &str, ws: &TestWorkspace) -> u32 {
    submit_implementation(address, ws).await.jobs_total
}

async fn register(address: &str, ws: &TestWorkspace, slots: u32) -> (Session, String) {
    let (worker, worker_id) = register_client(address, ws, slots).await;
    (Session::new(worker), worker_id)
}

/// Registers a worker; returns its plain gRPC client and id.
async fn register_client(
    address: &str,
    ws: &TestWorkspace,
    slots: u32,
) -> (expcluster_worker::client::WorkerClient, String) {
    let (mut worker, _) = clients(address, &security(Some(&token(&ws.root, "worker"))));
    let worker_id = worker
        .register(v1::RegisterRequest {
            hostname: "node".into(),
            slots,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .worker_id;
    (worker, worker_id)
}

fn completion(worker_id: &str, job: &v1::JobSpec, outcome: v1::Outcome) -> v1::CompleteRequest {
    v1::CompleteRequest {
        worker_id: worker_id.to_owned(),
        job_id: job.job_id.clone(),
        attempt: job.attempt,
        outcome: outcome as i32,
        exit_code: if outcome == v1::Outcome::Succeeded {
            0
        } else {
            1
        },
        ..Default::default()
    }
}

fn lease(worker_id: &str, free_slots: u32, wait_ms: u32) -> v1::LeaseRequest {
    v1::LeaseRequest {
        worker_id: worker_id.to_owned(),
        free_slots,
        wait_ms,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_gives_the_unary_answers_and_matches_concurrent_calls() {
    let ws = TestWorkspace::new("session", &config("session", 3), &[("runfile.py", RUNFILE)]);
    let (mut coordinator, address) = start_coordinator(&ws.root, &[]);
    assert_eq!(submit(&address, &ws).await, 3);
    let (session, worker_id) = register(&address, &ws, 3).await;

    // An unknown worker gets the unary call's error, carried over the session.
    let refused = session.lease(lease("w99-nobody", 1, 0)).await.unwrap_err();
    assert_eq!(refused.code(), Code::NotFound, "{refused:?}");

    // Three jobs, then the three completions in flight at once on the one stream:
    // each answer reaches its own caller (one job fails and is retried, the others not).
    let jobs = session
        .lease(lease(&worker_id, 3, 5_000))
        .await
        .unwrap()
        .jobs;
    assert_eq!(jobs.len(), 3);
    let outcomes = [
        v1::Outcome::Succeeded,
        v1::Outcome::Failed,
        v1::Outcome::Succeeded,
    ];
    let answers = futures::future::join_all(
        jobs.iter()
            .zip(outcomes)
            .map(|(job, outcome)| session.complete(completion(&worker_id, job, outcome))),
    )
    .await;
    let requeued: Vec<bool> = answers.into_iter().map(|a| a.unwrap().requeued).collect();
    assert_eq!(requeued, [false, true, false]);

    // A repeated completion gets the first answer; a contradicting one is refused.
    let again = session
        .complete(completion(&worker_id, &jobs[1], v1::Outcome::Failed))
        .await
        .unwrap();
    assert!(again.requeued);
    let contradiction = session
        .complete(completion(&worker_id, &jobs[0], v1::Outcome::Failed))
        .await
        .unwrap_err();
    assert_eq!(
        contradiction.code(),
        Code::AlreadyExists,
        "{contradiction:?}"
    );

    // A lease that waits is answered when the retry becomes ready, while the
    // session stays usable for other calls meanwhile.
    let retry = session
        .lease(lease(&worker_id, 1, 10_000))
        .await
        .unwrap()
        .jobs;
    assert_eq!(retry.len(), 1, "the failed job's retry");
    assert_eq!(
        (retry[0].job_id.as_str(), retry[0].attempt),
        (jobs[1].job_id.as_str(), 2)
    );
    let waiting = tokio::spawn({
        let session = session.clone();
        let worker_id = worker_id.clone();
        async move { session.lease(lease(&worker_id, 1, 1_500)).await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let done = session
        .complete(completion(&worker_id, &retry[0], v1::Outcome::Succeeded))
        .await
        .unwrap();
    assert!(!done.requeued);
    assert!(
        !waiting.is_finished(),
        "the waiting lease held up the completion's answer"
    );
    assert!(
        waiting.await.unwrap().unwrap().jobs.is_empty(),
        "nothing left to lease"
    );

    // Every success is in the results file: answered means durable.
    let lines = ws.result_lines();
    assert_eq!(lines.len(), 3, "{lines:?}");

    // An open session does not keep the coordinator from stopping: SIGTERM ends it,
    // with a lease still waiting on it, and the worker is told to retry.
    let waiting = tokio::spawn({
        let session = session.clone();
        let worker_id = worker_id.clone();
        async move { session.lease(lease(&worker_id, 1, 20_000)).await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    coordinator.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(
        coordinator.wait_exit(Duration::from_secs(10)).is_some(),
        "the coordinator did not stop while a worker session was open"
    );
    let ended = waiting.await.unwrap().unwrap_err();
    assert_eq!(ended.code(), Code::Unavailable, "retryable: {ended:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_reopens_after_the_coordinator_restarts_and_loses_no_completion() {
    let ws = TestWorkspace::new(
        "session-restart",
        &config("session-restart", 2),
        &[("runfile.py", RUNFILE)],
    );
    let (mut coordinator, address) = start_coordinator(&ws.root, &[]);
    submit(&address, &ws).await;
    let (session, worker_id) = register(&address, &ws, 2).await;
    let jobs = session
        .lease(lease(&worker_id, 2, 5_000))
        .await
        .unwrap()
        .jobs;
    assert_eq!(jobs.len(), 2);
    session
        .complete(completion(&worker_id, &jobs[0], v1::Outcome::Succeeded))
        .await
        .unwrap();

    // The coordinator dies; the session's stream breaks.
    coordinator.signal(nix::sys::signal::Signal::SIGKILL);
    coordinator.wait_exit(Duration::from_secs(10));
    let broken = session
        .complete(completion(&worker_id, &jobs[1], v1::Outcome::Succeeded))
        .await
        .unwrap_err();
    assert_eq!(broken.code(), Code::Unavailable, "retryable: {broken:?}");

    // Back on the same address: the same Session object opens a new stream, and the
    // completion answered before the crash is still there.
    let (_coordinator, again) = start_coordinator_at(&ws.root, &address, &[]);
    assert_eq!(again, address);
    // The restarted coordinator recovered the worker and its running attempt from
    // the journal, so the report made after the crash is accepted once it is up.
    let mut answer = None;
    for _ in 0..50 {
        match session
            .complete(completion(&worker_id, &jobs[1], v1::Outcome::Succeeded))
            .await
        {
            Ok(done) => {
                answer = Some(done);
                break;
            }
            Err(status) if status.code() == Code::Unavailable => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(status) => panic!("the completion after the restart was refused: {status:?}"),
        }
    }
    assert!(!answer.expect("answered within 5 s").requeued);
    let lines = ws.result_lines();
    for job in &jobs {
        assert!(
            lines
                .iter()
                .any(|line| line["job_id"] == job.job_id.as_str()),
            "{} has no results line: {lines:?}",
            job.job_id
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_coordinator_fails_the_call_in_time_and_the_next_one_uses_a_new_stream() {
    let ws = TestWorkspace::new(
        "session-hung",
        &config("session-hung", 2),
        &[("runfile.py", RUNFILE)],
    );
    let (coordinator, address) = start_coordinator(&ws.root, &[]);
    submit(&address, &ws).await;
    let (session, worker_id) = register(&address, &ws, 1).await;
    let session = session.with_patience(Duration::from_millis(1_500));
    let jobs = session.lease(lease(&worker_id, 1, 0)).await.unwrap().jobs;
    assert_eq!(jobs.len(), 1);

    // The coordinator stops answering but keeps its connections (SIGSTOP): the call
    // gives up after its patience instead of waiting for good.
    coordinator.signal(nix::sys::signal::Signal::SIGSTOP);
    let started = std::time::Instant::now();
    let hung = session
        .complete(completion(&worker_id, &jobs[0], v1::Outcome::Succeeded))
        .await
        .unwrap_err();
    assert_eq!(hung.code(), Code::Unavailable, "retryable: {hung:?}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );

    // Once it answers again, the retry goes over a new stream and is accepted.
    coordinator.signal(nix::sys::signal::Signal::SIGCONT);
    let done = session
        .complete(completion(&worker_id, &jobs[0], v1::Outcome::Succeeded))
        .await
        .unwrap();
    assert!(!done.requeued);
    assert_eq!(ws.result_lines().len(), 1);
}

/// A call that names neither a lease nor a completion (a worker of another version)
/// is refused alone, with INVALID_ARGUMENT and what to do; a message with no calls is
/// not answered at all. The calls beside them in the same message, and later ones on
/// the same stream, are answered as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_naming_nothing_is_refused_alone_and_the_session_goes_on() {
    use futures::StreamExt;
    let ws = TestWorkspace::new(
        "session-empty",
        &config("session-empty", 1),
        &[("runfile.py", RUNFILE)],
    );
    let (_coordinator, address) = start_coordinator(&ws.root, &[]);
    assert_eq!(submit(&address, &ws).await, 1);
    let (mut worker, worker_id) = register_client(&address, &ws, 1).await;
    // A raw stream, to send what the worker's own client never would.
    let (calls, outgoing) = futures::channel::mpsc::unbounded::<v1::SessionCalls>();
    let call = |call_id, call| v1::SessionCall { call_id, call };
    calls
        .unbounded_send(v1::SessionCalls {
            calls: vec![
                call(1, None),
                call(
                    2,
                    Some(v1::session_call::Call::Lease(lease(&worker_id, 1, 5_000))),
                ),
            ],
        })
        .unwrap();
    calls
        .unbounded_send(v1::SessionCalls { calls: Vec::new() })
        .unwrap();
    let mut replies = worker.session(outgoing).await.unwrap().into_inner();
    // Lease answers go out at once and the others once durable, so the two answers
    // may come in one message or two; they are matched by call id.
    let mut first = Vec::new();
    while first.len() < 2 {
        let more = tokio::time::timeout(Duration::from_secs(10), replies.next())
            .await
            .expect("answered in time")
            .expect("an answer")
            .unwrap()
            .replies;
        first.extend(more);
    }
    first.sort_by_key(|reply| reply.call_id);
    assert_eq!(first.len(), 2, "{first:?}");
    match &first[0] {
        v1::SessionReply {
            call_id: 1,
            reply: Some(v1::session_reply::Reply::Error(error)),
        } => {
            assert_eq!(error.code, Code::InvalidArgument as i32, "{error:?}");
            assert!(
                error.message.contains("neither")
                    && error.message.contains("same expcluster version"),
                "{error:?}"
            );
        }
        other => panic!("the empty call is refused: {other:?}"),
    }
    let job = match &first[1] {
        v1::SessionReply {
            call_id: 2,
            reply: Some(v1::session_reply::Reply::Lease(leased)),
        } => leased.jobs.first().cloned().expect("the one job is leased"),
        other => panic!("the lease beside it is answered: {other:?}"),
    };
    // The empty message got no answer; the next call on the stream is answered.
    calls
        .unbounded_send(v1::SessionCalls {
            calls: vec![call(
                3,
                Some(v1::session_call::Call::Complete(completion(
                    &worker_id,
                    &job,
                    v1::Outcome::Succeeded,
                ))),
            )],
        })
        .unwrap();
    let next = tokio::time::timeout(Duration::from_secs(10), replies.next())
        .await
        .expect("answered in time")
        .expect("an answer")
        .unwrap()
        .replies;
    assert!(
        matches!(
            next.as_slice(),
            [v1::SessionReply {
                call_id: 3,
                reply: Some(v1::session_reply::Reply::Complete(v1::CompleteResponse {
                    requeued: false
                })),
            }]
        ),
        "{next:?}"
    );
    drop(calls);
}
