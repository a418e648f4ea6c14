//! Language models as orchestration parts (feature `http-agents`).
//!
//! One small trait, [`ChatModel`], stands for any chat-completion provider;
//! [`OpenAiChatModel`](crate::agents::openai::OpenAiChatModel) implements it
//! for every OpenAI-compatible endpoint (OpenAI, Azure OpenAI, vLLM, Ollama,
//! llama.cpp's server). On top of it:
//!
//! - [`LlmAgent`]: an [`Agent`](crate::Agent) that answers with a model, runs
//!   Rust [`Tool`]s in a bounded loop, streams tokens as `agent_delta` events,
//!   and in a handoff run gets `transfer_to_<agent>` tools.
//! - [`LlmManager`]: a group chat manager that asks the model who speaks next.
//! - [`LlmPlanner`]: a dynamic-pattern planner keeping Magentic-One style
//!   task and progress ledgers.
//!
//! Providers other than OpenAI-compatible ones plug in by implementing
//! [`ChatModel`]; everything above works with them unchanged.
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! use std::sync::Arc;
//! use async_trait::async_trait;
//! use orchestra_core::llm::{ChatCall, ChatModel, ChatRequest, ChatResponse, LlmAgent};
//! use orchestra_core::{Agent, AgentContext, AgentError, AgentInput};
//!
//! /// A model that always says the same thing (a stand-in for a real provider).
//! struct Parrot;
//! #[async_trait]
//! impl ChatModel for Parrot {
//!     fn model(&self) -> &str { "parrot" }
//!     async fn chat(&self, _r: &ChatRequest, _c: ChatCall<'_>) -> Result<ChatResponse, AgentError> {
//!         Ok(ChatResponse::text("Polly wants a cracker"))
//!     }
//! }
//!
//! let agent = LlmAgent::new("parrot", "repeats itself", Arc::new(Parrot));
//! let out = agent.invoke(AgentInput { task: "hi".into(), ..Default::default() },
//!                        AgentContext::detached("parrot")).await.unwrap();
//! assert_eq!(out.content, "Polly wants a cracker");
//! # });
//! ```

mod agent;
mod manager;
mod planner;
pub(crate) mod sse;

use std::future::Future;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub use agent::{LlmAgent, Tool, ToolError};
pub use manager::LlmManager;
pub use planner::{LlmPlanner, PlannerReply, ProgressLedger, ReplyStep, TaskLedger};

use crate::{agent::Usage, error::AgentError};

/// Who wrote a chat message, in chat-completion terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChatRole {
    System,
    User,
    Assistant,
    Tool,
}

/// A tool call requested by the model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolCall {
    /// The provider's id for this call; tool results refer to it.
    pub id: String,
    pub name: String,
    /// The arguments as the model wrote them: JSON text, possibly malformed.
    pub arguments: String,
}

/// One message of a chat request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: ChatRole,
    pub content: String,
    /// Tool calls made by an assistant message.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// For a tool message: the call it answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
}

impl ChatMessage {
    fn new(role: ChatRole, content: impl Into<String>) -> Self {
        Self {
            role,
            content: content.into(),
            tool_calls: Vec::new(),
            tool_call_id: None,
        }
    }
    pub fn system(content: impl Into<String>) -> Self {
        Self::new(ChatRole::System, content)
    }
    pub fn user(content: impl Into<String>) -> Self {
        Self::new(ChatRole::User, content)
    }
    pub fn assistant(content: impl Into<String>) -> Self {
        Self::new(ChatRole::Assistant, content)
    }
    /// An assistant turn that called tools (kept in the history so the
    /// following tool results have something to answer).
    pub fn assistant_tool_calls(content: impl Into<String>, calls: Vec<ToolCall>) -> Self {
        Self {
            tool_calls: calls,
            ..Self::new(ChatRole::Assistant, content)
        }
    }
    pub fn tool_result(call_id: impl Into<String>, content: impl Into<String>) -> Self {
        Self {
            tool_call_id: Some(call_id.into()),
            ..Self::new(ChatRole::Tool, content)
        }
    }
}

/// A tool as the model sees it: a name, what it is for, a JSON schema of its arguments.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolSpec {
    pub name: String,
    pub description: String,
    pub parameters: Value,
}

/// Asks the model for JSON output. Not every server knows every mode, so the
/// callers that need JSON (manager, planner) still validate what comes back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum ResponseFormat {
    /// Plain text (nothing is sent).
    Text,
    /// `{"type": "json_object"}`: any JSON object (OpenAI, vLLM, Ollama, llama.cpp).
    JsonObject,
    /// `{"type": "json_schema", ...}`: output constrained to a schema where supported.
    JsonSchema { name: String, schema: Value },
}

/// One chat-completion request, provider-neutral.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ChatRequest {
    pub messages: Vec<ChatMessage>,
    pub tools: Vec<ToolSpec>,
    pub response_format: Option<ResponseFormat>,
    /// Overrides the model's configured temperature for this request.
    pub temperature: Option<f32>,
}

impl ChatRequest {
    pub fn new(messages: Vec<ChatMessage>) -> Self {
        Self {
            messages,
            ..Self::default()
        }
    }
}

