//! Record and replay: a recorded run replays offline, event by event, without
//! calling any agent.

mod common;

use std::sync::{
    Arc,
    atomic::{AtomicU32, Ordering},
};

use common::*;
use futures::StreamExt;
use orchestra_core::{
    AgentInput, AgentOutput, EventKind, FnAgent, Handoff, OrchestrationEvent, Orchestrator,
    RunRequest, RunStatus, Usage,
};
use serde_json::{Value, json};

/// Everything about an event except when it happened.
fn fingerprint(e: &OrchestrationEvent) -> Value {
    let mut v = serde_json::to_value(e).unwrap();
    strip_times(&mut v);
    v
}

fn strip_times(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for k in [
                "timestamp",
                "created_at",
                "started_at",
                "finished_at",
                "duration_ms",
                "updated_at",
            ] {
                m.remove(k);
            }
            m.values_mut().for_each(strip_times);
        }
        Value::Array(a) => a.iter_mut().for_each(strip_times),
        _ => {}
    }
}

fn counted(orch: &Orchestrator, calls: &Arc<AtomicU32>) {
    let c = calls.clone();
    orch.register(FnAgent::new("researcher", "finds facts and sources", move |i: AgentInput, _| {
        c.fetch_add(1, Ordering::SeqCst);
        async move { AgentOutput::text(format!("facts on {}", i.task)).with_usage(Usage::new(3, 4)) }
    }));
    let c = calls.clone();
    orch.register(FnAgent::new(
        "writer",
        "writes articles",
        move |i: AgentInput, _| {
            c.fetch_add(1, Ordering::SeqCst);
            async move { format!("article from {}", i.task) }
        },
    ));
    let c = calls.clone();
    orch.register(FnAgent::new("triage", "routes", move |_, _| {
        c.fetch_add(1, Ordering::SeqCst);
        async { Handoff::new("writer", "needs prose") }
    }));
}

#[tokio::test]
async fn every_pattern_replays_event_by_event_without_calling_agents() {
    let requests = [
        RunRequest::new("sequential", "tides").agents(["researcher", "writer"]),
        RunRequest::new("handoff", "tides").agents(["triage", "writer"]),
        RunRequest::new("group_chat", "tides")
            .agents(["researcher", "writer"])
            .option("max_rounds", 4),
        RunRequest::new("dynamic", "find facts about tides, then write an article"),
        RunRequest::new("concurrent", "tides")
            .agents(["researcher", "writer"])
            .options(json!({"aggregator": "vote", "max_concurrency": 1})),
    ];
    for request in requests {
        let calls = Arc::new(AtomicU32::new(0));
        let orch = Orchestrator::new();
        counted(&orch, &calls);
        let original = events(&orch, request.clone()).await;
        let record = result_of(&original);
        assert_eq!(record.status, RunStatus::Completed, "{}", request.pattern);
        let called = calls.load(Ordering::SeqCst);

        let replayed: Vec<_> = orch.replay(&record).unwrap().collect().await;
        assert_eq!(
            calls.load(Ordering::SeqCst),
            called,
            "{}: no agent was called",
            request.pattern
        );
        let a: Vec<_> = original.iter().map(fingerprint).collect();
        let b: Vec<_> = replayed.iter().map(fingerprint).collect();
        assert_eq!(a, b, "{}", request.pattern);
        // The original session was not touched by the replay.
        let s = orch.get_session(&record.session_id).await.unwrap().unwrap();
        assert_eq!(s.runs.len(), 1);
    }
}

#[tokio::test]
async fn a_recorded_failure_replays_as_the_same_failure() {
    let orch = Orchestrator::new();
    orch.register(FnAgent::new("ok", "fine", |_, _| async { "fine" }));
    orch.register(FnAgent::new("bad", "fails", |_, _| async {
        Err::<String, _>(orchestra_core::AgentError::msg("disk full"))
    }));
    let record = orch
        .run(RunRequest::new("sequential", "t").agents(["ok", "bad"]))
        .await
        .unwrap();
    assert_eq!(record.status, RunStatus::Failed);
    let replayed = orch.replay(&record).unwrap().result().await.unwrap();
    assert_eq!(replayed.status, RunStatus::Failed);
    assert_eq!(
        replayed.error.unwrap().message,
        record.error.unwrap().message
    );
}

#[tokio::test]
async fn a_replay_that_leaves_the_recording_fails_instead_of_calling_agents() {
    let orch = Orchestrator::new();
    orch.register(tagger("a"));
    orch.register(tagger("b"));
    let mut record = orch
        .run(RunRequest::new("sequential", "t").agents(["a", "b"]))
        .await
        .unwrap();
    record.steps.truncate(1);
    let evs: Vec<_> = orch.replay(&record).unwrap().collect().await;
    let last = evs.last().unwrap();
    let EventKind::RunFailed { error, .. } = &last.kind else {
        panic!("{}", last.type_name())
    };
    assert!(
        error.message.contains("not in the recording"),
        "{}",
        error.message
    );
}
