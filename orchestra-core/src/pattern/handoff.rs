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

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
};

use async_trait::async_trait;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{Pattern, PatternOutput, normalize};
use crate::{
    agent::{AgentInfo, Handoff},
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
    /// A JSON schema per target agent: a handoff to it must carry a
    /// `payload` that satisfies it, checked before the target runs (a
    /// handoff that fails it ends the run with `invalid_handoff_payload`).
    #[serde(skip_serializing_if = "HashMap::is_empty")]
    pub payload_schemas: HashMap<String, Value>,
    /// When an agent hands off to several agents in one turn: `true` runs
    /// them all at once, and their answers come back to that agent, which
    /// decides the next step; `false` (default) takes the first and reports
    /// the others in a `handoff_conflict` event.
    pub parallel_handoffs: bool,
}

impl Default for HandoffOptions {
    fn default() -> Self {
        Self {
            start: None,
            routes: HashMap::new(),
            max_handoffs: 10,
            payload_schemas: HashMap::new(),
            parallel_handoffs: false,
        }
    }
}

impl HandoffOptions {
    fn allowed(&self, from: &str, to: &str) -> bool {
        self.routes
            .get(from)
            .is_none_or(|targets| targets.iter().any(|t| t == to))
    }

    /// Checks a handoff's payload against its route's schema, if it has one.
    fn check_payload(&self, from: &str, h: &Handoff) -> Result<(), OrchestraError> {
        let Some(schema) = self.payload_schemas.get(&h.to) else {
            return Ok(());
        };
        let invalid = |message: String| OrchestraError::InvalidHandoffPayload {
            from: from.to_owned(),
            to: h.to.clone(),
            message,
        };
        let problems = crate::schema::problems(schema, h.payload.as_ref().unwrap_or(&Value::Null))
            .map_err(|e| invalid(format!("the route's schema is invalid: {e}")))?;
        match problems.is_empty() {
            true => Ok(()),
            false => Err(invalid(problems.join("; "))),
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

impl HandoffPattern {
    /// Runs several handoffs of one turn at once; their answers join the
    /// conversation. Every route and payload is checked before any runs.
    async fn fan_out(
        &self,
        ctx: &RunContext,
        scope: &Scope,
        from: &str,
        requested: Vec<Handoff>,
        path: &mut Vec<String>,
    ) -> Result<(), OrchestraError> {
        let o = &self.options;
        let mut calls = Vec::with_capacity(requested.len());
        for h in requested {
            let target = scope.find(&h.to).cloned();
            let (true, Some(target)) = (o.allowed(from, &h.to), target) else {
                return Err(OrchestraError::InvalidHandoff {
                    from: from.to_owned(),
                    to: h.to,
                });
            };
            o.check_payload(from, &h)?;
            calls.push((target, h));
        }
        let mut steps = Vec::with_capacity(calls.len());
        for (target, h) in calls {
            ctx.emit_with(|| EventKind::Handoff {
                from: from.to_owned(),
                to: h.to.clone(),
                reason: h.reason.clone(),
            });
            path.push(h.to.clone());
            let call = Call::new(h.reason.clone(), ctx.conversation())
                .label(format!("parallel handoff from {from}"))
                .handoff(Some(h), None);
            steps.push(ctx.invoke(&target, call));
        }
        // Wait for every answer; the first failure (in call order) ends the run.
        let k = steps.len();
        for r in futures::future::join_all(steps).await {
            r?;
        }
        // The answers join the conversation in the order they were asked for.
        ctx.order_last_steps(k);
        Ok(())
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
        if let Some(name) = o.payload_schemas.keys().find(|n| scope.find(n).is_none()) {
            return Err(OrchestraError::InvalidOptions {
                field: format!("options.payload_schemas.{name}"),
                message: format!("'{name}' is not an agent of this run"),
            });
        }
        if let Some((name, e)) = o
            .payload_schemas
            .iter()
            .find_map(|(n, s)| jsonschema::validator_for(s).err().map(|e| (n, e)))
        {
            return Err(OrchestraError::InvalidOptions {
                field: format!("options.payload_schemas.{name}"),
                message: format!("not a valid JSON schema: {e}"),
            });
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
        // The handoff that made `active` active, for its call.
        let mut arrived: Option<Handoff> = None;
        let schemas = (!o.payload_schemas.is_empty()).then(|| Arc::new(o.payload_schemas.clone()));
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
                .handoff_targets(targets)
                .handoff(arrived.take(), schemas.clone());
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
            if let Some(reason) = crate::termination::check_run(ctx, handoffs + 1).await {
                return Ok(PatternOutput {
                    content: out.output.content,
                    data: Some(json!({"path": path, "pending_handoff": handoff})),
                    termination: Some(reason),
                    partial: false,
                });
            }
            let from = out.agent.clone();
            if !out.output.handoffs.is_empty() {
                let requested: Vec<Handoff> = std::iter::once(handoff.clone())
                    .chain(out.output.handoffs.iter().cloned())
                    .collect();
                if o.parallel_handoffs {
                    handoffs += requested.len() as u32;
                    if handoffs > o.max_handoffs {
                        return Err(OrchestraError::MaxHandoffs {
                            limit: o.max_handoffs,
                        });
                    }
                    self.fan_out(ctx, &scope, &from, requested, &mut path)
                        .await?;
                    // The same agent goes on, with the answers in the conversation.
                    continue;
                }
                // The documented rule: the first requested handoff wins.
                ctx.emit_with(|| EventKind::HandoffConflict {
                    agent: from.clone(),
                    step: out.index,
                    requested: requested.iter().map(|h| h.to.clone()).collect(),
                    chosen: handoff.to.clone(),
                });
                tracing::info!(agent = %from, chosen = %handoff.to, "several handoffs in one turn; the first wins");
            }
            let target = scope.find(&handoff.to).cloned();
            let (true, Some(target)) = (o.allowed(&from, &handoff.to), target) else {
                return Err(OrchestraError::InvalidHandoff {
                    from,
                    to: handoff.to,
                });
            };
            o.check_payload(&from, &handoff)?;
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
            arrived = Some(handoff);
            active = target;
        }
    }
}
