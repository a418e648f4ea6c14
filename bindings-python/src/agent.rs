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

use crate::bridge::{CallArg, PyCallback, Reply};

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

/// An agent's input as handed to Python: the task at once, and the whole
/// input as JSON only when the agent reads more than its task (most read
/// only the task, and encoding and decoding the conversation at every step
/// is the larger part of a call's cost).
#[pyclass(frozen, module = "orchestra._orchestra")]
pub(crate) struct PyAgentInput {
    input: AgentInput,
    /// The answer to the agent's question, once the run was resumed with one.
    answer: Option<serde_json::Value>,
    /// The handoff that made the agent active (handoff runs).
    handoff: Option<serde_json::Value>,
}

impl PyAgentInput {
    fn new(input: AgentInput, ctx: &AgentContext) -> Result<Self, serde_json::Error> {
        Ok(Self {
            input,
            answer: ctx.answer().cloned(),
            handoff: ctx.handoff().map(serde_json::to_value).transpose()?,
        })
    }

    /// The input as JSON, with `answer` and `handoff` when there are some.
    fn encode(&self) -> Result<String, serde_json::Error> {
        if self.answer.is_none() && self.handoff.is_none() {
            return serde_json::to_string(&self.input);
        }
        let mut value = serde_json::to_value(&self.input)?;
        if let Some(object) = value.as_object_mut() {
            if let Some(answer) = &self.answer {
                object.insert("answer".to_owned(), answer.clone());
            }
            if let Some(handoff) = &self.handoff {
                object.insert("handoff".to_owned(), handoff.clone());
            }
        }
        serde_json::to_string(&value)
    }
}

#[pymethods]
impl PyAgentInput {
    #[getter]
    fn task(&self) -> &str {
        &self.input.task
    }

    fn json(&self) -> PyResult<String> {
        self.encode().map_err(|e| {
            pyo3::exceptions::PyValueError::new_err(format!(
                "could not encode the agent input: {e}"
            ))
        })
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
        let run_id = input.run_id.clone();
        let arg = PyAgentInput::new(input, &ctx)
            .map_err(|e| AgentError::msg(format!("could not encode the agent input: {e}")))?;
        let reply = self
            .call
            .call_in_run(CallArg::Input(Box::new(arg)), Some(ctx), Some(&run_id))
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
        .call_in_run(CallArg::Json(arg), None, Some(ctx.run_id()))
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
            .call_in_run(CallArg::Json(arg), None, Some(ctx.run_id()))
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
