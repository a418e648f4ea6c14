//! Scripted agents for tests and benchmarks (feature `test-utils`).

use std::{
    sync::{
        Arc,
        atomic::{AtomicU32, Ordering},
    },
    time::Duration,
};

use async_trait::async_trait;
use tokio::sync::Notify;

use crate::{
    agent::{Agent, AgentContext, AgentInput, AgentOutput},
    error::AgentError,
};

/// Answers with a fixed script, one entry per call (the last entry repeats),
/// after an optional delay; counts its calls.
pub struct ScriptedAgent {
    name: String,
    description: String,
    script: Vec<Result<AgentOutput, AgentError>>,
    delay: Duration,
    calls: Arc<AtomicU32>,
}

impl ScriptedAgent {
    pub fn new(name: &str, description: &str) -> Self {
        Self {
            name: name.into(),
            description: description.into(),
            script: Vec::new(),
            delay: Duration::ZERO,
            calls: Arc::new(AtomicU32::new(0)),
        }
    }

    /// An agent that always answers `text`.
    pub fn replying(name: &str, text: &str) -> Self {
        Self::new(name, &format!("replies {text}")).then(Ok(AgentOutput::text(text)))
    }

    #[must_use]
    pub fn then(mut self, step: Result<AgentOutput, AgentError>) -> Self {
        self.script.push(step);
        self
    }

    #[must_use]
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// A handle on the call counter that stays valid after the agent is registered.
    pub fn calls(&self) -> Arc<AtomicU32> {
        self.calls.clone()
    }
}

#[async_trait]
impl Agent for ScriptedAgent {
    fn name(&self) -> &str {
        &self.name
    }
    fn description(&self) -> &str {
        &self.description
    }
    async fn invoke(
        &self,
        _input: AgentInput,
        _ctx: AgentContext,
    ) -> Result<AgentOutput, AgentError> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst) as usize;
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        match self.script.get(n).or(self.script.last()) {
            Some(step) => step.clone(),
            None => Ok(AgentOutput::text(format!("{} answered", self.name))),
        }
    }
}

/// Holds each call until released, so a test can look at a run in flight:
/// signals [`entered`](Self::entered) when called, waits for
/// [`release`](Self::release), then answers its task.
pub struct GateAgent {
    name: String,
    entered: Arc<Notify>,
    release: Arc<Notify>,
}

impl GateAgent {
    pub fn new(name: &str) -> Self {
        Self {
            name: name.into(),
            entered: Arc::new(Notify::new()),
            release: Arc::new(Notify::new()),
        }
    }

    /// Notified once per call, when the call starts.
    pub fn entered(&self) -> Arc<Notify> {
        self.entered.clone()
    }

    /// `notify_one` lets one held call answer.
    pub fn release(&self) -> Arc<Notify> {
        self.release.clone()
    }
}

#[async_trait]
impl Agent for GateAgent {
    fn name(&self) -> &str {
        &self.name
    }
    fn description(&self) -> &str {
        "waits to be released"
    }
    async fn invoke(
        &self,
        input: AgentInput,
        _ctx: AgentContext,
    ) -> Result<AgentOutput, AgentError> {
        self.entered.notify_one();
        self.release.notified().await;
        Ok(AgentOutput::text(input.task))
    }
}
