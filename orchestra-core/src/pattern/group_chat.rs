//! Group chat: agents take turns on one shared transcript; a
//! [`GroupChatManager`] picks each next speaker and may end the chat.
//!
//! The chat ends at the first of: `max_rounds`, the `termination` condition
//! (e.g. a text mention like `{"text_mention": "APPROVED"}`), a Rust predicate,
//! or the manager's own decision. The result says which one ended it.
//!
//! When a speaker fails (after its retries and fallbacks), the chat fails
//! by default; with `"on_agent_failure": "skip"` the speaker leaves the
//! rotation and the chat goes on with the others. The result is then marked
//! `partial`, its `termination` names who left, and `data.failed_agents`
//! lists them.
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! use orchestra_core::{FnAgent, Orchestrator, RunRequest};
//! let orch = Orchestrator::new();
//! orch.register(FnAgent::new("writer", "drafts", |_, _| async { "Draft v1" }));
//! orch.register(FnAgent::new("critic", "reviews", |_, _| async { "APPROVED" }));
//! let r = orch.run(RunRequest::new("group_chat", "Write a slogan").agents(["writer", "critic"])
//!     .option("termination", serde_json::json!({"text_mention": "APPROVED"}))).await.unwrap();
//! assert_eq!(r.steps.len(), 2);
//! assert_eq!(r.termination.as_deref(), Some("text_mention: APPROVED"));
//! # });
//! ```

use std::sync::Arc;

use async_trait::async_trait;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Pattern, PatternOutput};
use crate::{
    agent::{AgentInfo, Usage},
    context::{Call, Components, RunContext, Scope},
    error::OrchestraError,
    event::EventKind,
    message::Message,
};

pub const NAME: &str = "group_chat";
pub const DESCRIPTION: &str = "Agents discuss on a shared transcript; a manager (round_robin, or a \
     registered custom/LLM manager) picks each next speaker until max_rounds or a termination condition.";

/// The chat as the manager sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ChatState {
    pub task: String,
    pub participants: Vec<AgentInfo>,
    /// Messages written in this chat so far.
    pub transcript: Vec<Message>,
    /// Rounds completed (each round is one speaker's turn).
    pub round: u32,
    /// Tokens used in the run so far.
    pub usage: Usage,
}

impl ChatState {
    pub fn last_message(&self) -> Option<&Message> {
        self.transcript.last()
    }
}

/// The manager's choice of the next speaker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SpeakerChoice {
    pub agent: String,
    #[serde(default)]
    pub reason: String,
}

impl SpeakerChoice {
    pub fn new(agent: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            agent: agent.into(),
            reason: reason.into(),
        }
    }
}

/// Runs a group chat: picks speakers, may end the chat, may shape the result.
///
/// Implemented by [`RoundRobinManager`], [`FnManager`], the LLM manager and
/// the bindings' callable managers. Called once per round, never concurrently
/// within one chat (but shared between runs).
#[async_trait]
pub trait GroupChatManager: Send + Sync {
    /// The next speaker, or `None` to end the chat.
    async fn select_next(
        &self,
        chat: &ChatState,
        ctx: &RunContext,
    ) -> Result<Option<SpeakerChoice>, OrchestraError>;

    /// A reason to stop after the latest turn, or `None` to go on.
    async fn should_terminate(
        &self,
        _chat: &ChatState,
        _ctx: &RunContext,
    ) -> Result<Option<String>, OrchestraError> {
        Ok(None)
    }

    /// The chat's result; `None` means the last message.
    async fn filter_result(
        &self,
        _chat: &ChatState,
        _ctx: &RunContext,
    ) -> Result<Option<String>, OrchestraError> {
        Ok(None)
    }

    /// True when the answers depend only on the chat (no model, no clock,
    /// no outside state): they are then not recorded for resuming, since
    /// asking again gives the same answers.
    fn deterministic(&self) -> bool {
        false
    }
}

/// Each participant in turn, in the run's agent order.
#[derive(Debug, Clone, Copy, Default)]
pub struct RoundRobinManager;

#[async_trait]
impl GroupChatManager for RoundRobinManager {
    fn deterministic(&self) -> bool {
        true
    }

