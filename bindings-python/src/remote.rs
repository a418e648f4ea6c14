//! The core's remote agents, constructible from Python (feature
//! `http-agents`): generic HTTP agent services, OpenAI-compatible chat
//! models as agents, group chat managers and planners, and A2A peers.
//! Configurations cross as the core's JSON (snake_case keys).

use std::{sync::Arc, time::Duration};

use orchestra_core::{
    AgentError, ErrorInfo,
    agents::{
        a2a::{A2aAgent, A2aAgentConfig},
        http::HttpAgent,
        openai::{OpenAiAgentConfig, OpenAiChatModel, OpenAiConfig},
    },
    llm::{LlmManager, LlmPlanner},
};
use pyo3::prelude::*;
use serde::de::DeserializeOwned;

use orchestra_core::Orchestrator;

use crate::error::{info_to_py, orchestra_error};

fn parse<T: DeserializeOwned>(what: &str, json: &str) -> PyResult<T> {
    serde_json::from_str(json)
        .map_err(|e| orchestra_error("invalid_request", format!("invalid {what}: {e}")))
}

fn agent_error(agent: &str, e: &AgentError) -> PyErr {
    info_to_py(&ErrorInfo {
        code: e.code().to_owned(),
        message: format!("{agent}: {e}"),
        agent: Some(agent.to_owned()),
    })
}

fn model(config: &str) -> PyResult<Arc<OpenAiChatModel>> {
    let config: OpenAiConfig = parse("model config", config)?;
    OpenAiChatModel::new(config)
        .map(Arc::new)
        .map_err(|e| agent_error("model", &e))
}

/// Registers an agent service reached with one JSON POST per step.
pub(crate) fn add_http_agent(
    orch: &Orchestrator,
    name: String,
    url: String,
    description: String,
    timeout_ms: Option<u64>,
    headers: Option<Vec<(String, String)>>,
) -> PyResult<()> {
    let mut builder = HttpAgent::builder(name, url).description(description);
    if let Some(ms) = timeout_ms {
        builder = builder.timeout(Duration::from_millis(ms));
    }
    for (k, v) in headers.unwrap_or_default() {
        builder = builder
            .header(&k, &v)
            .map_err(|e| orchestra_error("invalid_request", format!("headers: {e}")))?;
    }
    let agent = builder
        .build()
        .map_err(|e| orchestra_error("invalid_request", e.to_string()))?;
    orch.register(agent);
    Ok(())
}

/// Registers an OpenAI-compatible chat model as an agent; returns its name.
pub(crate) fn add_openai_agent(orch: &Orchestrator, config_json: &str) -> PyResult<String> {
    let config: OpenAiAgentConfig = parse("agent config", config_json)?;
    let agent = config.build().map_err(|e| agent_error(&config.name, &e))?;
    orch.register(agent);
    Ok(config.name)
}

/// Registers an LLM group chat manager, selected with `{"manager": name}`.
pub(crate) fn add_llm_manager(
    orch: &Orchestrator,
    name: String,
    model_json: &str,
    instructions: Option<String>,
) -> PyResult<()> {
    let mut manager = LlmManager::new(model(model_json)?);
    if let Some(text) = instructions {
        manager = manager.instructions(text);
    }
    orch.register_manager(name, Arc::new(manager));
    Ok(())
}

/// Registers an LLM planner, selected with `{"planner": name}`.
pub(crate) fn add_llm_planner(orch: &Orchestrator, name: String, model_json: &str) -> PyResult<()> {
    let planner = LlmPlanner::new(model(model_json)?);
    orch.register_planner(name, Arc::new(planner));
    Ok(())
}

/// Fetches an A2A agent card and registers the peer; resolves to its name.
pub(crate) fn add_a2a_agent<'py>(
    orch: &Orchestrator,
    py: Python<'py>,
    config_json: &str,
) -> PyResult<Bound<'py, PyAny>> {
    let config: A2aAgentConfig = parse("a2a config", config_json)?;
    let orch = orch.clone();
    crate::future::into_py_future(py, async move {
        let url = config.card_url.clone();
        let agent = A2aAgent::connect(config)
            .await
            .map_err(|e| agent_error(&url, &e))?;
        let name = orchestra_core::Agent::name(&agent).to_owned();
        orch.register(agent);
        Ok(name)
    })
}
