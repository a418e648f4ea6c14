//! The event stream's contract, and typed errors for bad requests.

mod common;

use std::sync::{
    Arc,
    atomic::{AtomicU32, Ordering},
};

use common::*;
use orchestra_core::{
    AgentContext, AgentInput, EVENT_SCHEMA_VERSION, EventKind, FnAgent, OrchestrationEvent,
    Orchestrator, RunRequest,
};
use serde_json::json;

#[tokio::test]
async fn events_are_numbered_in_order_and_end_with_the_result() {
    let orch = Orchestrator::new();
    orch.register(FnAgent::new(
        "streamer",
        "streams tokens",
        |_: AgentInput, ctx: AgentContext| async move {
            for t in ["Hel", "lo"] {
                ctx.delta(t);
            }
            "Hello"
        },
    ));
    for name in ["x", "y", "z"] {
        orch.register(tagger(name));
    }
    let evs = events(
        &orch,
        RunRequest::new("concurrent", "t").agents(["streamer", "x", "y", "z"]),
    )
    .await;
    let seqs: Vec<u64> = evs.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=evs.len() as u64).collect::<Vec<_>>());
    assert_eq!(evs[0].type_name(), "run_started");
    assert!(evs.last().unwrap().is_terminal());
    assert_eq!(evs.iter().filter(|e| e.is_terminal()).count(), 1);
    let run_id = &evs[0].run_id;
    assert!(
        evs.iter()
            .all(|e| &e.run_id == run_id && e.schema_version == EVENT_SCHEMA_VERSION)
    );
    let deltas: Vec<_> = evs
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::AgentDelta { delta, .. } => Some(delta.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(deltas, ["Hel", "lo"]);
    // Each agent's started comes before its completed.
    for name in ["streamer", "x", "y", "z"] {
        let pos = |t: &str| {
            evs.iter()
                .position(|e| e.type_name() == t && json_of(e)["agent"] == name)
                .unwrap()
        };
        assert!(pos("agent_started") < pos("agent_completed"), "{name}");
    }
    // Every event survives a JSON round trip unchanged.
    for e in &evs {
        let back: OrchestrationEvent = serde_json::from_value(json_of(e)).unwrap();
        assert_eq!(&back, e);
    }
}

#[tokio::test]
async fn an_observed_run_sees_the_events_a_stream_would_and_lends_the_result() {
    let orch = Orchestrator::new();
    for name in ["a", "b", "c"] {
        orch.register(tagger(name));
    }
    let request = |session: &str| {
        RunRequest::new("sequential", "t")
            .agents(["a", "b", "c"])
            .session(session)
    };
    let streamed = events(&orch, request("streamed")).await;
    let seen = Arc::new(std::sync::Mutex::new(Vec::<OrchestrationEvent>::new()));
    let log = seen.clone();
    let result = orch
        .run_observed(
            request("observed"),
            tokio_util::sync::CancellationToken::new(),
            Arc::new(move |e: &OrchestrationEvent| log.lock().unwrap().push(e.clone())),
        )
        .await
        .unwrap();
    let observed = seen.lock().unwrap().clone();
    assert_eq!(types(&observed), types(&streamed));
    let seqs: Vec<u64> = observed.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=observed.len() as u64).collect::<Vec<_>>());
    assert!(observed.iter().all(|e| e.run_id == result.run_id));
    // The terminal event carried exactly the result that was returned.
    assert_eq!(observed.last().and_then(|e| e.kind.result()), Some(&result));
    assert_eq!(result.output.as_deref(), Some("c(b(a(t)))"));
    let session = orch.get_session("observed").await.unwrap().unwrap();
    assert_eq!(session.runs, vec![result]);
}

#[tokio::test]
async fn an_observed_run_that_is_invalid_runs_nothing_and_observes_nothing() {
    let orch = Orchestrator::new();
    let seen = Arc::new(AtomicU32::new(0));
    let count = seen.clone();
    let err = orch
        .run_attached(
            RunRequest::new("sequential", "t").agents(["nobody"]),
            tokio_util::sync::CancellationToken::new(),
            Arc::new(move |_: &OrchestrationEvent| {
                count.fetch_add(1, Ordering::SeqCst);
            }),
        )
        .await
        .unwrap_err();
    assert_eq!(err.info().code, "unknown_agent");
    assert_eq!(seen.load(Ordering::SeqCst), 0);
}

fn json_of(e: &OrchestrationEvent) -> serde_json::Value {
    serde_json::to_value(e).unwrap()
}

