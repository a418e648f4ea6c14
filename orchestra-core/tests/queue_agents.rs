//! Queue agents on real queues: the five patterns over Redis Streams, core
//! NATS and JetStream; load sharing; a killed worker's request finished by
//! another; a silent worker timing out into a fallback; late replies
//! discarded.
//!
//! Needs Redis at 127.0.0.1:6379 and NATS with JetStream at 127.0.0.1:4222
//! (`scripts/ensure-services` starts both). Every test uses a prefix of its
//! own, so they run in parallel.

#![cfg(all(feature = "redis", feature = "nats"))]

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use orchestra_core::{
    Agent, AgentContext, AgentInput, AgentOutput, FnAgent, Handoff, Orchestrator, RunRequest,
    RunStatus,
    agents::queue::{QueueAgent, QueueConfig, QueueTransport},
    worker::{Worker, WorkerHandle},
};
use serde_json::json;
use tokio::sync::{Notify, oneshot};
use tokio_util::sync::CancellationToken;

#[derive(Clone, Copy, Debug)]
enum Kind {
    Redis,
    Nats,
    JetStream,
}

struct Queue {
    transport: QueueTransport,
    /// The agents this test queued for, whose queues it removes at the end.
    names: Mutex<HashSet<String>>,
}

impl Queue {
    async fn new(kind: Kind) -> Self {
        let prefix = format!("t{}", uuid::Uuid::new_v4().simple());
        let config = QueueConfig::default()
            .prefix(prefix.clone())
            .claim_idle(Duration::from_millis(600))
            .block(Duration::from_millis(200))
            .jetstream(matches!(kind, Kind::JetStream));
        let url = match kind {
            Kind::Redis => "redis://127.0.0.1:6379",
            Kind::Nats | Kind::JetStream => "nats://127.0.0.1:4222",
        };
        let transport = QueueTransport::connect(url, config)
            .await
            .unwrap_or_else(|e| panic!("{url} must be running (see scripts/ensure-services): {e}"));
        transport
            .ping()
            .await
            .unwrap_or_else(|e| panic!("{url} must be running (see scripts/ensure-services): {e}"));
        Self {
            transport,
            names: Mutex::default(),
        }
    }

    fn agent(&self, name: &str, description: &str) -> QueueAgent {
        self.names.lock().unwrap().insert(name.to_owned());
        QueueAgent::builder(name, self.transport.clone())
            .description(description)
            .timeout(Duration::from_secs(20))
            .build()
            .unwrap()
    }

    async fn serve(&self, agent: impl Agent + 'static) -> WorkerHandle {
        self.names.lock().unwrap().insert(agent.name().to_owned());
        Worker::new(agent, self.transport.clone())
            .start(CancellationToken::new())
            .await
            .unwrap()
    }

    /// Removes the queues (Redis streams, JetStream streams) of this test.
    async fn cleanup(self) {
        let names: Vec<String> = self.names.lock().unwrap().drain().collect();
        for name in names {
            self.transport.remove_queue(&name).await.unwrap();
        }
    }
}

fn tagger(name: &'static str) -> impl Agent {
    FnAgent::new(name, format!("{name} agent"), move |i: AgentInput, _| {
        futures::future::ready(format!("{name}({})", i.task))
    })
}

