//! Sessions: continuing conversations, shared state, and concurrent writers.

mod common;

use std::sync::Arc;

use common::*;
use orchestra_core::{
    AgentInput, AgentOutput, FnAgent, Orchestrator, Role, RunRequest, RunStatus,
    session::{MemoryStore, MemoryStoreConfig, SessionStore},
    test_utils::GateAgent,
};
use serde_json::json;

#[tokio::test]
async fn continuing_a_session_gives_agents_the_earlier_conversation() {
    let orch = Orchestrator::new();
    orch.register(tagger("a"));
    let (b, seen) = recorder("b", "second answer");
    orch.register(b);
    let first = orch
        .run(RunRequest::new("sequential", "first question").agents(["a"]))
        .await
        .unwrap();
    orch.run(
        RunRequest::new("sequential", "second question")
            .agents(["b"])
            .session(&first.session_id),
    )
    .await
    .unwrap();
    let msgs: Vec<_> = seen.lock().unwrap()[0]
        .messages
        .iter()
        .map(|m| (m.role, m.content.clone()))
        .collect();
    assert_eq!(
        msgs,
        [
            (Role::User, "first question".to_owned()),
            (Role::Assistant, "a(first question)".into()),
            (Role::User, "second question".into()),
        ]
    );
    let s = orch.get_session(&first.session_id).await.unwrap().unwrap();
    assert_eq!(s.messages.len(), 4);
    assert_eq!(s.runs.len(), 2);
    assert!(s.runs.iter().all(|r| r.status == RunStatus::Completed));
    assert!(orch.delete_session(&first.session_id).await.unwrap());
    assert!(orch.get_session(&first.session_id).await.unwrap().is_none());
    assert!(!orch.delete_session(&first.session_id).await.unwrap());
}

