//! The native orchestrator behind the JavaScript `Orchestrator` class.
//!
//! Requests and results cross as JSON strings in the core's snake_case
//! shape; the facade (`lib/orchestrator.js`) converts keys at the border.
//! `run` is driven on the JS thread ([`crate::local`]), so its JS agents
//! are called without thread hops; the other async methods are napi
//! `async fn`s on napi's Tokio runtime.

use std::sync::Arc;

use napi::{
    Env,
    bindgen_prelude::{PromiseRaw, within_runtime_if_available},
};
use napi_derive::napi;
use orchestra_core::{
    HumanAgent, Message, Orchestrator, RunRequest, RunResult, session::Page,
    termination::TerminationSnapshot,
};
use serde_json::Value;

use crate::{
    callback::{JsCallback, JsFunction},
    components::{JsAgent, JsManager, JsPlanner},
    error::{NapiExt, binding_error},
    store::NativeStore,
    stream::NativeRunStream,
};

#[napi]
pub struct NativeOrchestrator {
    inner: Orchestrator,
}

/// What a JS termination predicate is called with.
#[derive(serde::Serialize)]
struct ConditionCall<'a> {
    rounds: u32,
    messages: &'a [Message],
    tokens: u64,
    cost_micros: u64,
    elapsed_ms: u64,
}

fn parse_request(json: &str) -> napi::Result<RunRequest> {
    RunRequest::from_json(json).napi()
}

fn parse_answer(answer: Option<String>) -> napi::Result<Option<Value>> {
    answer
        .map(|json| {
            serde_json::from_str(&json)
                .map_err(|e| binding_error("invalid_request", format!("answer: invalid JSON: {e}")))
        })
        .transpose()
}

fn to_json<T: serde::Serialize>(value: &T) -> napi::Result<String> {
    serde_json::to_string(value).map_err(|e| binding_error("internal_error", e))
}

impl NativeOrchestrator {
    #[cfg(feature = "http-agents")]
    pub(crate) fn orchestrator(&self) -> &Orchestrator {
        &self.inner
    }
}

#[napi]
impl NativeOrchestrator {
    /// An orchestrator over the given store (in-memory when absent).
    #[napi(constructor)]
    pub fn new(store: Option<&NativeStore>) -> Self {
        let builder = Orchestrator::builder();
        let builder = match store {
            Some(s) => builder.store(s.store()),
            None => builder,
        };
        Self {
            inner: builder.build(),
        }
    }

    /// Registers (or replaces) an agent backed by a JS function.
    #[napi]
    pub fn add_agent(
        &self,
        env: Env,
        name: String,
        description: String,
        callback: JsFunction,
    ) -> napi::Result<()> {
        let agent = JsAgent::new(name, description, JsCallback::with_local(&env, &callback)?);
        self.inner.register_arc(Arc::new(agent));
        Ok(())
    }

    #[napi]
    pub fn remove_agent(&self, name: String) -> bool {
        self.inner.remove_agent(&name)
    }

    /// The registered agents as JSON `[{name, description}]`.
    #[napi]
    pub fn agents(&self) -> napi::Result<String> {
        to_json(&self.inner.agents())
    }

    /// Registers a group chat manager, selected with `{"manager": name}`.
    #[napi]
    pub fn add_manager(
        &self,
        env: Env,
        name: String,
        callback: JsFunction,
        should_terminate: bool,
        filter_result: bool,
    ) -> napi::Result<()> {
        let callback = JsCallback::with_local(&env, &callback)?;
        let manager = JsManager::new(callback, should_terminate, filter_result);
        self.inner.register_manager(name, Arc::new(manager));
        Ok(())
    }

    /// Registers a termination predicate, used as `{"custom": name}`. The JS
    /// function is called with the run's state after each agent step and
    /// awaited; a throw, a rejection or an unreadable answer counts as false.
    #[napi]
    pub fn add_condition(&self, env: Env, name: String, callback: JsFunction) -> napi::Result<()> {
        let callback = JsCallback::with_local(&env, &callback)?;
        let condition = name.clone();
        self.inner
            .register_async_condition(name, move |state: TerminationSnapshot| {
                let callback = callback.clone();
                let condition = condition.clone();
                async move {
                    let call = ConditionCall {
                        rounds: state.rounds,
                        messages: &state.messages,
                        tokens: state.tokens,
                        cost_micros: state.cost_micros,
                        elapsed_ms: u64::try_from(state.elapsed.as_millis()).unwrap_or(u64::MAX),
                    };
                    match callback.call::<_, bool>(&call).await {
                        Ok(holds) => holds,
                        Err(e) => {
                            tracing::warn!(
                                condition = %condition,
                                error = %e.message(),
                                "custom condition failed; counted as false"
                            );
                            false
                        }
                    }
                }
            });
        Ok(())
    }

    /// Registers a planner, selected with `{"planner": name}`.
    #[napi]
    pub fn add_planner(&self, env: Env, name: String, callback: JsFunction) -> napi::Result<()> {
        let planner = JsPlanner::new(name.clone(), JsCallback::with_local(&env, &callback)?);
        self.inner.register_planner(name, Arc::new(planner));
        Ok(())
    }

