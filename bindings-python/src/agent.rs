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
//! | 3 | JSON: a question for a person `{"prompt", "schema"?, "context"?}` (agents only) |

use async_trait::async_trait;
use orchestra_core::{
    Agent, AgentContext, AgentError, AgentInput, AgentOutput, InputRequest, OrchestraError,
    context::RunContext,
    pattern::{ChatState, GroupChatManager, Plan, Planner, SpeakerChoice, dynamic::PlanRequest},
};
use pyo3::prelude::*;
use serde::Deserialize;

use crate::bridge::{PyCallback, Reply};

const TEXT: u8 = 0;
const JSON: u8 = 1;
const FAILURE: u8 = 2;
const INPUT: u8 = 3;

/// A question an agent asks before it can go on (`orchestra.InputRequired`).
#[derive(Debug, Deserialize)]
struct Question {
    prompt: String,
    #[serde(default)]
    schema: Option<serde_json::Value>,
    #[serde(default)]
    context: Option<serde_json::Value>,
}

impl From<Question> for AgentError {
    fn from(q: Question) -> Self {
        let mut request = InputRequest::new(q.prompt);
        request.schema = q.schema;
        request.context = q.context;
        AgentError::input(request)
    }
}

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
        (INPUT, _) => Err("only agents can ask for input".to_owned()),
        (kind, _) => Err(format!("internal: unexpected reply kind {kind}")),
    }
}

/// The agent's input as JSON, with the answer to its question (if the run
/// was resumed with one) as `answer`, and the handoff that made the agent
/// active (handoff runs) as `handoff`.
fn encode_input(input: &AgentInput, ctx: &AgentContext) -> Result<String, serde_json::Error> {
    if ctx.answer().is_none() && ctx.handoff().is_none() {
        return serde_json::to_string(input);
    }
    let mut value = serde_json::to_value(input)?;
    if let Some(object) = value.as_object_mut() {
        if let Some(answer) = ctx.answer() {
            object.insert("answer".to_owned(), answer.clone());
        }
        if let Some(handoff) = ctx.handoff() {
            object.insert("handoff".to_owned(), serde_json::to_value(handoff)?);
        }
    }
    serde_json::to_string(&value)
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
        let arg = encode_input(&input, &ctx)
            .map_err(|e| AgentError::msg(format!("could not encode the agent input: {e}")))?;
        let reply = self
            .call
            .call_in_run(arg, Some(ctx), Some(&input.run_id))
            .await
            .map_err(|e| py_err_to_agent_error(&e))?;
        match reply {
            (TEXT, content) => Ok(AgentOutput::text(content)),
            (JSON, json) => serde_json::from_str(&json)
                .map_err(|e| AgentError::InvalidOutput(format!("agent output: {e}"))),
            (FAILURE, json) => Err(serde_json::from_str::<Failure>(&json)
                .map_or_else(|_| AgentError::msg(json), AgentError::from)),
            (INPUT, json) => Err(serde_json::from_str::<Question>(&json).map_or_else(
                |e| AgentError::InvalidOutput(format!("input request: {e}")),
                AgentError::from,
            )),
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
    ctx: &RunContext,
) -> Result<T, OrchestraError> {
    let arg = serde_json::to_string(chat).map_err(|e| OrchestraError::Manager(e.to_string()))?;
    let reply = call
        .call_in_run(arg, None, Some(ctx.run_id()))
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
        ctx: &RunContext,
    ) -> Result<Option<SpeakerChoice>, OrchestraError> {
        ask_manager(&self.select, chat, ctx).await
    }

    async fn should_terminate(
        &self,
        chat: &ChatState,
        ctx: &RunContext,
    ) -> Result<Option<String>, OrchestraError> {
        match &self.terminate {
            Some(call) => ask_manager(call, chat, ctx).await,
            None => Ok(None),
        }
    }

    async fn filter_result(
        &self,
        chat: &ChatState,
        ctx: &RunContext,
    ) -> Result<Option<String>, OrchestraError> {
        match &self.filter {
            Some(call) => ask_manager(call, chat, ctx).await,
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

    async fn plan(&self, request: &PlanRequest, ctx: &RunContext) -> Result<Plan, OrchestraError> {
        let arg =
            serde_json::to_string(request).map_err(|e| OrchestraError::Planner(e.to_string()))?;
        let reply = self
            .call
            .call_in_run(arg, None, Some(ctx.run_id()))
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