#[tokio::test]
async fn bad_requests_fail_with_a_typed_error_before_any_agent_runs() {
    let orch = Orchestrator::new();
    let calls = Arc::new(AtomicU32::new(0));
    let c = calls.clone();
    orch.register(FnAgent::new("a", "counts calls", move |_, _| {
        c.fetch_add(1, Ordering::SeqCst);
        async { "ok" }
    }));
    let cases: Vec<(RunRequest, &str, &str)> = vec![
        (
            RunRequest::new("pipeline", "t").agents(["a"]),
            "unknown_pattern",
            "pipeline",
        ),
        (
            RunRequest::new("sequential", "t").agents(["a", "ghost"]),
            "unknown_agent",
            "ghost",
        ),
        (
            RunRequest::new("sequential", "t"),
            "no_agents",
            "sequential",
        ),
        (
            RunRequest::new("concurrent", "t").agents(Vec::<String>::new()),
            "no_agents",
            "concurrent",
        ),
        (
            RunRequest::new("concurrent", "t")
                .agents(["a"])
                .option("aggregator", "loudest"),
            "invalid_options",
            "options.aggregator",
        ),
        (
            RunRequest::new("group_chat", "t")
                .agents(["a"])
                .option("max_rounds", "many"),
            "invalid_options",
            "options.max_rounds",
        ),
        (
            RunRequest::new("group_chat", "t")
                .agents(["a"])
                .option("manager", "nobody"),
            "invalid_options",
            "options.manager",
        ),
        (
            RunRequest::new("concurrent", "t")
                .agents(["a"])
                .option("aggregator", "agent"),
            "invalid_options",
            "options.summarizer",
        ),
        (
            RunRequest::new("handoff", "t").option("start", "ghost"),
            "invalid_options",
            "options.start",
        ),
        (
            RunRequest::new("sequential", "t")
                .agents(["a"])
                .option("timeout_ms", -1),
            "invalid_options",
            "options.timeout_ms",
        ),
        (
            RunRequest::new("sequential", "t")
                .agents(["a"])
                .option("fallbacks", json!({"a": ["ghost"]})),
            "unknown_agent",
            "ghost",
        ),
        (
            RunRequest::new("sequential", "t")
                .agents(["a"])
                .options(json!([1])),
            "invalid_options",
            "options",
        ),
        (
            RunRequest::new("sequential", "t")
                .agents(["a"])
                .session("no spaces"),
            "invalid_session_id",
            "not allowed",
        ),
        (
            RunRequest::new("sequential", "  ").agents(["a"]),
            "invalid_request",
            "task",
        ),
    ];
    for (req, code, mentions) in cases {
        let e = orch.run(req.clone()).await.unwrap_err();
        assert_eq!(e.code(), code, "{req:?}");
        assert!(e.is_invalid_request());
        assert!(
            e.to_string().contains(mentions),
            "{e} should mention {mentions}"
        );
        assert_eq!(orch.stream(req).err().map(|e| e.code()), Some(code));
    }
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    assert!(
        orch.list_sessions(Default::default())
            .await
            .unwrap()
            .is_empty(),
        "nothing was written"
    );
}

#[tokio::test]
async fn a_request_built_from_json_runs_like_one_built_in_code() {
    let orch = Orchestrator::new();
    orch.register(tagger("a"));
    orch.register(tagger("b"));
    let req = RunRequest::from_json(
        r#"{"pattern": "concurrent", "task": "t", "agents": ["a", "b"],
            "options": {"aggregator": "all", "timeout_ms": 1000}, "metadata": {"user": "u1"}}"#,
    )
    .unwrap();
    let r = orch.run(req).await.unwrap();
    assert_eq!(r.output.as_deref(), Some(r#"["a(t)","b(t)"]"#));
}

#[tokio::test]
async fn a_caller_chosen_run_id_is_used_once() {
    let orch = Orchestrator::new();
    orch.register(tagger("a"));
    let req = RunRequest::new("sequential", "t")
        .agents(["a"])
        .session("s")
        .run_id("run-42");
    let r = orch.run(req.clone()).await.unwrap();
    assert_eq!(r.run_id, "run-42");
    let again = orch.run(req).await.unwrap();
    assert_eq!(again.status, orchestra_core::RunStatus::Failed);
    assert_eq!(again.error.unwrap().code, "invalid_request");
    let s = orch.get_session("s").await.unwrap().unwrap();
    assert_eq!(s.runs.len(), 1, "the first record is untouched");
    assert_eq!(s.runs[0].status, orchestra_core::RunStatus::Completed);
    let bad = RunRequest::new("sequential", "t")
        .agents(["a"])
        .run_id("has space");
    assert_eq!(orch.run(bad).await.unwrap_err().code(), "invalid_request");
}
