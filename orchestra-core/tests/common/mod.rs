//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};

use futures::StreamExt;
use orchestra_core::{
    AgentInput, FnAgent, OrchestrationEvent, Orchestrator, RunRequest, RunResult,
};

/// An agent that answers "<name>(<task>)".
pub fn tagger(name: &'static str) -> impl orchestra_core::Agent {
    FnAgent::new(
        name,
        format!("{name} agent"),
        move |i: AgentInput, _| async move { format!("{name}({})", i.task) },
    )
}

/// Records every AgentInput an agent receives.
pub fn recorder(
    name: &'static str,
    reply: &'static str,
) -> (impl orchestra_core::Agent, Arc<Mutex<Vec<AgentInput>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let agent = FnAgent::new(name, format!("{name} agent"), move |i: AgentInput, _| {
        s.lock().unwrap().push(i);
        async move { reply }
    });
    (agent, seen)
}

/// Runs a request as a stream and returns every event.
pub async fn events(orch: &Orchestrator, req: RunRequest) -> Vec<OrchestrationEvent> {
    orch.stream(req).unwrap().collect().await
}

pub fn types(events: &[OrchestrationEvent]) -> Vec<&'static str> {
    events.iter().map(|e| e.type_name()).collect()
}

pub fn result_of(events: &[OrchestrationEvent]) -> RunResult {
    events
        .last()
        .and_then(|e| e.kind.result())
        .cloned()
        .expect("terminal event")
}
