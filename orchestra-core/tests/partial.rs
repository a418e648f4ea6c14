//! Runs that lose an agent and finish with what they have, saying so.

use orchestra_core::{
    AgentError, AgentOutput, Orchestrator, RunRequest, RunStatus, test_utils::ScriptedAgent,
};
use serde_json::json;

fn broken(name: &str) -> ScriptedAgent {
    ScriptedAgent::new(name, "always fails").then(Err(AgentError::Http {
        status: 500,
        message: "boom".into(),
    }))
}

#[tokio::test]
async fn a_group_chat_that_skips_a_failed_speaker_goes_on_and_is_partial() {
    let orch = Orchestrator::new();
    let writer = ScriptedAgent::replying("writer", "draft");
    let writer_calls = writer.calls();
    orch.register(writer);
    let critic = broken("critic");
    let critic_calls = critic.calls();
    orch.register(critic);
    let r = orch
        .run(
            RunRequest::new("group_chat", "t")
                .agents(["writer", "critic"])
                .options(json!({"max_rounds": 4, "on_agent_failure": "skip"})),
        )
        .await
        .unwrap();
    assert_eq!(r.status, RunStatus::Completed, "{:?}", r.error);
    assert!(r.partial);
    assert_eq!(
        r.termination.as_deref(),
        Some("max_rounds: 4; partial: critic left the chat after failing")
    );
    assert_eq!(
        r.data.as_ref().unwrap()["failed_agents"][0]["agent"],
        "critic"
    );
    assert_eq!(critic_calls.load(std::sync::atomic::Ordering::SeqCst), 1);
    // Rounds 0, 2, 3 went to the writer; round 1 was the critic's failure.
    assert_eq!(writer_calls.load(std::sync::atomic::Ordering::SeqCst), 3);
    assert_eq!(r.output.as_deref(), Some("draft"));
}

#[tokio::test]
async fn by_default_a_failed_speaker_fails_the_chat_and_skipping_everyone_fails_too() {
    let orch = Orchestrator::new();
    orch.register(ScriptedAgent::replying("writer", "draft"));
    orch.register(broken("critic"));
    orch.register(broken("editor"));
    let r = orch
        .run(RunRequest::new("group_chat", "t").agents(["writer", "critic"]))
        .await
        .unwrap();
    assert_eq!(r.status, RunStatus::Failed);
    assert_eq!(r.error.unwrap().agent.as_deref(), Some("critic"));
    let r = orch
        .run(
            RunRequest::new("group_chat", "t")
                .agents(["critic", "editor"])
                .option("on_agent_failure", "skip"),
        )
        .await
        .unwrap();
    assert_eq!(r.status, RunStatus::Failed);
    assert_eq!(r.error.unwrap().code, "agent_failed");
    assert_eq!(r.steps.len(), 2, "each speaker was tried once");
}

#[tokio::test]
async fn a_dynamic_plan_that_lost_a_step_is_partial_and_names_the_agent() {
    let orch = Orchestrator::new();
    orch.register(broken("search_web"));
    orch.register(
        ScriptedAgent::new("search_index", "search index").then(Ok(AgentOutput::text("tables"))),
    );
    let r = orch
        .run(
            RunRequest::new("dynamic", "search for tide tables")
                .agents(["search_web", "search_index"]),
        )
        .await
        .unwrap();
    assert_eq!(r.status, RunStatus::Completed, "{:?}", r.error);
    assert_eq!(r.output.as_deref(), Some("tables"));
    assert!(r.partial);
    let t = r.termination.unwrap();
    assert!(
        t.contains("partial: 1 step(s) failed (agents: search_web)"),
        "{t}"
    );
}

#[tokio::test]
async fn a_dynamic_plan_without_losses_is_not_partial() {
    let orch = Orchestrator::new();
    orch.register(ScriptedAgent::replying("search_index", "tables"));
    let r = orch
        .run(RunRequest::new("dynamic", "search tables").agents(["search_index"]))
        .await
        .unwrap();
    assert!(!r.partial);
    assert_eq!(
        r.termination.as_deref(),
        Some("plan complete after 1 step(s)")
    );
}