async fn five_patterns(kind: Kind) {
    let q = Queue::new(kind).await;
    let orch = Orchestrator::new();
    let mut workers = Vec::new();
    for name in ["a", "b", "c"] {
        orch.register(q.agent(name, &format!("{name} agent")));
    }
    workers.push(q.serve(tagger("a")).await);
    workers.push(q.serve(tagger("b")).await);
    workers.push(q.serve(tagger("c")).await);

    // sequential: each agent gets the previous output.
    let r = orch
        .run(RunRequest::new("sequential", "t").agents(["a", "b", "c"]))
        .await
        .unwrap();
    assert_eq!(r.status, RunStatus::Completed, "{kind:?}: {:?}", r.error);
    assert_eq!(r.output.as_deref(), Some("c(b(a(t)))"), "{kind:?}");

    // concurrent: all at once, results aggregated.
    let r = orch
        .run(RunRequest::new("concurrent", "t").agents(["a", "b"]))
        .await
        .unwrap();
    assert_eq!(r.status, RunStatus::Completed, "{kind:?}: {:?}", r.error);
    let out = r.output.unwrap();
    assert!(
        out.contains("a(t)") && out.contains("b(t)"),
        "{kind:?}: {out}"
    );

    // handoff: the handoff travels in the reply.
    orch.register(q.agent("triage", "routes"));
    orch.register(q.agent("billing", "bills"));
    workers.push(
        q.serve(FnAgent::new("triage", "routes", |_, _| async {
            Handoff::new("billing", "a billing question")
        }))
        .await,
    );
    workers.push(
        q.serve(FnAgent::new(
            "billing",
            "bills",
            |i: AgentInput, _| async move {
                AgentOutput::text(format!("billed after {} messages", i.messages.len()))
                    .with_state_patch(json!({"billed": true}))
            },
        ))
        .await,
    );
    let r = orch
        .run(RunRequest::new("handoff", "my invoice").agents(["triage", "billing"]))
        .await
        .unwrap();
    assert_eq!(r.status, RunStatus::Completed, "{kind:?}: {:?}", r.error);
    assert_eq!(r.agents, ["triage", "billing"]);
    assert!(r.output.unwrap().starts_with("billed after"), "{kind:?}");
    let session = orch.get_session(&r.session_id).await.unwrap().unwrap();
    assert_eq!(session.state["billed"], json!(true), "{kind:?}");

    // group chat: round robin over the shared transcript.
    let r = orch
        .run(
            RunRequest::new("group_chat", "t")
                .agents(["a", "b"])
                .option("max_rounds", 3),
        )
        .await
        .unwrap();
    assert_eq!(r.status, RunStatus::Completed, "{kind:?}: {:?}", r.error);
    assert_eq!(r.termination.as_deref(), Some("max_rounds: 3"));
    assert_eq!(r.steps.len(), 3);

    // dynamic: the heuristic planner reads the queue agents' descriptions.
    orch.register(q.agent("researcher", "finds facts and sources"));
    orch.register(q.agent("writer", "writes articles"));
    workers.push(q.serve(tagger("researcher")).await);
    workers.push(q.serve(tagger("writer")).await);
    let task = "Find facts about tides, then write an article";
    let r = orch
        .run(RunRequest::new("dynamic", task).agents(["researcher", "writer"]))
        .await
        .unwrap();
    assert_eq!(r.status, RunStatus::Completed, "{kind:?}: {:?}", r.error);
    assert_eq!(r.output.unwrap(), format!("writer(researcher({task}))"));

    for w in &workers {
        w.stop();
    }
    for w in workers {
        w.join().await.unwrap();
    }
    q.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_patterns_run_with_redis_queue_agents() {
    five_patterns(Kind::Redis).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_patterns_run_with_nats_queue_agents() {
    five_patterns(Kind::Nats).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_patterns_run_with_jetstream_queue_agents() {
    five_patterns(Kind::JetStream).await;
}

/// An agent that answers with the id of the worker serving it, after a
/// little work so that one worker cannot drain the queue alone.
fn counted(counts: Arc<Mutex<HashMap<&'static str, u32>>>, worker: &'static str) -> impl Agent {
    FnAgent::new("shared", "shared", move |_, _| {
        *counts.lock().unwrap().entry(worker).or_default() += 1;
        async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            worker.to_owned()
        }
    })
}

async fn load_is_shared(kind: Kind) {
    let q = Queue::new(kind).await;
    let counts = Arc::new(Mutex::new(HashMap::new()));
    let w1 = q.serve(counted(counts.clone(), "w1")).await;
    let w2 = q.serve(counted(counts.clone(), "w2")).await;
    let agent = Arc::new(q.agent("shared", "shared"));
    let calls = (0..20).map(|i| {
        let agent = agent.clone();
        async move {
            agent
                .invoke(
                    AgentInput {
                        task: format!("job {i}"),
                        ..AgentInput::default()
                    },
                    AgentContext::detached("shared"),
                )
                .await
                .unwrap()
                .content
        }
    });
    let answers = futures::future::join_all(calls).await;
    assert_eq!(answers.len(), 20);
    let counts = counts.lock().unwrap().clone();
    assert!(
        counts.get("w1").copied().unwrap_or(0) > 0 && counts.get("w2").copied().unwrap_or(0) > 0,
        "{kind:?}: both workers must get requests: {counts:?}"
    );
    assert_eq!(
        counts.values().sum::<u32>(),
        20,
        "{kind:?}: each request served once"
    );
    w1.stop();
    w2.stop();
    w1.join().await.unwrap();
    w2.join().await.unwrap();
    q.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_redis_workers_share_the_load() {
    load_is_shared(Kind::Redis).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nats_workers_share_the_load() {
    load_is_shared(Kind::Nats).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_jetstream_workers_share_the_load() {
    load_is_shared(Kind::JetStream).await;
}

async fn killed_worker_request_is_finished_by_another(kind: Kind) {
    let q = Queue::new(kind).await;
    let (started_tx, started_rx) = oneshot::channel::<()>();
    let started_tx = Mutex::new(Some(started_tx));
    // The first worker takes the request and hangs without answering.
    let doomed = q
        .serve(FnAgent::new("job", "job", move |_, _| {
            if let Some(tx) = started_tx.lock().unwrap().take() {
                let _ = tx.send(());
            }
            std::future::pending::<String>()
        }))
        .await;
    let orch = Orchestrator::new();
    orch.register(q.agent("job", "job"));
    let run = tokio::spawn(async move {
        orch.run(
            RunRequest::new("sequential", "important")
                .agents(["job"])
                .option("retry", json!({"max_retries": 0})),
        )
        .await
        .unwrap()
    });
    started_rx.await.unwrap();
    // Killed mid-request: no answer, no acknowledgement.
    let doomed_ended = doomed.ended();
    doomed.abort();
    doomed_ended.await;
    let rescuer = q
        .serve(FnAgent::new("job", "job", |i: AgentInput, _| async move {
            format!("rescued: {}", i.task)
        }))
        .await;
    let r = run.await.unwrap();
    assert_eq!(r.status, RunStatus::Completed, "{kind:?}: {:?}", r.error);
    assert_eq!(r.output.as_deref(), Some("rescued: important"));
    assert_eq!(r.steps.len(), 1, "one step, answered once");
    let rescuer_ended = rescuer.ended();
    rescuer.stop();
    rescuer_ended.await;
    rescuer.join().await.unwrap();
    q.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_redis_worker_has_its_request_reclaimed() {
    killed_worker_request_is_finished_by_another(Kind::Redis).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_jetstream_worker_has_its_request_redelivered() {
    killed_worker_request_is_finished_by_another(Kind::JetStream).await;
}

async fn silent_worker_times_out_into_the_fallback(kind: Kind) {
    let q = Queue::new(kind).await;
    let silent = q
        .serve(FnAgent::new("silent", "never answers", |_, _| {
            std::future::pending::<String>()
        }))
        .await;
    let orch = Orchestrator::new();
    orch.register(q.agent("silent", "never answers"));
    orch.register(FnAgent::new(
        "backup",
        "answers",
        |i: AgentInput, _| async move { format!("backup: {}", i.task) },
    ));
    let r = orch
        .run(
            RunRequest::new("sequential", "hello")
                .agents(["silent"])
                .options(json!({
                    "agent_timeout_ms": 300,
                    "retry": {"max_retries": 0},
                    "fallbacks": {"silent": ["backup"]},
                })),
        )
        .await
        .unwrap();
    assert_eq!(r.status, RunStatus::Completed, "{kind:?}: {:?}", r.error);
    assert_eq!(r.output.as_deref(), Some("backup: hello"), "{kind:?}");
    let step = &r.steps[0];
    assert_eq!(step.agent, "backup", "{kind:?}: {step:?}");
    // The silent worker is busy until the request's deadline; stopping
    // waits for that, then returns.
    silent.stop();
    silent.join().await.unwrap();
    q.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_redis_worker_times_out_into_the_fallback() {
    silent_worker_times_out_into_the_fallback(Kind::Redis).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_nats_worker_times_out_into_the_fallback() {
    silent_worker_times_out_into_the_fallback(Kind::Nats).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_jetstream_worker_times_out_into_the_fallback() {
    silent_worker_times_out_into_the_fallback(Kind::JetStream).await;
}

/// The first request blocks until released and then answers "stale"; every
/// later one answers "fresh" at once.
fn late_replier(started: Arc<Notify>, release: Arc<Notify>) -> impl Agent {
    let first = Arc::new(Mutex::new(true));
    FnAgent::new("late", "answers late once", move |i: AgentInput, ctx| {
        let first = std::mem::replace(&mut *first.lock().unwrap(), false);
        let release = release.clone();
        if first {
            started.notify_one();
        }
        async move {
            if first {
                release.notified().await;
                // Ignores its cancellation: it answers after the caller gave up.
                let _ = ctx;
                format!("stale: {}", i.task)
            } else {
                format!("fresh: {}", i.task)
            }
        }
    })
}

async fn late_replies_are_discarded(kind: Kind, cancel: bool) {
    let q = Queue::new(kind).await;
    let started = Arc::new(Notify::new());
    let release = Arc::new(Notify::new());
    let worker = q
        .serve(late_replier(started.clone(), release.clone()))
        .await;
    let orch = Arc::new(Orchestrator::new());
    orch.register(q.agent("late", "answers late once"));
    orch.register(FnAgent::new(
        "backup",
        "answers",
        |i: AgentInput, _| async move { format!("backup: {}", i.task) },
    ));
    let first = if cancel {
        // Cancelled from outside while the worker holds the request.
        let mut stream = orch
            .stream(
                RunRequest::new("sequential", "one")
                    .agents(["late"])
                    .option("retry", json!({"max_retries": 0})),
            )
            .unwrap();
        use futures::StreamExt;
        // Keep the stream polled so the run goes on while the worker picks
        // the request up.
        let mut pending = Vec::new();
        tokio::select! {
            () = started.notified() => {}
            () = async { while let Some(ev) = stream.next().await { pending.push(ev) } } => {}
        }
        stream.cancel();
        let mut last = pending.last().and_then(|e| e.kind.result().cloned());
        while let Some(ev) = stream.next().await {
            last = ev.kind.result().cloned();
        }
        let r = last.expect("a terminal event");
        assert_eq!(r.status, RunStatus::Cancelled, "{kind:?}");
        r
    } else {
        let r = orch
            .run(
                RunRequest::new("sequential", "one")
                    .agents(["late"])
                    .options(json!({
                        "agent_timeout_ms": 300,
                        "retry": {"max_retries": 0},
                        "fallbacks": {"late": ["backup"]},
                    })),
            )
            .await
            .unwrap();
        assert_eq!(r.output.as_deref(), Some("backup: one"), "{kind:?}");
        r
    };
    // Now the worker answers the abandoned request…
    release.notify_one();
    // …and its next request only after that (one at a time), so the stale
    // reply is in flight or gone before this run waits: it must get its own.
    let r = orch
        .run(
            RunRequest::new("sequential", "two")
                .agents(["late"])
                .session(&first.session_id),
        )
        .await
        .unwrap();
    assert_eq!(r.status, RunStatus::Completed, "{kind:?}: {:?}", r.error);
    assert_eq!(r.output.as_deref(), Some("fresh: two"), "{kind:?}");
    let session = orch.get_session(&first.session_id).await.unwrap().unwrap();
    assert!(
        session
            .messages
            .iter()
            .all(|m| !m.content.contains("stale")),
        "{kind:?}: a late reply was applied: {:?}",
        session.messages
    );
    worker.stop();
    worker.join().await.unwrap();
    q.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_redis_reply_after_a_timeout_is_discarded() {
    late_replies_are_discarded(Kind::Redis, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_redis_reply_after_a_cancellation_is_discarded() {
    late_replies_are_discarded(Kind::Redis, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_nats_reply_after_a_timeout_is_discarded() {
    late_replies_are_discarded(Kind::Nats, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_jetstream_reply_after_a_cancellation_is_discarded() {
    late_replies_are_discarded(Kind::JetStream, true).await;
}

#[tokio::test]
async fn bad_urls_and_names_are_refused() {
    let e = QueueTransport::connect("http://127.0.0.1:1", QueueConfig::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), "invalid_queue_url");
    let t = QueueTransport::connect("redis://127.0.0.1:6379", QueueConfig::default())
        .await
        .unwrap();
    let e = QueueAgent::builder("bad name", t).build().unwrap_err();
    assert_eq!(e.code(), "invalid_agent_name");
    // Removing a queue that was never created is not an error.
    let js = Queue::new(Kind::JetStream).await;
    js.transport.remove_queue("never_used").await.unwrap();
    let redis = Queue::new(Kind::Redis).await;
    redis.transport.remove_queue("never_used").await.unwrap();
}

async fn stopping_finishes_the_request_in_flight(kind: Kind) {
    let q = Queue::new(kind).await;
    let started = Arc::new(Notify::new());
    let release = Arc::new(Notify::new());
    let worker = {
        let (started, release) = (started.clone(), release.clone());
        q.serve(FnAgent::new("slow", "slow", move |i: AgentInput, _| {
            let (started, release) = (started.clone(), release.clone());
            async move {
                started.notify_one();
                release.notified().await;
                format!("finished: {}", i.task)
            }
        }))
        .await
    };
    let orch = Arc::new(Orchestrator::new());
    orch.register(q.agent("slow", "slow"));
    let first = tokio::spawn({
        let orch = orch.clone();
        async move {
            orch.run(RunRequest::new("sequential", "one").agents(["slow"]))
                .await
                .unwrap()
        }
    });
    started.notified().await;
    // Asked to stop mid-request: it must still answer this one…
    worker.stop();
    release.notify_one();
    let r = first.await.unwrap();
    assert_eq!(r.status, RunStatus::Completed, "{kind:?}: {:?}", r.error);
    assert_eq!(r.output.as_deref(), Some("finished: one"), "{kind:?}");
    worker.join().await.unwrap();
    // …and take nothing after it.
    let r = orch
        .run(
            RunRequest::new("sequential", "two")
                .agents(["slow"])
                .options(json!({"agent_timeout_ms": 300, "retry": {"max_retries": 0}})),
        )
        .await
        .unwrap();
    assert_eq!(r.status, RunStatus::Failed, "{kind:?}");
    let code = r.error.map(|e| e.code).unwrap_or_default();
    assert!(
        code.contains("timeout") || code.contains("agent"),
        "{kind:?}: {code}"
    );
    q.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_redis_worker_finishes_its_request_and_takes_no_more() {
    stopping_finishes_the_request_in_flight(Kind::Redis).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_nats_worker_finishes_its_request_and_takes_no_more() {
    stopping_finishes_the_request_in_flight(Kind::Nats).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_jetstream_worker_finishes_its_request_and_takes_no_more() {
    stopping_finishes_the_request_in_flight(Kind::JetStream).await;
}
