//! JavaScript functions as core components: [`JsAgent`] implements
//! [`Agent`], [`JsManager`] implements [`GroupChatManager`] and [`JsPlanner`]
//! implements [`Planner`]. They only translate calls; the patterns, retries
//! and fallbacks are the core's.

use async_trait::async_trait;
use orchestra_core::{
    Agent, AgentContext, AgentError, AgentInput, AgentOutput, Handoff, OrchestraError, RunContext,
    pattern::{ChatState, GroupChatManager, Plan, PlanRequest, Planner, SpeakerChoice},
};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::{
    callback::{CallbackError, JsCallback},
    error::agent_error,
};

/// An agent written in JavaScript.
pub struct JsAgent {
    name: String,
    description: String,
    callback: JsCallback,
}

impl JsAgent {
    pub fn new(name: String, description: String, callback: JsCallback) -> Self {
        Self {
            name,
            description,
            callback,
        }
    }
}

#[async_trait]
impl Agent for JsAgent {
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
        let (answer, handoff) = (ctx.answer(), ctx.handoff());
        let head = InputHead {
            task: &input.task,
            session_id: &input.session_id,
            run_id: &input.run_id,
            state: &input.state,
            metadata: &input.metadata,
            answer,
            handoff,
        };
        let reply = match (answer, handoff) {
            (None, None) => {
                self.callback
                    .call_agent(&input, &head, &input.messages)
                    .await
            }
            (answer, handoff) => {
                let call = AnsweredCall {
                    input: &input,
                    answer,
                    handoff,
                };
                self.callback
                    .call_agent(&call, &head, &input.messages)
                    .await
            }
        };
        reply.map_err(|e| match e {
            CallbackError::Thrown { message, retryable } => agent_error(message, retryable),
            CallbackError::Protocol(m) => AgentError::InvalidOutput(m),
            CallbackError::InputRequired(request) => AgentError::InputRequired(request),
        })
    }
}

/// An agent's input with the answer to the question it asked at this step
/// (`input.answer` in JavaScript), once the run was resumed with one, and
/// the handoff that made it active (`input.handoff`), in handoff runs.
#[derive(Serialize)]
struct AnsweredCall<'a> {
    #[serde(flatten)]
    input: &'a AgentInput,
    #[serde(skip_serializing_if = "Option::is_none")]
    answer: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    handoff: Option<&'a Handoff>,
}

/// An agent's input without its conversation, which crosses separately on
/// the direct path (see [`JsCallback::call_agent`]).
#[derive(Serialize)]
struct InputHead<'a> {
    task: &'a str,
    session_id: &'a str,
    run_id: &'a str,
    state: &'a Value,
    metadata: &'a Map<String, Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    answer: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    handoff: Option<&'a Handoff>,
}

#[derive(Serialize)]
struct ManagerCall<'a> {
    method: &'static str,
    chat: &'a ChatState,
    run_id: &'a str,
    session_id: &'a str,
}

/// A group chat manager written in JavaScript: `selectNext` and optionally
/// `shouldTerminate` and `filterResult`.
pub struct JsManager {
    callback: JsCallback,
    should_terminate: bool,
    filter_result: bool,
}

impl JsManager {
    pub fn new(callback: JsCallback, should_terminate: bool, filter_result: bool) -> Self {
        Self {
            callback,
            should_terminate,
            filter_result,
        }
    }

    async fn call<R: serde::de::DeserializeOwned>(
        &self,
        method: &'static str,
        chat: &ChatState,
        ctx: &RunContext,
    ) -> Result<R, OrchestraError> {
        let call = ManagerCall {
            method,
            chat,
            run_id: ctx.run_id(),
            session_id: ctx.session_id(),
        };
        self.callback
            .call(&call)
            .await
            .map_err(|e| OrchestraError::Manager(e.message()))
    }
}

#[async_trait]
impl GroupChatManager for JsManager {
    async fn select_next(
        &self,
        chat: &ChatState,
        ctx: &RunContext,
    ) -> Result<Option<SpeakerChoice>, OrchestraError> {
        self.call("select_next", chat, ctx).await
    }

    async fn should_terminate(
        &self,
        chat: &ChatState,
        ctx: &RunContext,
    ) -> Result<Option<String>, OrchestraError> {
        if !self.should_terminate {
            return Ok(None);
        }
        self.call("should_terminate", chat, ctx).await
    }

    async fn filter_result(
        &self,
        chat: &ChatState,
        ctx: &RunContext,
    ) -> Result<Option<String>, OrchestraError> {
        if !self.filter_result {
            return Ok(None);
        }
        self.call("filter_result", chat, ctx).await
    }
}

#[derive(Serialize)]
struct PlannerCall<'a> {
    #[serde(flatten)]
    request: &'a PlanRequest,
    run_id: &'a str,
    session_id: &'a str,
}

/// A planner written in JavaScript.
pub struct JsPlanner {
    name: String,
    callback: JsCallback,
}

impl JsPlanner {
    pub fn new(name: String, callback: JsCallback) -> Self {
        Self { name, callback }
    }
}

#[async_trait]
impl Planner for JsPlanner {
    fn name(&self) -> &str {
        &self.name
    }

    async fn plan(&self, request: &PlanRequest, ctx: &RunContext) -> Result<Plan, OrchestraError> {
        let call = PlannerCall {
            request,
            run_id: ctx.run_id(),
            session_id: ctx.session_id(),
        };
        let mut plan: Plan = self
            .callback
            .call(&call)
            .await
            .map_err(|e| OrchestraError::Planner(e.message()))?;
        if plan.planner.is_empty() {
            plan.planner = self.name.clone();
        }
        Ok(plan)
    }
}
