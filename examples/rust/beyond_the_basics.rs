//! Budgets, typed and parallel handoffs, an external stop, and replay: the
//! features beyond the five patterns, each checked as it runs.
//!
//! ```sh
//! cargo run -p orchestra-examples --example beyond_the_basics
//! ```

use futures::StreamExt;
use orchestra_core::{
    AgentContext, AgentInput, AgentOutput, EventKind, FnAgent, Handoff, Orchestrator, RunRequest,
    RunStatus, Usage,
};
use serde_json::json;

/// An agent that answers "<name>: <task>" and reports tokens and cost.
fn priced(
    name: &'static str,
) -> FnAgent<impl Fn(AgentInput, AgentContext) -> std::future::Ready<AgentOutput> + Send + Sync> {
    FnAgent::new(name, format!("the {name} desk"), move |i: AgentInput, _| {
        std::future::ready(
            AgentOutput::text(format!("{name}: {}", i.task)).with_usage(Usage {
                cost_micros: 250_000, // 0.25 per answer
                ..Usage::new(40, 20)
            }),
        )
    })
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let orch = Orchestrator::new();
    for name in ["research", "draft", "edit", "review"] {
        orch.register(priced(name));
    }

    // 1. A cost budget: the run stops cleanly once it has cost 0.5.
    let r = orch
        .run(
            RunRequest::new("sequential", "a launch note")
                .agents(["research", "draft", "edit", "review"])
                .option(
                    "termination",
                    json!({"any": [{"max_rounds": 10}, {"max_cost": 0.5}]}),
                ),
        )
        .await?;
    println!(
        "cost budget: {:?} after {} steps, cost {} micros",
        r.termination,
        r.steps.len(),
        r.usage.cost_micros
    );
    assert_eq!(r.termination.as_deref(), Some("max_cost: 0.5"));

    // 2. A session budget across runs: 120 tokens per run, 200 for the session.
    let budget = json!({"max_tokens": 200});
    let mut outcomes = Vec::new();
    for _ in 0..3 {
        let r = orch
            .run(
                RunRequest::new("sequential", "again")
                    .agents(["research", "draft"])
                    .session("budgeted-session")
                    .option("session_budget", budget.clone()),
            )
            .await?;
        outcomes.push((r.steps.len(), r.termination));
    }
    println!("session budget: {outcomes:?}");
    assert_eq!(outcomes[2], (0, Some("session_max_tokens: 200".to_owned())));

    // 3. A typed, parallel handoff: triage hands one task to three desks at
    //    once, with a payload each route checks, and sums up their answers.
    orch.register(FnAgent::new(
        "triage",
        "routes",
        |i: AgentInput, _| async move {
            let answers: Vec<String> = i
                .messages
                .iter()
                .filter(|m| m.name.as_deref().is_some_and(|n| n != "triage"))
                .map(|m| m.content.clone())
                .collect();
            if answers.is_empty() {
                let ticket = json!({"ticket": "T-7"});
                let mut out = AgentOutput::handoff(
                    Handoff::new("research", "find the facts").with_payload(ticket.clone()),
                );
                out.handoffs = vec![
                    Handoff::new("draft", "write a first draft").with_payload(ticket.clone()),
                    Handoff::new("review", "list the risks").with_payload(ticket),
                ];
                out
            } else {
                AgentOutput::text(format!("joined: {}", answers.join(" | ")))
            }
        },
    ));
    let schema = json!({"type": "object", "required": ["ticket"]});
    let r = orch
        .run(
            RunRequest::new("handoff", "launch plan")
                .agents(["triage", "research", "draft", "review"])
                .options(json!({
                    "parallel_handoffs": true,
                    "payload_schemas": {"research": schema, "draft": schema, "review": schema},
                })),
        )
        .await?;
    println!(
        "parallel handoff: {}",
        r.output.as_deref().unwrap_or_default()
    );
    assert_eq!(r.status, RunStatus::Completed);
    assert!(
        r.output
            .as_deref()
            .unwrap_or_default()
            .starts_with("joined: research: find the facts")
    );

    // 4. An external stop: the run completes with what it has. `gated`
    //    waits until the stop has been asked for, so the stop lands mid-run.
    let gate = std::sync::Arc::new(tokio::sync::Notify::new());
    let g = gate.clone();
    orch.register(FnAgent::new("gated", "waits for a signal", move |_, _| {
        let g = g.clone();
        async move {
            g.notified().await;
            "gated: done"
        }
    }));
    let mut stream = orch.stream(
        RunRequest::new("sequential", "long job").agents(["research", "gated", "edit", "review"]),
    )?;
    let run_id = stream.run_id().to_owned();
    let mut stopped = None;
    while let Some(ev) = stream.next().await {
        if let EventKind::AgentStarted { step: 1, .. } = ev.kind {
            orch.stop(&run_id, "good enough");
            gate.notify_one();
        }
        if let Some(result) = ev.kind.result() {
            stopped = Some(result.clone());
        }
    }
    let stopped = stopped.ok_or("no result")?;
    println!(
        "stop: {:?} after {} steps",
        stopped.termination,
        stopped.steps.len()
    );
    assert_eq!(stopped.termination.as_deref(), Some("stopped: good enough"));
    assert_eq!(stopped.steps.len(), 2);

    // 5. Replay: the recorded run again, event by event, no agent called.
    let replayed: Vec<_> = orch.replay(&r)?.collect().await;
    let last = replayed
        .last()
        .and_then(|e| e.kind.result())
        .ok_or("no result")?;
    println!(
        "replay: {} events, output {:?}",
        replayed.len(),
        last.output
    );
    assert_eq!(last.output, r.output);
    Ok(())
}
