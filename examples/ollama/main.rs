//! LLM agents on Ollama (or any OpenAI-compatible endpoint): streamed
//! answers, a Rust tool, LLM handoff, an LLM group chat manager and an LLM
//! planner, all configured from `agents.json`.
//!
//! ```sh
//! ollama pull llama3.2        # once; any chat model with tool support works
//! cargo run -p orchestra-ollama-example -- sequential "Why does the sea have tides?"
//! cargo run -p orchestra-ollama-example -- handoff
//! cargo run -p orchestra-ollama-example -- group_chat
//! cargo run -p orchestra-ollama-example -- dynamic
//! ```
//!
//! Another endpoint: set `ORCHESTRA_LLM_BASE_URL`, `ORCHESTRA_LLM_MODEL` and,
//! when it needs a key, `ORCHESTRA_LLM_API_KEY_ENV` to the *name* of the
//! variable holding it (e.g. `OPENAI_API_KEY`).

use std::{collections::HashMap, sync::Arc};

use futures::StreamExt;
use orchestra_core::{
    EventKind, Orchestrator, RunRequest,
    agents::openai::{OpenAiAgentConfig, OpenAiChatModel},
    llm::{LlmManager, LlmPlanner, Tool, ToolError},
};
use serde_json::{Map, Value, json};

/// Arguments of the `encyclopedia` tool.
#[derive(serde::Deserialize, schemars::JsonSchema)]
struct Lookup {
    /// The topic to look up, e.g. "tides".
    topic: String,
}

fn encyclopedia() -> Tool {
    let facts: HashMap<&str, &str> = HashMap::from([
        (
            "tides",
            "Tides are raised mainly by the Moon's gravity; the Sun adds about 46% as much. Most coasts see two high tides a day.",
        ),
        (
            "moon",
            "The Moon is on average 384,400 km from Earth and slowly drifts away, about 3.8 cm a year.",
        ),
    ]);
    Tool::typed(
        "encyclopedia",
        "Looks up short, reliable facts about a topic.",
        move |a: Lookup| {
            let found = facts
                .iter()
                .find(|(k, _)| a.topic.to_lowercase().contains(*k))
                .map(|(_, v)| *v);
            async move {
                match found {
                    Some(fact) => Ok(json!({"fact": fact})),
                    None => Err(ToolError::from("no entry for that topic")),
                }
            }
        },
    )
}

/// The shared endpoint settings and each agent's own settings.
type Config = (Map<String, Value>, Vec<Map<String, Value>>);

fn load_config() -> Result<Config, String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/agents.json");
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    let file: Value = serde_json::from_str(&text).map_err(|e| format!("{path}: {e}"))?;
    let mut model = file["model"].as_object().cloned().unwrap_or_default();
    for (var, key) in [
        ("ORCHESTRA_LLM_BASE_URL", "base_url"),
        ("ORCHESTRA_LLM_MODEL", "model"),
        ("ORCHESTRA_LLM_API_KEY_ENV", "api_key_env"),
    ] {
        if let Ok(v) = std::env::var(var) {
            model.insert(key.into(), json!(v));
        }
    }
    let agents = file["agents"]
        .as_array()
        .map(|a| a.iter().filter_map(|v| v.as_object().cloned()).collect())
        .unwrap_or_default();
    Ok((model, agents))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let pattern = args.next().unwrap_or_else(|| "sequential".into());
    let task = {
        let rest: Vec<String> = args.collect();
        if rest.is_empty() {
            "Why does the sea have tides? Research it, then write a short article.".to_owned()
        } else {
            rest.join(" ")
        }
    };
    let (model, agents) = load_config()?;
    let orch = Orchestrator::new();
    for agent in agents {
        // Each agent = the shared endpoint settings + its own name, description and prompt.
        let mut merged = model.clone();
        merged.extend(agent);
        let config: OpenAiAgentConfig = serde_json::from_value(Value::Object(merged))?;
        let mut llm = config.build()?;
        if config.name == "researcher" {
            llm = llm.tool(encyclopedia());
        }
        orch.register(llm);
    }
    // The manager and planner talk to the same endpoint, without streaming.
    let mut endpoint = model.clone();
    endpoint.insert("stream".into(), json!(false));
    let chat_model = Arc::new(OpenAiChatModel::new(serde_json::from_value(
        Value::Object(endpoint),
    )?)?);
    orch.register_manager("llm", Arc::new(LlmManager::new(chat_model.clone())));
    orch.register_planner("llm", Arc::new(LlmPlanner::new(chat_model)));

    let request = match pattern.as_str() {
        "sequential" => RunRequest::new("sequential", &task).agents(["researcher", "writer"]),
        "handoff" => RunRequest::new("handoff", &task)
            .agents(["researcher", "writer"])
            .option("routes", json!({"researcher": ["writer"], "writer": []})),
        "group_chat" => RunRequest::new("group_chat", &task)
            .agents(["researcher", "writer", "critic"])
            .option("manager", "llm")
            .option("max_rounds", 6)
            .option("termination", json!({"text_mention": "APPROVED"})),
        "dynamic" => RunRequest::new("dynamic", &task)
            .agents(["researcher", "writer", "critic"])
            .option("planner", "llm"),
        other => {
            return Err(format!(
                "unknown pattern '{other}': use sequential, handoff, group_chat or dynamic"
            )
            .into());
        }
    };

    let mut stream = orch.stream(request)?;
    while let Some(ev) = stream.next().await {
        match &ev.kind {
            EventKind::AgentStarted { agent, .. } => print!("\n--- {agent} ---\n"),
            EventKind::AgentDelta { delta, .. } => print!("{delta}"),
            EventKind::ToolCalled {
                tool, arguments, ..
            } => println!("\n[tool] {tool}({arguments})"),
            EventKind::Handoff { from, to, reason } => {
                println!("\n[handoff] {from} -> {to}: {reason}")
            }
            EventKind::SpeakerSelected { agent, reason, .. } => {
                println!("\n[manager] {agent} speaks next ({reason})")
            }
            EventKind::PlanCreated { plan } | EventKind::PlanUpdated { plan, .. } => {
                println!("\n[plan by {}] {}", plan.planner, plan.rationale)
            }
            EventKind::Fallback { from, to, reason } => {
                println!("\n[fallback] {from} -> {to}: {reason}")
            }
            EventKind::AgentFailed { agent, error, .. } => {
                println!("\n[failed] {agent}: {}", error.message)
            }
            _ => {}
        }
        if let Some(result) = ev.kind.result() {
            println!("\n\n=== {} ===", result.status.as_str());
            if let Some(out) = &result.output {
                println!("{out}");
            }
            if let Some(err) = &result.error {
                println!("error: {} ({})", err.message, err.code);
            }
            println!("tokens: {}", result.usage.total_tokens);
        }
    }
    Ok(())
}