    async fn select_next(
        &self,
        chat: &ChatState,
        _ctx: &RunContext,
    ) -> Result<Option<SpeakerChoice>, OrchestraError> {
        let n = chat.participants.len();
        Ok((n > 0).then(|| {
            let next = &chat.participants[chat.round as usize % n];
            SpeakerChoice::new(next.name.clone(), "round robin")
        }))
    }
}

type SelectFn = dyn Fn(&ChatState) -> Option<String> + Send + Sync;

/// A manager made from a closure that names the next speaker (or `None` to stop).
pub struct FnManager {
    select: Box<SelectFn>,
}

impl FnManager {
    pub fn new(select: impl Fn(&ChatState) -> Option<String> + Send + Sync + 'static) -> Self {
        Self {
            select: Box::new(select),
        }
    }
}

#[async_trait]
impl GroupChatManager for FnManager {
    async fn select_next(
        &self,
        chat: &ChatState,
        _ctx: &RunContext,
    ) -> Result<Option<SpeakerChoice>, OrchestraError> {
        Ok((self.select)(chat).map(|a| SpeakerChoice::new(a, "custom manager")))
    }
}

pub use crate::termination::Termination;
use crate::termination::TerminationState;

/// What a group chat does when a speaker fails for good.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnAgentFailure {
    /// The chat fails.
    #[default]
    Fail,
    /// The speaker leaves the rotation; the chat goes on and its result is partial.
    Skip,
}

/// Options of the group chat pattern.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct GroupChatOptions {
    /// "round_robin" or the name of a registered manager.
    pub manager: String,
    pub max_rounds: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub termination: Option<Termination>,
    pub on_agent_failure: OnAgentFailure,
}

impl Default for GroupChatOptions {
    fn default() -> Self {
        Self {
            manager: "round_robin".into(),
            max_rounds: 10,
            termination: None,
            on_agent_failure: OnAgentFailure::Fail,
        }
    }
}

type Predicate = dyn Fn(&ChatState) -> bool + Send + Sync;

/// The group chat pattern.
pub struct GroupChat {
    options: GroupChatOptions,
    manager: Arc<dyn GroupChatManager>,
    predicate: Option<Arc<Predicate>>,
}

impl GroupChat {
    pub fn new(options: GroupChatOptions, manager: Arc<dyn GroupChatManager>) -> Self {
        Self {
            options,
            manager,
            predicate: None,
        }
    }

    /// Resolves the manager named in the options.
    pub fn from_options(
        options: GroupChatOptions,
        components: &Components,
    ) -> Result<Self, OrchestraError> {
        let manager: Arc<dyn GroupChatManager> = match options.manager.as_str() {
            "round_robin" => Arc::new(RoundRobinManager),
            name => components.managers.get(name).cloned().ok_or_else(|| {
                OrchestraError::InvalidOptions {
                    field: "options.manager".into(),
                    message: format!(
                        "unknown manager '{name}' (register it, or use \"round_robin\")"
                    ),
                }
            })?,
        };
        Ok(Self::new(options, manager))
    }

    /// Stops the chat when `predicate` returns true after a turn.
    #[must_use]
    pub fn with_predicate(
        mut self,
        predicate: impl Fn(&ChatState) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.predicate = Some(Arc::new(predicate));
        self
    }
}

