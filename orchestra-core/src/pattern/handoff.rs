//! Handoff: one agent is active at a time; it either answers (the run ends)
//! or hands off to another agent, which then takes over the conversation.
//!
//! Routes may be declared per agent; an agent not listed in `routes` may hand
//! off to any agent of the run. `max_handoffs` bounds the chain, and a cycle
//! is stopped early: when an agent hands off to the same agent with the same
//! text as it did before, nothing has changed since that earlier handoff, so
//! the run would go round forever; it fails with `handoff_cycle` and the path.
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! use orchestra_core::{FnAgent, Handoff, Orchestrator, RunRequest};
//! let orch = Orchestrator::new();
//! orch.register(FnAgent::new("triage", "routes questions", |_, _| async {
//!     Handoff::new("billing", "invoice question")
//! }));
//! orch.register(FnAgent::new("billing", "answers invoice questions", |_, _| async { "Refunded." }));
//! let r = orch.run(RunRequest::new("handoff", "Where is my refund?")).await.unwrap();
//! assert_eq!(r.output.as_deref(), Some("Refunded."));
//! # });
//! ```

use std::collections::{HashMap, HashSet};

use async_trait::async_trait;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{Pattern, PatternOutput, normalize};
use crate::{
    agent::AgentInfo,
    context::{Call, Components, RunContext, Scope},
    error::OrchestraError,
    event::EventKind,
};

pub const NAME: &str = "handoff";
pub const DESCRIPTION: &str = "One agent is active at a time and either answers or hands off to another \
     agent (optionally restricted by routes). Stops on an answer, max_handoffs, or a detected cycle.";

/// Options of the handoff pattern.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct HandoffOptions {
    /// The first active agent; default: the first agent of the run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
    /// Allowed targets per agent. Agents not listed may hand off to any agent of the run.
    #[serde(skip_serializing_if = "HashMap::is_empty")]
    pub routes: HashMap<String, Vec<String>>,
    /// Most handoffs in one run.
    pub max_handoffs: u32,
}

impl Default for HandoffOptions {
    fn default() -> Self {
        Self {
            start: None,
            routes: HashMap::new(),
            max_handoffs: 10,
        }
    }
}

/// The handoff pattern.
#[derive(Debug, Clone, Default)]
pub struct HandoffPattern {
    options: HandoffOptions,
}

impl HandoffPattern {
    pub fn new(options: HandoffOptions) -> Self {
        Self { options }
    }
}

#[async_trait]
impl Pattern for HandoffPattern {
    fn name(&self) -> &'static str {
        NAME
    }

    fn agents_optional(&self) -> bool {
        true
    }

    fn validate(&self, scope: &Scope, _components: &Components) -> Result<(), OrchestraError> {
        let o = &self.options;
        for (from, targets) in &o.routes {
            for name in std::iter::once(from).chain(targets) {
                if scope.find(name).is_none() {
                    return Err(OrchestraError::InvalidOptions {
                        field: format!("options.routes.{from}"),
                        message: format!("'{name}' is not an agent of this run"),
                    });
                }
            }
        }
        if let Some(start) = o.start.as_ref().filter(|s| scope.find(s).is_none()) {
            return Err(OrchestraError::InvalidOptions {
                field: "options.start".into(),
                message: format!("'{start}' is not an agent of this run"),
            });
        }
        Ok(())
    }

    async fn run(&self, ctx: &RunContext, scope: Scope) -> Result<PatternOutput, OrchestraError> {
        self.validate(&scope, ctx.components())?;
        let o = &self.options;
        let mut active = match &o.start {
            Some(name) => {
                scope
                    .find(name)
                    .cloned()
                    .ok_or_else(|| OrchestraError::InvalidOptions {
                        field: "options.start".into(),
                        message: format!("'{name}' is not an agent of this run"),
                    })?
            }
            None => scope
                .agents
                .first()
                .cloned()
                .ok_or_else(|| OrchestraError::NoAgents {
                    pattern: NAME.into(),
                })?,
        };
        let mut path = vec![active.name().to_owned()];
        let mut seen = HashSet::new();
        let mut handoffs = 0u32;
        loop {
            // The agents `active` may hand off to, so LLM agents can offer
            // them as transfer tools.
            let targets = scope
                .agents
                .iter()
                .filter(|a| a.name() != active.name())
                .filter(|a| {
                    o.routes
                        .get(active.name())
                        .is_none_or(|ts| ts.iter().any(|t| t == a.name()))
                })
                .map(|a| AgentInfo::of(a.as_ref()))
                .collect();
            let call = Call::new(scope.task.clone(), ctx.conversation())
                .label(format!("turn {}", handoffs))
                .handoff_targets(targets);
            ctx.set_position(
                || json!({"active": active.name(), "handoffs": handoffs, "path": path}),
            );
            let out = ctx.invoke(&active, call).await?;
            let Some(handoff) = out.output.handoff.clone() else {
                return Ok(PatternOutput {
                    content: out.output.content,
                    data: out.output.data.or_else(|| Some(json!({"path": path}))),
                    ..PatternOutput::default()
                });
            };
            // A run-wide condition ends the chain here, with what this agent said.
            if let Some(reason) = crate::termination::check_run(ctx, handoffs + 1) {
                return Ok(PatternOutput {
                    content: out.output.content,
                    data: Some(json!({"path": path, "pending_handoff": handoff})),
                    termination: Some(reason),
                    partial: false,
                });
            }
            let from = out.agent.clone();
            let allowed = o
                .routes
                .get(&from)
                .is_none_or(|targets| targets.contains(&handoff.to));
            let target = scope.find(&handoff.to).cloned();
            let (true, Some(target)) = (allowed, target) else {
                return Err(OrchestraError::InvalidHandoff {
                    from,
                    to: handoff.to,
                });
            };
            handoffs += 1;
            path.push(handoff.to.clone());
            ctx.emit_with(|| EventKind::Handoff {
                from: from.clone(),
                to: handoff.to.clone(),
                reason: handoff.reason.clone(),
            });
            if !seen.insert((from, handoff.to.clone(), normalize(&out.output.content))) {
                return Err(OrchestraError::HandoffCycle {
                    path: path.join(" → "),
                });
            }
            if handoffs > o.max_handoffs {
                return Err(OrchestraError::MaxHandoffs {
                    limit: o.max_handoffs,
                });
            }
            active = target;
        }
    }
}
