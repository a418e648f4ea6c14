//! The core's remote agents, constructible from JavaScript (feature
//! `http-agents`, on by default): generic HTTP agent services,
//! OpenAI-compatible chat models as agents, group chat managers and
//! planners, and A2A peers. Configurations cross as the core's JSON.

use std::{sync::Arc, time::Duration};

use napi_derive::napi;
use orchestra_core::{
    agents::{
        a2a::{A2aAgent, A2aAgentConfig},
        http::HttpAgent,
        openai::{OpenAiAgentConfig, OpenAiChatModel, OpenAiConfig},
    },
    llm::{LlmManager, LlmPlanner},
};
use serde::de::DeserializeOwned;

use crate::{
    error::{agent_failure, binding_error},
    orchestrator::NativeOrchestrator,
};

fn parse<T: DeserializeOwned>(what: &str, json: &str) -> napi::Result<T> {
    serde_json::from_str(json)
        .map_err(|e| binding_error("invalid_request", format!("invalid request: {what}: {e}")))
}

fn model(config: &str) -> napi::Result<Arc<OpenAiChatModel>> {
    let config: OpenAiConfig = parse("model", config)?;
    OpenAiChatModel::new(config)
        .map(Arc::new)
        .map_err(|e| agent_failure("model", &e))
}

#[napi]
impl NativeOrchestrator {
    /// Registers an agent service reached with one JSON POST per step.
    #[napi]
    pub fn add_http_agent(
        &self,
        name: String,
        url: String,
        description: String,
        timeout_ms: Option<f64>,
        headers: Option<Vec<(String, String)>>,
    ) -> napi::Result<()> {
        let mut builder = HttpAgent::builder(name, url).description(description);
        if let Some(ms) = timeout_ms {
            builder = builder.timeout(Duration::from_millis(ms.max(0.0) as u64));
        }
        for (k, v) in headers.unwrap_or_default() {
            builder = builder.header(&k, &v).map_err(|e| {
                binding_error("invalid_request", format!("invalid request: headers: {e}"))
            })?;
        }
        let agent = builder
            .build()
            .map_err(|e| binding_error("invalid_request", format!("invalid request: {e}")))?;
        self.orchestrator().register(agent);
        Ok(())
    }

    /// Registers an OpenAI-compatible chat model as an agent; returns its name.
    #[napi(js_name = "addOpenaiAgent")]
    pub fn add_openai_agent(&self, config: String) -> napi::Result<String> {
        let config: OpenAiAgentConfig = parse("config", &config)?;
        let agent = config
            .build()
            .map_err(|e| agent_failure(&config.name, &e))?;
        self.orchestrator().register(agent);
        Ok(config.name)
    }

    /// Registers an LLM group chat manager, selected with `{"manager": name}`.
    #[napi]
    pub fn add_llm_manager(
        &self,
        name: String,
        model_config: String,
        instructions: Option<String>,
    ) -> napi::Result<()> {
        let mut manager = LlmManager::new(model(&model_config)?);
        if let Some(text) = instructions {
            manager = manager.instructions(text);
        }
        self.orchestrator()
            .register_manager(name, Arc::new(manager));
        Ok(())
    }

    /// Registers an LLM planner, selected with `{"planner": name}`.
    #[napi]
    pub fn add_llm_planner(&self, name: String, model_config: String) -> napi::Result<()> {
        let planner = LlmPlanner::new(model(&model_config)?);
        self.orchestrator()
            .register_planner(name, Arc::new(planner));
        Ok(())
    }

    /// Fetches an A2A agent card, registers the peer; resolves to its name.
    #[napi(js_name = "addA2aAgent")]
    pub async fn add_a2a_agent(&self, config: String) -> napi::Result<String> {
        let config: A2aAgentConfig = parse("config", &config)?;
        let url = config.card_url.clone();
        let agent = A2aAgent::connect(config)
            .await
            .map_err(|e| agent_failure(&url, &e))?;
        let name = orchestra_core::Agent::name(&agent).to_owned();
        self.orchestrator().register(agent);
        Ok(name)
    }
}