#[async_trait]
impl Pattern for GroupChat {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn run(&self, ctx: &RunContext, scope: Scope) -> Result<PatternOutput, OrchestraError> {
        if scope.agents.is_empty() {
            return Err(OrchestraError::NoAgents {
                pattern: NAME.into(),
            });
        }
        let mut chat = ChatState {
            task: scope.task.clone(),
            participants: scope
                .agents
                .iter()
                .map(|a| AgentInfo::of(a.as_ref()))
                .collect(),
            transcript: Vec::new(),
            round: 0,
            usage: Usage::default(),
        };
        let mut failed: Vec<(String, OrchestraError)> = Vec::new();
        let termination = loop {
            if chat.round >= self.options.max_rounds {
                break format!("max_rounds: {}", self.options.max_rounds);
            }
            if chat.participants.is_empty() {
                break "every participant failed".to_owned();
            }
            let choice = match self.manager.deterministic() {
                true => self.manager.select_next(&chat, ctx).await?,
                false => {
                    ctx.decide(&format!("speaker:{}", chat.round), || {
                        self.manager.select_next(&chat, ctx)
                    })
                    .await?
                }
            };
            let Some(choice) = choice else {
                break "manager ended the chat".to_owned();
            };
            let speaker = scope
                .find(&choice.agent)
                .filter(|_| chat.participants.iter().any(|p| p.name == choice.agent))
                .cloned()
                .ok_or_else(|| {
                    OrchestraError::Manager(format!(
                        "chose '{}', who is not a participant",
                        choice.agent
                    ))
                })?;
            ctx.emit_with(|| EventKind::SpeakerSelected {
                agent: choice.agent.clone(),
                round: chat.round,
                reason: choice.reason,
            });
            ctx.set_position(|| {
                serde_json::json!({
                    "round": chat.round,
                    "speaker": choice.agent,
                    "participants": chat.participants.iter().map(|p| &p.name).collect::<Vec<_>>(),
                })
            });
            let call = Call::new(scope.task.clone(), ctx.conversation())
                .label(format!("round {}", chat.round));
            let out = match ctx.invoke(&speaker, call).await {
                Ok(out) => out,
                Err(e @ OrchestraError::AgentFailed { .. })
                    if self.options.on_agent_failure == OnAgentFailure::Skip =>
                {
                    tracing::info!(agent = %choice.agent, error = %e, "speaker failed; it leaves the chat");
                    chat.participants.retain(|p| p.name != choice.agent);
                    failed.push((choice.agent.clone(), e));
                    chat.round += 1;
                    chat.usage = ctx.usage();
                    continue;
                }
                Err(e) => return Err(e),
            };
            // The step's answer is not needed after this: its text moves into the message.
            let mut message = Message::assistant(out.agent, out.output.content);
            message.data = out.output.data;
            chat.transcript.push(message);
            chat.round += 1;
            chat.usage = ctx.usage();
            // The pattern's own condition (set in Rust), then the run's.
            let state = TerminationState {
                rounds: chat.round,
                messages: &chat.transcript,
                tokens: chat.usage.total_tokens,
                elapsed: ctx.limits().timeout.saturating_sub(ctx.remaining()),
                cost_micros: chat.usage.cost_micros,
            };
            if let Some(reason) = self
                .options
                .termination
                .as_ref()
                .and_then(|t| t.check(&state))
            {
                break reason;
            }
            if let Some(reason) = crate::termination::check_run(ctx, chat.round).await {
                break reason;
            }
            if self.predicate.as_ref().is_some_and(|p| p(&chat)) {
                break "predicate".to_owned();
            }
            let end = match self.manager.deterministic() {
                true => self.manager.should_terminate(&chat, ctx).await?,
                false => {
                    ctx.decide(&format!("end:{}", chat.round), || {
                        self.manager.should_terminate(&chat, ctx)
                    })
                    .await?
                }
            };
            if let Some(reason) = end {
                break reason;
            }
        };
        if chat.transcript.is_empty()
            && let Some((_, e)) = failed.pop()
        {
            // Nobody managed to say anything: that is a failure, not a partial chat.
            return Err(e);
        }
        let result = match self.manager.deterministic() {
            true => self.manager.filter_result(&chat, ctx).await?,
            false => {
                ctx.decide("result", || self.manager.filter_result(&chat, ctx))
                    .await?
            }
        };
        let content = match result {
            Some(c) => c,
            None => chat
                .last_message()
                .map(|m| m.content.clone())
                .unwrap_or_default(),
        };
        if failed.is_empty() {
            return Ok(PatternOutput {
                content,
                data: None,
                termination: Some(termination),
                partial: false,
            });
        }
        let names: Vec<&str> = failed.iter().map(|(n, _)| n.as_str()).collect();
        Ok(PatternOutput {
            content,
            data: Some(serde_json::json!({
                "failed_agents": failed
                    .iter()
                    .map(|(n, e)| serde_json::json!({"agent": n, "error": e.info()}))
                    .collect::<Vec<_>>(),
            })),
            termination: Some(format!(
                "{termination}; partial: {} left the chat after failing",
                names.join(", ")
            )),
            partial: true,
        })
    }
}
