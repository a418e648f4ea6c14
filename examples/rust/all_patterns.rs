//! Runs all five patterns with closure agents and prints every streamed event.
//!
//! ```sh
//! cargo run -p orchestra-examples --example all_patterns
//! ```

use std::sync::Arc;

use futures::StreamExt;
use orchestra_core::{
    AgentContext, AgentInput, EventKind, FnAgent, Handoff, Orchestrator, RunRequest,
    pattern::{ChatState, FnManager},
};
use serde_json::json;

fn agents(orch: &Orchestrator) {
    orch.register(FnAgent::new(
        "researcher",
        "finds facts and sources about a topic",
        |i: AgentInput, ctx: AgentContext| async move {
            // Stream the answer in pieces, as an LLM would.
            for word in ["Tides ", "follow ", "the ", "moon."] {
                ctx.delta(word);
            }
            format!("Facts on '{}': tides follow the moon.", i.task)
        },
    ));
    orch.register(FnAgent::new(
        "writer",
        "writes articles and prose from notes",
        |i: AgentInput, _| async move { format!("Article: {}", i.task) },
    ));
    orch.register(FnAgent::new(
        "critic",
        "reviews drafts and approves good ones",
        |i: AgentInput, _| async move {
            let drafts = i
                .messages
                .iter()
                .filter(|m| m.name.as_deref() == Some("writer"))
                .count();
            if drafts >= 2 {
                "APPROVED".to_owned()
            } else {
                "Needs a stronger opening.".to_owned()
            }
        },
    ));
    orch.register(FnAgent::new(
        "triage",
        "routes customer questions to the right desk",
        |i: AgentInput, _| async move {
            if i.task.contains("refund") {
                Handoff::new("billing", "refund questions go to billing").into()
            } else {
                orchestra_core::AgentOutput::text("How can I help?")
            }
        },
    ));
    orch.register(FnAgent::new(
        "billing",
        "handles invoices and refunds",
        |_, _| async { "Your refund was issued today." },
    ));
}

fn describe(kind: &EventKind) -> String {
    match kind {
        EventKind::RunStarted {
            pattern, agents, ..
        } => format!("{pattern} over {agents:?}"),
        EventKind::AgentStarted { agent, step, .. } => format!("step {step}: {agent}"),
        EventKind::AgentDelta { agent, delta, .. } => format!("{agent} … {delta:?}"),
        EventKind::AgentCompleted { agent, message, .. } => format!("{agent}: {}", message.content),
        EventKind::Handoff { from, to, reason } => format!("{from} → {to} ({reason})"),
        EventKind::SpeakerSelected { agent, round, .. } => format!("round {round}: {agent}"),
        EventKind::PlanCreated { plan } => format!("plan: {}", plan.rationale),
        EventKind::RunCompleted { result } => format!(
            "output: {:?} ({} steps, {})",
            result.output.as_deref().unwrap_or_default(),
            result.steps.len(),
            result.termination.as_deref().unwrap_or("done")
        ),
        EventKind::RunFailed { error, .. } => format!("failed: {} ({})", error.message, error.code),
        other => serde_json::to_string(other).unwrap_or_default(),
    }
}

#[tokio::main]
async fn main() -> Result<(), orchestra_core::OrchestraError> {
    let orch = Orchestrator::new();
    agents(&orch);
    // A custom manager: writer and critic alternate; the chat ends on "APPROVED".
    orch.register_manager(
        "writer_critic",
        Arc::new(FnManager::new(|chat: &ChatState| {
            Some(
                if chat.round.is_multiple_of(2) {
                    "writer"
                } else {
                    "critic"
                }
                .to_owned(),
            )
        })),
    );

    let requests = [
        RunRequest::new("sequential", "ocean tides").agents(["researcher", "writer"]),
        RunRequest::new("concurrent", "ocean tides")
            .agents(["researcher", "writer"])
            .option("aggregator", "merge"),
        RunRequest::new("handoff", "I want a refund").agents(["triage", "billing"]),
        RunRequest::new("group_chat", "a slogan for tide tables")
            .agents(["writer", "critic"])
            .options(json!({"manager": "writer_critic", "max_rounds": 6,
                            "termination": {"text_mention": "APPROVED"}})),
        RunRequest::new("dynamic", "Find facts about tides, then write an article"),
    ];
    for request in requests {
        println!("\n== {} ==", request.pattern);
        let mut events = orch.stream(request)?;
        while let Some(event) = events.next().await {
            println!(
                "  [{:>2}] {:<16} {}",
                event.seq,
                event.type_name(),
                describe(&event.kind)
            );
        }
    }
    Ok(())
}