    /// Runs a request (JSON) to the end; resolves to the result as JSON.
    /// The run is driven on the JS thread ([`crate::local`]), so its JS
    /// agents are called directly.
    #[napi(ts_return_type = "Promise<string>")]
    pub fn run<'env>(
        &self,
        env: &'env Env,
        request: String,
    ) -> napi::Result<PromiseRaw<'env, String>> {
        let request = parse_request(&request)?;
        let orchestrator = self.inner.clone();
        crate::local::spawn(
            env,
            Box::pin(async move {
                let result = orchestrator.run(request).await.napi()?;
                to_json(&result)
            }),
        )
    }

    /// Starts a run and returns its event stream.
    #[napi]
    pub fn stream(&self, request: String) -> napi::Result<NativeRunStream> {
        let request = parse_request(&request)?;
        let stream = within_runtime_if_available(|| self.inner.stream(request)).napi()?;
        Ok(NativeRunStream::new(stream))
    }

    /// Checks a request without running it.
    #[napi]
    pub fn validate(&self, request: String) -> napi::Result<()> {
        let request = parse_request(&request)?;
        self.inner.validate(&request).napi()
    }

    /// The session as JSON, or null when unknown.
    #[napi]
    pub async fn get_session(&self, id: String) -> napi::Result<Option<String>> {
        match self.inner.get_session(&id).await.napi()? {
            Some(s) => to_json(&s).map(Some),
            None => Ok(None),
        }
    }

    #[napi]
    pub async fn delete_session(&self, id: String) -> napi::Result<bool> {
        self.inner.delete_session(&id).await.napi()
    }

    /// Session summaries as JSON, most recently updated first.
    #[napi]
    pub async fn list_sessions(&self, offset: u32, limit: u32) -> napi::Result<String> {
        let page = Page {
            offset: offset as usize,
            limit: limit as usize,
        };
        let list = self.inner.list_sessions(page).await.napi()?;
        to_json(&list)
    }

    /// Cancels a run in flight; false if it is not running here.
    #[napi]
    pub fn cancel(&self, run_id: String) -> bool {
        self.inner.cancel(&run_id)
    }

    /// Asks a run in flight to stop cleanly at its next step boundary; false
    /// if it is not running here.
    #[napi]
    pub fn stop(&self, run_id: String, reason: String) -> bool {
        self.inner.stop(&run_id, reason)
    }

    /// Replays a recorded run (its result as core JSON) without calling any
    /// agent, as an event stream.
    #[napi]
    pub fn replay(&self, record: String) -> napi::Result<NativeRunStream> {
        let record: RunResult = serde_json::from_str(&record)
            .map_err(|e| binding_error("invalid_request", format!("not a run result: {e}")))?;
        let stream = within_runtime_if_available(|| self.inner.replay(&record)).napi()?;
        Ok(NativeRunStream::new(stream))
    }

    /// Registers a person as an agent (the core's `HumanAgent`): each of its
    /// turns pauses the run until it is resumed with the person's answer.
    #[napi]
    pub fn add_human(&self, name: String, description: String, prompt: Option<String>) {
        let human = HumanAgent::new(name, description);
        self.inner.register(match prompt {
            Some(p) => human.prompt(p),
            None => human,
        });
    }

    /// Resumes a paused (or interrupted) run with an answer (JSON) or none,
    /// and runs it to its end or its next pause; resolves to the result as JSON.
    #[napi]
    pub async fn resume(&self, run_id: String, answer: Option<String>) -> napi::Result<String> {
        let answer = parse_answer(answer)?;
        let result = self.inner.resume_run(&run_id, answer).await.napi()?;
        to_json(&result)
    }

    /// Resumes a paused (or interrupted) run; resolves to its event stream
    /// once the run is claimed (or rejects: unknown run, invalid answer…).
    #[napi]
    pub async fn resume_stream(
        &self,
        run_id: String,
        answer: Option<String>,
    ) -> napi::Result<NativeRunStream> {
        let answer = parse_answer(answer)?;
        let stream = self.inner.resume(&run_id, answer).await.napi()?;
        Ok(NativeRunStream::new(stream))
    }

    /// The stored record of a run as JSON, found by its id; null when unknown.
    #[napi]
    pub async fn get_run(&self, run_id: String) -> napi::Result<Option<String>> {
        match self.inner.get_run(&run_id).await.napi()? {
            Some(r) => to_json(&r).map(Some),
            None => Ok(None),
        }
    }

    /// Cancels a run in flight here or waiting for input; false otherwise.
    #[napi]
    pub async fn cancel_run(&self, run_id: String) -> napi::Result<bool> {
        self.inner.cancel_run(&run_id).await.napi()
    }

    #[napi]
    pub fn active_runs(&self) -> u32 {
        u32::try_from(self.inner.active_runs()).unwrap_or(u32::MAX)
    }

    /// The store's kind ("memory", "redis").
    #[napi]
    pub fn store_kind(&self) -> String {
        self.inner.store().kind().to_owned()
    }
}
