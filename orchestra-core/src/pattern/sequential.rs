//! Sequential: a pipeline. Each agent gets the previous agent's output as its
//! task (and the conversation so far); the result is the last output.
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! use orchestra_core::{FnAgent, Orchestrator, RunRequest};
//! let orch = Orchestrator::new();
//! orch.register(FnAgent::new("up", "upper-cases", |i, _| async move { i.task.to_uppercase() }));
//! orch.register(FnAgent::new("bang", "adds !", |i, _| async move { format!("{}!", i.task) }));
//! let r = orch.run(RunRequest::new("sequential", "hi").agents(["up", "bang"])).await.unwrap();
//! assert_eq!(r.output.as_deref(), Some("HI!"));
//! assert_eq!(r.steps.len(), 2);
//! # });
//! ```

use async_trait::async_trait;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Pattern, PatternOutput};
use crate::{
    context::{Call, RunContext, Scope},
    error::OrchestraError,
};

pub const NAME: &str = "sequential";
pub const DESCRIPTION: &str = "Agents run one after another; each receives the previous agent's output \
     and the conversation so far. The result is the last agent's output.";

/// Options of the sequential pattern.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct SequentialOptions {
    /// Give every agent the original task instead of the previous output
    /// (the previous outputs are still in its messages).
    pub keep_task: bool,
}

/// The sequential pattern.
#[derive(Debug, Clone, Default)]
pub struct Sequential {
    options: SequentialOptions,
}

impl Sequential {
    pub fn new(options: SequentialOptions) -> Self {
        Self { options }
    }
}

#[async_trait]
impl Pattern for Sequential {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn run(&self, ctx: &RunContext, scope: Scope) -> Result<PatternOutput, OrchestraError> {
        let mut last: Option<crate::context::StepOutcome> = None;
        let mut termination = None;
        for (i, agent) in scope.agents.iter().enumerate() {
            // The previous answer is the next task; it is not needed after that.
            let task = match last.take() {
                Some(prev) if !self.options.keep_task => prev.output.content,
                _ => scope.task.clone(),
            };
            let call = Call::new(task, ctx.conversation()).label(format!("position {i}"));
            ctx.set_position(|| serde_json::json!({"position": i, "agent": agent.name()}));
            last = Some(ctx.invoke(agent, call).await?);
            // A run-wide condition may end the pipeline early, with this answer.
            termination = crate::termination::check_run(ctx, i as u32 + 1).await;
            if termination.is_some() {
                break;
            }
        }
        let last = last.ok_or_else(|| OrchestraError::NoAgents {
            pattern: NAME.into(),
        })?;
        Ok(PatternOutput {
            content: last.output.content,
            data: last.output.data,
            termination,
            ..PatternOutput::default()
        })
    }
}