/// What the model answered.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ChatResponse {
    pub content: String,
    pub tool_calls: Vec<ToolCall>,
    /// "stop", "tool_calls", "length", … as the provider reported it.
    pub finish_reason: Option<String>,
    pub usage: Usage,
}

impl ChatResponse {
    /// A plain text answer.
    pub fn text(content: impl Into<String>) -> Self {
        Self {
            content: content.into(),
            finish_reason: Some("stop".into()),
            ..Self::default()
        }
    }
}

/// Per-call controls: when to stop and where streamed text goes.
#[derive(Clone, Copy)]
pub struct ChatCall<'a> {
    /// Fires when the caller gives up; the HTTP request must be dropped then.
    pub cancel: &'a CancellationToken,
    pub deadline: Option<Instant>,
    /// Receives each streamed piece of text; `None` asks for no streaming.
    pub on_delta: Option<&'a (dyn Fn(&str) + Send + Sync)>,
}

impl<'a> ChatCall<'a> {
    pub fn new(cancel: &'a CancellationToken, deadline: Option<Instant>) -> Self {
        Self {
            cancel,
            deadline,
            on_delta: None,
        }
    }

    #[must_use]
    pub fn on_delta(mut self, f: &'a (dyn Fn(&str) + Send + Sync)) -> Self {
        self.on_delta = Some(f);
        self
    }

    /// Runs `fut` until it finishes, the caller cancels, or the deadline (or
    /// `timeout`, whichever is first) passes. Dropping `fut` is what aborts an
    /// in-flight HTTP request, so every await on the network goes through here.
    pub async fn guard<T>(
        &self,
        timeout: Option<std::time::Duration>,
        fut: impl Future<Output = T>,
    ) -> Result<T, AgentError> {
        let by_timeout = timeout.map(|t| Instant::now() + t);
        let deadline = match (self.deadline, by_timeout) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let sleep = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            out = fut => Ok(out),
            () = self.cancel.cancelled() => Err(AgentError::Cancelled),
            () = sleep => Err(AgentError::Timeout(timeout.unwrap_or_default())),
        }
    }
}

/// A chat-completion provider.
///
/// Implemented by [`OpenAiChatModel`](crate::agents::openai::OpenAiChatModel)
/// and by anything else that can answer a [`ChatRequest`]. One model value is
/// shared by many agents, managers and planners and called concurrently, so
/// implementations keep per-call state on the stack. `chat` must stop (and
/// drop its network request) when `call.cancel` fires or `call.deadline`
/// passes, and report transient trouble with retryable [`AgentError`]s.
#[async_trait]
pub trait ChatModel: Send + Sync {
    /// The model's name, for logs and errors.
    fn model(&self) -> &str;
    /// Sends one request; streams text through `call.on_delta` when set.
    async fn chat(
        &self,
        request: &ChatRequest,
        call: ChatCall<'_>,
    ) -> Result<ChatResponse, AgentError>;
}

/// Finds the JSON object in a model's answer: the whole text, a fenced
/// code block, or the outermost `{…}`. Models asked for "JSON only" still
/// wrap it in prose or fences now and then.
pub fn extract_json(text: &str) -> Option<Value> {
    let trimmed = text.trim();
    if let Ok(v) = serde_json::from_str::<Value>(trimmed) {
        return Some(v);
    }
    if let Some(start) = trimmed.find("```") {
        let rest = &trimmed[start + 3..];
        let rest = rest.strip_prefix("json").unwrap_or(rest);
        if let Some(v) = rest
            .find("```")
            .and_then(|end| serde_json::from_str::<Value>(rest[..end].trim()).ok())
        {
            return Some(v);
        }
    }
    let (start, end) = (trimmed.find('{')?, trimmed.rfind('}')?);
    (start < end)
        .then(|| serde_json::from_str::<Value>(&trimmed[start..=end]).ok())
        .flatten()
}

/// Shortens text for prompts, on a character boundary.
pub(crate) fn clip(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_owned(),
    }
}

/// A model for tests of code paths that must not call one.
#[cfg(test)]
pub(crate) struct UnusedModel;

#[cfg(test)]
#[async_trait]
impl ChatModel for UnusedModel {
    fn model(&self) -> &str {
        "unused"
    }
    async fn chat(&self, _: &ChatRequest, _: ChatCall<'_>) -> Result<ChatResponse, AgentError> {
        Err(AgentError::msg("unused"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_is_found_in_fences_and_prose() {
        assert_eq!(extract_json(r#"{"a":1}"#), Some(json!({"a": 1})));
        assert_eq!(
            extract_json("Sure:\n```json\n{\"a\": 2}\n```\n"),
            Some(json!({"a": 2}))
        );
        assert_eq!(
            extract_json("I pick {\"next\": \"x\"} because"),
            Some(json!({"next": "x"}))
        );
        assert_eq!(extract_json("no json here"), None);
        assert_eq!(extract_json("} {"), None);
    }

    #[test]
    fn clipping_respects_character_boundaries() {
        assert_eq!(clip("héllo", 2), "hé…");
        assert_eq!(clip("hi", 5), "hi");
    }
}
