//! Cost budgets (from agents' prices) and budgets across a session's runs.

mod common;

use std::sync::{
    Arc,
    atomic::{AtomicU32, Ordering},
};

use common::*;
use orchestra_core::{
    AgentInput, AgentOutput, EventKind, FnAgent, Orchestrator, Price, RunRequest, RunStatus, Usage,
};
use serde_json::json;

/// An agent whose every answer uses 30 tokens and costs 0.4 (400 000 micros).
fn billed(name: &'static str, calls: Arc<AtomicU32>) -> impl orchestra_core::Agent {
    FnAgent::new(name, "billed", move |i: AgentInput, _| {
        calls.fetch_add(1, Ordering::SeqCst);
        async move {
            AgentOutput::text(format!("{name}({})", i.task)).with_usage(Usage {
                cost_micros: 400_000,
                ..Usage::new(20, 10)
            })
        }
    })
}

fn budget_events(events: &[orchestra_core::OrchestrationEvent]) -> Vec<(String, u64, u64)> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::BudgetExceeded {
                budget,
                limit,
                used,
            } => Some((budget.clone(), *limit, *used)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_price_turns_tokens_into_cost() {
    let price = Price {
        prompt: 2.5,
        completion: 10.0,
    };
    assert_eq!(price.cost_micros(&Usage::new(1000, 500)), 7_500);
    let mut total = Usage::new(1, 1);
    total += Usage {
        cost_micros: 7_500,
        ..Usage::new(1000, 500)
    };
    assert_eq!((total.total_tokens, total.cost_micros), (1502, 7_500));
}

#[tokio::test]
async fn a_cost_budget_stops_the_run_cleanly() {
    let orch = Orchestrator::new();
    let calls = Arc::new(AtomicU32::new(0));
    for name in ["a", "b", "c", "d", "e"] {
        orch.register(billed(name, calls.clone()));
    }
    let req = RunRequest::new("sequential", "t")
        .agents(["a", "b", "c", "d", "e"])
        .option(
            "termination",
            json!({"any": [{"max_rounds": 10}, {"max_cost": 1.0}]}),
        );
    let events = events(&orch, req).await;
    let result = result_of(&events);
    assert_eq!(result.status, RunStatus::Completed);
    assert_eq!(result.termination.as_deref(), Some("max_cost: 1"));
    assert_eq!(calls.load(Ordering::SeqCst), 3, "stopped once 1.2 > 1.0");
    assert_eq!(result.usage.cost_micros, 1_200_000);
    assert_eq!(
        budget_events(&events),
        [("max_cost_micros".to_owned(), 1_000_000, 1_200_000)]
    );
}

#[tokio::test]
async fn a_session_budget_spans_runs_and_refuses_to_start_when_spent() {
    let orch = Orchestrator::new();
    let calls = Arc::new(AtomicU32::new(0));
    for name in ["a", "b", "c"] {
        orch.register(billed(name, calls.clone()));
    }
    let budget = json!({"max_tokens": 100});
    let run = |_n: u32| {
        RunRequest::new("sequential", "t")
            .agents(["a", "b", "c"])
            .session("budgeted")
            .option("session_budget", budget.clone())
    };
    // 90 tokens: under the budget.
    let first = orch.run(run(1)).await.unwrap();
    assert_eq!(first.termination, None);
    assert_eq!(first.usage.total_tokens, 90);
    // 90 + 30 = 120 after the first step: the run stops there.
    let seen = events(&orch, run(2)).await;
    let second = result_of(&seen);
    assert_eq!(second.status, RunStatus::Completed);
    assert_eq!(
        second.termination.as_deref(),
        Some("session_max_tokens: 100")
    );
    assert_eq!(second.steps.len(), 1);
    assert_eq!(
        budget_events(&seen),
        [("session_max_tokens".to_owned(), 100, 120)]
    );
    // Spent: the next run calls no agent.
    let before = calls.load(Ordering::SeqCst);
    let seen = events(&orch, run(3)).await;
    let third = result_of(&seen);
    assert_eq!(third.status, RunStatus::Completed);
    assert_eq!(
        third.termination.as_deref(),
        Some("session_max_tokens: 100")
    );
    assert!(third.steps.is_empty());
    assert_eq!(calls.load(Ordering::SeqCst), before);
    assert_eq!(
        types(&seen),
        ["run_started", "budget_exceeded", "run_completed"]
    );
    // Another session is not affected.
    let other = orch.run(run(4).session("fresh-session")).await.unwrap();
    assert_eq!(other.termination, None);
}
