//! One termination algebra for every pattern: the run option `termination`
//! ends a run cleanly, and the result names the condition.

mod common;

use std::time::Duration;

use common::*;
use orchestra_core::{
    AgentInput, AgentOutput, EventKind, FnAgent, Handoff, Orchestrator, RunRequest, RunStatus,
    Usage, test_utils::ScriptedAgent,
};
use serde_json::json;

/// An agent that answers "<name>: <task>" and reports `tokens` of usage.
fn costly(name: &'static str, tokens: u64) -> impl orchestra_core::Agent {
    FnAgent::new(
        name,
        format!("{name} agent"),
        move |i: AgentInput, _| async move {
            AgentOutput::text(format!("{name}: {}", i.task)).with_usage(Usage::new(tokens, 0))
        },
    )
}

#[tokio::test]
async fn a_text_mention_ends_a_sequential_pipeline_early() {
    let orch = Orchestrator::new();
    orch.register(tagger("a"));
    orch.register(ScriptedAgent::replying("approver", "APPROVED as is"));
    let c = ScriptedAgent::replying("c", "never");
    let c_calls = c.calls();
    orch.register(c);
    let r = orch
        .run(
            RunRequest::new("sequential", "t")
                .agents(["a", "approver", "c"])
                .option("termination", json!({"text_mention": "APPROVED"})),
        )
        .await
        .unwrap();
    assert_eq!(r.status, RunStatus::Completed);
    assert_eq!(r.termination.as_deref(), Some("text_mention: APPROVED"));
    assert_eq!(r.output.as_deref(), Some("APPROVED as is"));
    assert_eq!(c_calls.load(std::sync::atomic::Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_token_budget_stops_a_run_cleanly_with_a_budget_event() {
    let orch = Orchestrator::new();
    for n in ["a", "b", "c", "d"] {
        orch.register(costly(n, 400));
    }
    let evs = events(
        &orch,
        RunRequest::new("sequential", "t")
            .agents(["a", "b", "c", "d"])
            .option(
                "termination",
                json!({"any": [{"max_tokens": 1000}, {"max_rounds": 10}]}),
            ),
    )
    .await;
    let budget = evs
        .iter()
        .find_map(|e| match &e.kind {
            EventKind::BudgetExceeded {
                budget,
                limit,
                used,
            } => Some((budget.clone(), *limit, *used)),
            _ => None,
        })
        .expect("budget_exceeded event");
    assert_eq!(budget, ("max_tokens".to_owned(), 1000, 1200));
    let r = result_of(&evs);
    assert_eq!(r.status, RunStatus::Completed);
    assert_eq!(r.termination.as_deref(), Some("max_tokens: 1000"));
    assert_eq!(
        r.steps.len(),
        3,
        "stopped after the step that crossed the budget"
    );
    assert_eq!(r.usage.total_tokens, 1200);
    // The budget event comes right before the end of the run.
    let t = types(&evs);
    assert_eq!(&t[t.len() - 2..], ["budget_exceeded", "run_completed"]);
}

#[tokio::test(start_paused = true)]
async fn concurrent_stops_fanning_out_once_enough_answers_are_in() {
    let orch = Orchestrator::new();
    for (n, ms) in [("fast1", 10), ("fast2", 20), ("slow", 10_000)] {
        orch.register(ScriptedAgent::replying(n, n).delay(Duration::from_millis(ms)));
    }
    let r = orch
        .run(
            RunRequest::new("concurrent", "t")
                .agents(["fast1", "fast2", "slow"])
                .options(json!({"aggregator": "all", "termination": {"max_messages": 2}})),
        )
        .await
        .unwrap();
    assert_eq!(r.termination.as_deref(), Some("max_messages: 2"));
    assert!(r.partial);
    assert_eq!(r.output.as_deref(), Some(r#"["fast1","fast2"]"#));
    assert!(
        r.duration_ms < 1000,
        "the slow call was cancelled, not awaited"
    );
}

#[tokio::test]
async fn a_speaker_condition_ends_a_handoff_chain() {
    let orch = Orchestrator::new();
    orch.register(FnAgent::new("triage", "routes", |_, _| async {
        Handoff::new("billing", "money")
    }));
    orch.register(FnAgent::new("billing", "routes on", |_, _| async {
        Handoff::new("refunds", "refund")
    }));
    orch.register(tagger("refunds"));
    let r = orch
        .run(RunRequest::new("handoff", "t").option("termination", json!({"speaker": "billing"})))
        .await
        .unwrap();
    assert_eq!(r.termination.as_deref(), Some("speaker: billing"));
    assert_eq!(r.steps.len(), 2);
    assert_eq!(r.data.unwrap()["pending_handoff"]["to"], "refunds");
}

#[tokio::test]
async fn group_chat_termination_is_the_run_option() {
    let orch = Orchestrator::new();
    orch.register(tagger("a"));
    orch.register(tagger("b"));
    let r = orch
        .run(
            RunRequest::new("group_chat", "t")
                .agents(["a", "b"])
                .options(json!({"max_rounds": 20, "termination": {"all": [{"max_rounds": 3}, {"speaker": "a"}]}})),
        )
        .await
        .unwrap();
    assert_eq!(r.steps.len(), 3);
    assert_eq!(
        r.termination.as_deref(),
        Some("all(max_rounds: 3, speaker: a)")
    );
}

#[tokio::test]
async fn a_condition_ends_a_dynamic_plan_between_steps() {
    let orch = Orchestrator::new();
    orch.register(costly("researcher", 10));
    orch.register(costly("writer", 10));
    let r = orch
        .run(
            RunRequest::new("dynamic", "research facts, then write prose")
                .option("termination", json!({"speaker": "researcher"})),
        )
        .await
        .unwrap();
    assert_eq!(r.status, RunStatus::Completed);
    let t = r.termination.unwrap();
    assert!(t.starts_with("speaker: researcher"), "{t}");
    assert_eq!(r.steps.len(), 1);
}

#[tokio::test]
async fn an_invalid_condition_is_rejected_before_anything_runs() {
    let orch = Orchestrator::new();
    orch.register(tagger("a"));
    let e = orch
        .run(
            RunRequest::new("sequential", "t")
                .agents(["a"])
                .option("termination", json!({"max_vibes": 3})),
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), "invalid_options");
    assert!(e.to_string().contains("options.termination"), "{e}");
}

#[tokio::test]
async fn a_registered_custom_condition_ends_the_run() {
    use orchestra_core::termination::TerminationState;
    let orch = Orchestrator::new();
    orch.register(tagger("a"));
    orch.register(tagger("b"));
    orch.register_condition("nested_twice", |s: &TerminationState<'_>| {
        s.messages
            .last()
            .is_some_and(|m| m.content.matches('(').count() >= 2)
    });
    let r = orch
        .run(
            RunRequest::new("sequential", "t")
                .agents(["a", "b", "a", "b"])
                .option("termination", json!({"custom": "nested_twice"})),
        )
        .await
        .unwrap();
    assert_eq!(r.termination.as_deref(), Some("custom: nested_twice"));
    assert_eq!(r.output.as_deref(), Some("b(a(t))"));
    let e = orch
        .run(
            RunRequest::new("sequential", "t")
                .agents(["a"])
                .option("termination", json!({"any": [{"custom": "nope"}]})),
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), "invalid_options");
    assert!(e.to_string().contains("nope"));
}

#[tokio::test]
async fn an_async_custom_condition_ends_the_run_and_a_panic_counts_as_false() {
    use orchestra_core::termination::TerminationSnapshot;
    let orch = Orchestrator::new();
    orch.register(tagger("a"));
    orch.register(tagger("b"));
    orch.register_async_condition("nested_twice", |s: TerminationSnapshot| async move {
        tokio::time::sleep(Duration::from_millis(2)).await;
        s.messages
            .last()
            .is_some_and(|m| m.content.matches('(').count() >= 2)
    });
    orch.register_async_condition("broken", |s: TerminationSnapshot| async move {
        if s.rounds > 0 {
            panic!("broken condition");
        }
        true
    });
    orch.register_condition(
        "three_rounds",
        |s: &orchestra_core::termination::TerminationState<'_>| s.rounds >= 3,
    );
    let r = orch
        .run(
            RunRequest::new("sequential", "t")
                .agents(["a", "b", "a", "b"])
                .option(
                    "termination",
                    json!({"any": [{"custom": "broken"}, {"custom": "nested_twice"}]}),
                ),
        )
        .await
        .unwrap();
    assert_eq!(r.status, RunStatus::Completed);
    assert_eq!(r.termination.as_deref(), Some("custom: nested_twice"));
    assert_eq!(r.output.as_deref(), Some("b(a(t))"));
    // Synchronous and asynchronous predicates compose.
    orch.register_async_condition("two_messages", |s: TerminationSnapshot| async move {
        s.state().messages.len() >= 2
    });
    let r = orch
        .run(
            RunRequest::new("group_chat", "t")
                .agents(["a", "b"])
                .option("max_rounds", 10)
                .option(
                    "termination",
                    json!({"all": [{"custom": "three_rounds"}, {"custom": "two_messages"}]}),
                ),
        )
        .await
        .unwrap();
    assert_eq!(r.status, RunStatus::Completed);
    assert_eq!(
        r.termination.as_deref(),
        Some("all(custom: three_rounds, custom: two_messages)")
    );
    assert_eq!(r.steps.len(), 3);
    // "a" then "b", ended early by the named condition.
    let sequential_until = |name: &str| {
        orch.run(
            RunRequest::new("sequential", "t")
                .agents(["a", "b"])
                .option("termination", json!({"custom": name})),
        )
    };
    // A synchronous predicate that panics counts as false too.
    orch.register_condition(
        "sync_broken",
        |_: &orchestra_core::termination::TerminationState<'_>| -> bool {
            panic!("broken condition")
        },
    );
    let r = sequential_until("sync_broken").await.unwrap();
    assert_eq!(r.status, RunStatus::Completed);
    assert_eq!(r.termination, None);
    assert_eq!(r.steps.len(), 2);
    // Registering a synchronous predicate under the name replaces it.
    orch.register_condition(
        "broken",
        |_: &orchestra_core::termination::TerminationState<'_>| true,
    );
    let r = sequential_until("broken").await.unwrap();
    assert_eq!(r.termination.as_deref(), Some("custom: broken"));
    assert_eq!(r.steps.len(), 1);
}

#[tokio::test]
async fn stop_ends_a_run_cleanly_at_the_next_step() {
    use futures::StreamExt;
    use std::sync::Arc;
    let orch = Orchestrator::new();
    orch.register(tagger("a"));
    // "b" answers only once the test lets it, so the stop lands mid-run.
    let go = Arc::new(tokio::sync::Notify::new());
    let g = go.clone();
    orch.register(FnAgent::new("b", "waits", move |i: AgentInput, _| {
        let g = g.clone();
        async move {
            g.notified().await;
            format!("b({})", i.task)
        }
    }));
    let mut stream = orch
        .stream(
            RunRequest::new("group_chat", "t")
                .agents(["a", "b"])
                .option("max_rounds", 50),
        )
        .unwrap();
    let run_id = stream.run_id().to_owned();
    let mut last = None;
    while let Some(ev) = stream.next().await {
        if let EventKind::AgentStarted { agent, .. } = &ev.kind
            && agent == "b"
        {
            assert!(orch.stop(&run_id, "the user has enough"));
            go.notify_one();
        }
        last = Some(ev);
    }
    let last = last.unwrap();
    assert_eq!(last.type_name(), "run_completed");
    let r = last.kind.result().unwrap();
    assert_eq!(r.status, RunStatus::Completed);
    assert_eq!(
        r.termination.as_deref(),
        Some("stopped: the user has enough")
    );
    assert_eq!(
        r.steps.len(),
        2,
        "the step in flight finished; no new step started"
    );
    assert!(!orch.stop(&run_id, "again"), "no longer running");
}
