//! Typed handoff payloads, several handoffs in one turn (the guard), and
//! parallel handoffs whose answers come back to the agent that asked.

mod common;

use std::sync::{
    Arc, Mutex,
    atomic::{AtomicU32, Ordering},
};

use common::*;
use orchestra_core::{
    AgentContext, AgentInput, AgentOutput, EventKind, FnAgent, Handoff, Orchestrator, RunRequest,
    RunStatus,
};
use serde_json::{Value, json};

fn invoice_schema() -> Value {
    json!({"type": "object", "required": ["invoice_id"],
           "properties": {"invoice_id": {"type": "string"}}})
}

/// `billing` answers with the payload it was handed.
fn billing(seen: Arc<Mutex<Vec<Option<Value>>>>) -> impl orchestra_core::Agent {
    FnAgent::new(
        "billing",
        "invoices",
        move |_: AgentInput, ctx: AgentContext| {
            let payload = ctx.handoff().and_then(|h| h.payload.clone());
            seen.lock().unwrap().push(payload.clone());
            async move { format!("billing got {}", payload.unwrap_or(Value::Null)) }
        },
    )
}

#[tokio::test]
async fn a_typed_payload_reaches_the_target_and_a_bad_one_is_refused() {
    for (payload, ok) in [
        (Some(json!({"invoice_id": "A-1"})), true),
        (Some(json!({"invoice_id": 7})), false),
        (None, false),
    ] {
        let orch = Orchestrator::new();
        let p = payload.clone();
        orch.register(FnAgent::new("triage", "routes", move |_, _| {
            let h = Handoff::new("billing", "invoice question");
            let h = match p.clone() {
                Some(p) => h.with_payload(p),
                None => h,
            };
            async move { h }
        }));
        let seen = Arc::new(Mutex::new(Vec::new()));
        orch.register(billing(seen.clone()));
        let r = orch
            .run(
                RunRequest::new("handoff", "refund?")
                    .agents(["triage", "billing"])
                    .option("payload_schemas", json!({"billing": invoice_schema()})),
            )
            .await
            .unwrap();
        if ok {
            assert_eq!(r.status, RunStatus::Completed, "{:?}", r.error);
            assert_eq!(
                r.output.as_deref(),
                Some(r#"billing got {"invoice_id":"A-1"}"#)
            );
            assert_eq!(*seen.lock().unwrap(), [payload]);
        } else {
            assert_eq!(r.status, RunStatus::Failed);
            assert_eq!(r.error.unwrap().code, "invalid_handoff_payload");
            assert!(seen.lock().unwrap().is_empty(), "billing never ran");
        }
    }
}

#[tokio::test]
async fn payload_schemas_are_checked_when_the_run_is_validated() {
    let orch = Orchestrator::new();
    orch.register(tagger("triage"));
    orch.register(tagger("billing"));
    let bad = RunRequest::new("handoff", "t")
        .agents(["triage", "billing"])
        .option("payload_schemas", json!({"billing": {"type": "nonsense"}}));
    assert_eq!(orch.run(bad).await.unwrap_err().code(), "invalid_options");
    let unknown = RunRequest::new("handoff", "t")
        .agents(["triage", "billing"])
        .option("payload_schemas", json!({"ghost": {}}));
    assert_eq!(
        orch.run(unknown).await.unwrap_err().code(),
        "invalid_options"
    );
}

/// `triage` asks for billing and sales at once on its first turn, then
/// answers with what it sees in the conversation.
fn fan_out_triage(calls: Arc<AtomicU32>) -> impl orchestra_core::Agent {
    FnAgent::new("triage", "routes", move |i: AgentInput, _| {
        let n = calls.fetch_add(1, Ordering::SeqCst);
        async move {
            if n == 0 {
                let mut out = AgentOutput::handoff(Handoff::new("billing", "check the invoice"));
                out.handoffs = vec![
                    Handoff::new("sales", "offer a discount"),
                    Handoff::new("support", "check the ticket"),
                ];
                out
            } else {
                let heard: Vec<String> = i
                    .messages
                    .iter()
                    .filter(|m| matches!(m.name.as_deref(), Some("billing" | "sales" | "support")))
                    .map(|m| m.content.clone())
                    .collect();
                AgentOutput::text(format!("summary: {}", heard.join(" + ")))
            }
        }
    })
}

#[tokio::test]
async fn several_handoffs_in_one_turn_take_the_first_and_say_so() {
    let orch = Orchestrator::new();
    orch.register(fan_out_triage(Arc::new(AtomicU32::new(0))));
    orch.register(tagger("billing"));
    let sales_calls = Arc::new(AtomicU32::new(0));
    let s = sales_calls.clone();
    orch.register(FnAgent::new("sales", "sells", move |_, _| {
        s.fetch_add(1, Ordering::SeqCst);
        async { "sold" }
    }));
    orch.register(tagger("support"));
    let evs = events(
        &orch,
        RunRequest::new("handoff", "t").agents(["triage", "billing", "sales", "support"]),
    )
    .await;
    let r = result_of(&evs);
    assert_eq!(r.output.as_deref(), Some("billing(t)"));
    let conflict = evs
        .iter()
        .find_map(|e| match &e.kind {
            EventKind::HandoffConflict {
                agent,
                requested,
                chosen,
                ..
            } => Some((agent.clone(), requested.clone(), chosen.clone())),
            _ => None,
        })
        .expect("a handoff_conflict event");
    assert_eq!(
        conflict,
        (
            "triage".to_owned(),
            vec![
                "billing".to_owned(),
                "sales".to_owned(),
                "support".to_owned()
            ],
            "billing".to_owned()
        )
    );
    assert_eq!(sales_calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_parallel_handoff_joins_three_agents_and_comes_back_to_the_agent_that_asked() {
    let orch = Orchestrator::new();
    let triage_calls = Arc::new(AtomicU32::new(0));
    orch.register(fan_out_triage(triage_calls.clone()));
    // billing answers only after support was called, so the answers
    // complete out of order; they still join in the order asked for.
    let support_called = Arc::new(tokio::sync::Notify::new());
    let wait = support_called.clone();
    orch.register(FnAgent::new(
        "billing",
        "invoices",
        move |i: AgentInput, _| {
            let wait = wait.clone();
            async move {
                wait.notified().await;
                format!("billing({})", i.task)
            }
        },
    ));
    orch.register(tagger("sales"));
    let called = support_called.clone();
    orch.register(FnAgent::new(
        "support",
        "tickets",
        move |i: AgentInput, _| {
            called.notify_one();
            async move { format!("support({})", i.task) }
        },
    ));
    let evs = events(
        &orch,
        RunRequest::new("handoff", "t")
            .agents(["triage", "billing", "sales", "support"])
            .option("parallel_handoffs", true),
    )
    .await;
    let r = result_of(&evs);
    assert_eq!(r.status, RunStatus::Completed, "{:?}", r.error);
    assert_eq!(
        r.output.as_deref(),
        Some(
            "summary: billing(check the invoice) + sales(offer a discount) + support(check the ticket)"
        )
    );
    assert_eq!(triage_calls.load(Ordering::SeqCst), 2);
    let handoffs: Vec<String> = evs
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Handoff { to, .. } => Some(to.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(handoffs, ["billing", "sales", "support"]);
    assert_eq!(r.steps.len(), 5);
    assert!(!types(&evs).contains(&"handoff_conflict"));
}
