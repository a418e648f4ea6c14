//! Python callables as core [`Agent`]s, [`GroupChatManager`]s and [`Planner`]s.
//!
//! The facade (`orchestra._bridge`) wraps the user's function so that it
//! takes the core's JSON and answers a [`Reply`]:
//!
//! | kind | payload |
//! |---|---|
//! | 0 | plain text (an agent's `content`) |
//! | 1 | JSON: an `AgentOutput`, a speaker choice, a plan, … |
//! | 2 | JSON: a failure `{"message", "retryable", "invalid_output"}` |

use async_trait::async_trait;
use orchestra_core::{
    Agent, AgentContext, AgentError, AgentInput, AgentOutput, OrchestraError,
    context::RunContext,
    pattern::{ChatState, GroupChatManager, Plan, Planner, SpeakerChoice, dynamic::PlanRequest},
};
use pyo3::prelude::*;
use serde::Deserialize;

use crate::bridge::{PyCallback, Reply};

const TEXT: u8 = 0;
const JSON: u8 = 1;
const FAILURE: u8 = 2;

/// A failure reported by the wrapped callable (an exception it raised, or
/// an answer of the wrong type).
#[derive(Debug, Deserialize)]
struct Failure {
    message: String,
    #[serde(default)]
    retryable: bool,
    #[serde(default)]
    invalid_output: bool,
}

impl From<Failure> for AgentError {
    fn from(f: Failure) -> Self {
        match (f.invalid_output, f.retryable) {
            (true, _) => AgentError::InvalidOutput(f.message),
            (false, true) => AgentError::retryable(f.message),
            (false, false) => AgentError::msg(f.message),
        }
    }
}

fn py_err_to_agent_error(e: &PyErr) -> AgentError {
    Python::attach(|py| {
        if e.is_instance_of::<pyo3::exceptions::asyncio::CancelledError>(py) {
            AgentError::Cancelled
        } else {
            AgentError::msg(e.to_string())
        }
    })
}

/// The JSON payload of a reply, or the failure it reports.
fn json_payload(reply: Reply) -> Result<String, String> {
    match reply {
        (JSON, payload) => Ok(payload),
        (FAILURE, payload) => {
            Err(serde_json::from_str::<Failure>(&payload).map_or(payload, |f| f.message))
        }
        (kind, _) => Err(format!("internal: unexpected reply kind {kind}")),
    }
}

/// An agent written in Python.
pub(crate) struct PyAgent {
    name: String,
    description: String,
    call: PyCallback,
}

impl PyAgent {
    pub(crate) fn new(name: String, description: String, call: PyCallback) -> Self {
        Self {
            name,
            description,
            call,
        }
    }
}

#[async_trait]
impl Agent for PyAgent {
    fn name(&self) -> &str {
        &self.name
    }

    fn description(&self) -> &str {
        &self.description
    }

    async fn invoke(
        &self,
        input: AgentInput,
        ctx: AgentContext,
    ) -> Result<AgentOutput, AgentError> {
        let arg = serde_json::to_string(&input)
            .map_err(|e| AgentError::msg(format!("could not encode the agent input: {e}")))?;
        let reply = self
            .call
            .call(arg, Some(ctx))
            .await
            .map_err(|e| py_err_to_agent_error(&e))?;
        match reply {
            (TEXT, content) => Ok(AgentOutput::text(content)),
            (JSON, json) => serde_json::from_str(&json)
                .map_err(|e| AgentError::InvalidOutput(format!("agent output: {e}"))),
            (FAILURE, json) => Err(serde_json::from_str::<Failure>(&json)
                .map_or_else(|_| AgentError::msg(json), AgentError::from)),
            (kind, _) => Err(AgentError::msg(format!(
                "internal: unexpected reply kind {kind}"
            ))),
        }
    }
}

/// A group chat manager written in Python: `select_next` and, optionally,
/// `should_terminate` and `filter_result`.
pub(crate) struct PyManager {
    select: PyCallback,
    terminate: Option<PyCallback>,
    filter: Option<PyCallback>,
}

impl PyManager {
    pub(crate) fn new(
        select: PyCallback,
        terminate: Option<PyCallback>,
        filter: Option<PyCallback>,
    ) -> Self {
        Self {
            select,
            terminate,
            filter,
        }
    }
}

async fn ask_manager<T: serde::de::DeserializeOwned>(
    call: &PyCallback,
    chat: &ChatState,
) -> Result<T, OrchestraError> {
    let arg = serde_json::to_string(chat).map_err(|e| OrchestraError::Manager(e.to_string()))?;
    let reply = call
        .call(arg, None)
        .await
        .map_err(|e| OrchestraError::Manager(e.to_string()))?;
    let json = json_payload(reply).map_err(OrchestraError::Manager)?;
    serde_json::from_str(&json).map_err(|e| OrchestraError::Manager(format!("{e}: {json}")))
}

#[async_trait]
impl GroupChatManager for PyManager {
    async fn select_next(
        &self,
        chat: &ChatState,
        _ctx: &RunContext,
    ) -> Result<Option<SpeakerChoice>, OrchestraError> {
        ask_manager(&self.select, chat).await
    }

    async fn should_terminate(
        &self,
        chat: &ChatState,
        _ctx: &RunContext,
    ) -> Result<Option<String>, OrchestraError> {
        match &self.terminate {
            Some(call) => ask_manager(call, chat).await,
            None => Ok(None),
        }
    }

    async fn filter_result(
        &self,
        chat: &ChatState,
        _ctx: &RunContext,
    ) -> Result<Option<String>, OrchestraError> {
        match &self.filter {
            Some(call) => ask_manager(call, chat).await,
            None => Ok(None),
        }
    }
}

/// A planner written in Python.
pub(crate) struct PyPlanner {
    name: String,
    call: PyCallback,
}

impl PyPlanner {
    pub(crate) fn new(name: String, call: PyCallback) -> Self {
        Self { name, call }
    }
}

#[async_trait]
impl Planner for PyPlanner {
    fn name(&self) -> &str {
        &self.name
    }

    async fn plan(&self, request: &PlanRequest, _ctx: &RunContext) -> Result<Plan, OrchestraError> {
        let arg =
            serde_json::to_string(request).map_err(|e| OrchestraError::Planner(e.to_string()))?;
        let reply = self
            .call
            .call(arg, None)
            .await
            .map_err(|e| OrchestraError::Planner(e.to_string()))?;
        let json = json_payload(reply).map_err(OrchestraError::Planner)?;
        let mut plan: Plan = serde_json::from_str(&json)
            .map_err(|e| OrchestraError::Planner(format!("invalid plan: {e}: {json}")))?;
        if plan.planner.is_empty() {
            plan.planner.clone_from(&self.name);
        }
        Ok(plan)
    }
}