#[tokio::test]
async fn agents_share_state_through_merge_patches() {
    let orch = Orchestrator::new();
    orch.register(FnAgent::new(
        "counter",
        "counts",
        |i: AgentInput, _| async move {
            let n = i.state["count"].as_i64().unwrap_or(0);
            AgentOutput::text(format!("count was {n}"))
                .with_state_patch(json!({"count": n + 1, "by": "counter"}))
        },
    ));
    let r = orch
        .run(
            RunRequest::new("sequential", "t")
                .agents(["counter", "counter"])
                .session("state-1"),
        )
        .await
        .unwrap();
    assert_eq!(
        r.output.as_deref(),
        Some("count was 1"),
        "the second step sees the first's patch"
    );
    let s = orch.get_session("state-1").await.unwrap().unwrap();
    assert_eq!(s.state, json!({"count": 2, "by": "counter"}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_concurrent_runs_on_one_session_all_land() {
    let store = Arc::new(MemoryStore::new());
    let orch = Orchestrator::builder().store(store.clone()).build();
    orch.register(tagger("a"));
    orch.register(tagger("b"));
    let runs = (0..64).map(|i| {
        let orch = orch.clone();
        tokio::spawn(async move {
            orch.run(
                RunRequest::new("sequential", format!("task {i}"))
                    .agents(["a", "b"])
                    .session("shared"),
            )
            .await
            .unwrap()
        })
    });
    for r in futures::future::join_all(runs).await {
        assert_eq!(r.unwrap().status, RunStatus::Completed);
    }
    let s = store.get("shared").await.unwrap().unwrap();
    assert_eq!(s.runs.len(), 64);
    assert_eq!(s.messages.len(), 64 * 3);
    for i in 0..64 {
        let task = format!("task {i}");
        let at = s
            .messages
            .iter()
            .position(|m| m.content == task)
            .expect("user message kept");
        // Each run's messages stay together and in order.
        assert_eq!(s.messages[at + 1].content, format!("a({task})"));
        assert_eq!(s.messages[at + 2].content, format!("b(a({task}))"));
    }
    // Every write bumped the version: one at each run's start and end.
    assert_eq!(s.version, 128);
}

#[tokio::test]
async fn the_memory_store_never_grows_past_its_bound() {
    let store = Arc::new(MemoryStore::with_config(MemoryStoreConfig {
        ttl: None,
        max_sessions: 10,
    }));
    let orch = Orchestrator::builder().store(store.clone()).build();
    orch.register(tagger("a"));
    for _ in 0..50 {
        orch.run(RunRequest::new("sequential", "t").agents(["a"]))
            .await
            .unwrap();
    }
    assert_eq!(store.len(), 10);
}

/// A request checked first and run later runs as `run` would: with the ids
/// the check fixed, and written once when it named neither its session
/// nor its run.
#[tokio::test]
async fn a_checked_request_runs_with_the_ids_its_check_fixed() {
    let orch = Orchestrator::new();
    orch.register(tagger("a"));
    let bad = orch.check(RunRequest::new("sequential", "q").agents(["nobody"]));
    assert_eq!(bad.unwrap_err().code(), "unknown_agent");
    let unnamed = orch
        .check(RunRequest::new("sequential", "q").agents(["a", "a"]))
        .unwrap();
    let named = orch
        .check(
            RunRequest::new("sequential", "q")
                .agents(["a", "a"])
                .session("checked"),
        )
        .unwrap();
    assert_eq!(named.session_id(), "checked");
    let (run_id, session_id) = (unnamed.run_id().to_owned(), unnamed.session_id().to_owned());
    let (first, second) = (
        orch.run_checked(unnamed).await,
        orch.run_checked(named).await,
    );
    assert_eq!(
        (first.run_id, first.session_id.clone()),
        (run_id, session_id)
    );
    assert_eq!(first.status, RunStatus::Completed);
    assert_eq!(first.output, second.output);
    let versions = (
        orch.get_session(&first.session_id)
            .await
            .unwrap()
            .unwrap()
            .version,
        orch.get_session("checked").await.unwrap().unwrap().version,
    );
    assert_eq!(versions, (1, 2));
}

#[tokio::test]
async fn a_run_in_a_fresh_session_writes_it_once_at_its_end() {
    let orch = Orchestrator::new();
    orch.register(tagger("a"));
    let gate = GateAgent::new("gate");
    let (entered, release) = (gate.entered(), gate.release());
    orch.register(gate);
    // A run in a session the caller names writes its start and its end.
    let normal = orch
        .run(
            RunRequest::new("sequential", "q")
                .agents(["a", "a"])
                .session("named"),
        )
        .await
        .unwrap();
    let fresh = orch
        .run(
            RunRequest::new("sequential", "q")
                .agents(["a", "a"])
                .fresh_session(),
        )
        .await
        .unwrap();
    // A run that names neither its session nor its run is run as fresh.
    let unnamed = orch
        .run(RunRequest::new("sequential", "q").agents(["a", "a"]))
        .await
        .unwrap();
    assert_eq!(fresh.output, normal.output);
    let (s1, s2) = (
        orch.get_session(&normal.session_id).await.unwrap().unwrap(),
        orch.get_session(&fresh.session_id).await.unwrap().unwrap(),
    );
    let s3 = orch
        .get_session(&unnamed.session_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((s1.version, s2.version, s3.version), (2, 1, 1));
    assert_eq!(s3.runs[0].status, RunStatus::Completed);
    let text = |s: &orchestra_core::session::Session| -> Vec<(Role, String)> {
        s.messages
            .iter()
            .map(|m| (m.role, m.content.clone()))
            .collect()
    };
    assert_eq!(text(&s1), text(&s2));
    // In time order: the task, then the answers.
    for s in [&s1, &s2] {
        assert!(
            s.messages
                .windows(2)
                .all(|w| w[0].created_at <= w[1].created_at),
            "{:?}",
            s.messages
        );
    }
    assert_eq!(s2.runs[0].steps.len(), 2);

    // In flight, the run is not in the store; ended, it is.
    let gated = |session: &'static str, checkpoint: bool| {
        let o = orch.clone();
        tokio::spawn(async move {
            o.run(
                RunRequest::new("sequential", "q")
                    .agents(["gate"])
                    .session(session)
                    .option("checkpoint", checkpoint)
                    .fresh_session(),
            )
            .await
        })
    };
    let running = gated("quiet", false);
    entered.notified().await;
    assert!(orch.get_session("quiet").await.unwrap().is_none());
    release.notify_one();
    assert_eq!(running.await.unwrap().unwrap().status, RunStatus::Completed);
    assert_eq!(orch.get_session("quiet").await.unwrap().unwrap().version, 1);

    // A checkpointed run keeps its start record: it must be found to be
    // resumed.
    let checkpointed = gated("resumable", true);
    entered.notified().await;
    let seen = orch.get_session("resumable").await.unwrap().unwrap();
    assert_eq!(seen.runs[0].status, RunStatus::Running);
    release.notify_one();
    assert_eq!(
        checkpointed.await.unwrap().unwrap().status,
        RunStatus::Completed
    );

    // A caller that goes away mid-run still leaves the run, cancelled.
    let dropped = gated("gone", false);
    entered.notified().await;
    dropped.abort();
    let _ = dropped.await;
    let mut status = None;
    for _ in 0..100 {
        if let Some(s) = orch.get_session("gone").await.unwrap() {
            status = Some(s.runs[0].status);
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(status, Some(RunStatus::Cancelled));
}
