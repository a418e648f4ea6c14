//! The JSON of the agent contract in `docs/agent-protocol.md`: the request an
//! agent receives and the response it answers, one set of types for the HTTP
//! agent and the queue transports so the two cannot drift apart.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::{
    agent::{AgentContext, AgentInput, AgentOutput, Handoff, Usage},
    error::AgentError,
    message::Message,
    run::InputRequest,
};

/// Longest error text kept from an agent's error response or reply.
const MAX_ERROR_TEXT: usize = 300;

/// The time limit of one call: the stricter of the agent's own limit and
/// what the run has left.
pub(crate) fn call_timeout(own: Duration, ctx: &AgentContext) -> Duration {
    ctx.remaining().map_or(own, |left| left.min(own))
}

/// What an agent service receives, owned so a worker can decode it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct AgentRequest {
    pub agent: String,
    pub task: String,
    #[serde(default)]
    pub messages: Vec<Message>,
    #[serde(default)]
    pub session_id: String,
    #[serde(default)]
    pub run_id: String,
    #[serde(default)]
    pub step: u32,
    #[serde(default)]
    pub metadata: Map<String, Value>,
    #[serde(default)]
    pub state: Value,
    /// Milliseconds the service has before the caller gives up.
    #[serde(default)]
    pub deadline_ms: u64,
    /// The answer to the question this step asked before the run paused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<Value>,
    /// The handoff that made this agent active (handoff runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handoff: Option<Handoff>,
}

impl AgentRequest {
    pub fn new(agent: &str, input: AgentInput, ctx: &AgentContext, timeout: Duration) -> Self {
        Self {
            agent: agent.to_owned(),
            task: input.task,
            messages: input.messages,
            session_id: input.session_id,
            run_id: input.run_id,
            step: ctx.step(),
            metadata: input.metadata,
            state: input.state,
            deadline_ms: timeout.as_millis().try_into().unwrap_or(u64::MAX),
            answer: ctx.answer().cloned(),
            handoff: ctx.handoff().cloned(),
        }
    }

    #[cfg(any(feature = "redis", feature = "nats"))]
    pub fn into_input(self) -> AgentInput {
        AgentInput {
            task: self.task,
            messages: self.messages,
            session_id: self.session_id,
            run_id: self.run_id,
            state: self.state,
            metadata: self.metadata,
        }
    }
}

/// What an agent service answers. Unknown fields are ignored so services can
/// add their own without breaking older servers.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct AgentResponse {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handoff: Option<Handoff>,
    /// More handoffs in the same turn (parallel handoffs).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub handoffs: Vec<Handoff>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<WireUsage>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_patch: Option<Value>,
    /// The agent needs a person's answer first: the run pauses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_required: Option<WireInputRequest>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct WireInputRequest {
    pub prompt: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<Value>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub(crate) struct WireUsage {
    #[serde(default)]
    pub prompt_tokens: u64,
    #[serde(default)]
    pub completion_tokens: u64,
    /// What the call cost, in millionths of the currency (services that bill).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub cost_micros: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl AgentResponse {
    /// The response of an agent that answered `result`; errors other than
    /// a question have no place here (see the queue's `error` reply).
    #[cfg(any(feature = "redis", feature = "nats"))]
    pub fn from_output(out: AgentOutput) -> Self {
        Self {
            content: Some(out.content),
            handoff: out.handoff,
            handoffs: out.handoffs,
            data: out.data,
            usage: (!out.usage.is_zero()).then_some(WireUsage {
                prompt_tokens: out.usage.prompt_tokens,
                completion_tokens: out.usage.completion_tokens,
                cost_micros: out.usage.cost_micros,
            }),
            state_patch: out.state_patch,
            input_required: None,
        }
    }

    /// The response that pauses the run with `q`.
    #[cfg(any(feature = "redis", feature = "nats"))]
    pub fn from_question(q: InputRequest) -> Self {
        Self {
            input_required: Some(WireInputRequest {
                prompt: q.prompt,
                schema: q.schema,
                context: q.context,
            }),
            ..Self::default()
        }
    }

    /// The output, or the question that pauses the run. Content defaults to
    /// the handoff's reason, so a bare handoff still says why.
    // The struct update keeps this building when AgentOutput gains fields.
    #[allow(clippy::needless_update)]
    pub fn into_result(self) -> Result<AgentOutput, AgentError> {
        if let Some(q) = self.input_required {
            let mut request = InputRequest::new(q.prompt);
            request.schema = q.schema;
            request.context = q.context;
            return Err(AgentError::input(request));
        }
        let content = match (self.content, &self.handoff) {
            (Some(c), _) => c,
            (None, Some(h)) => h.reason.clone(),
            (None, None) => String::new(),
        };
        Ok(AgentOutput {
            content,
            handoff: self.handoff,
            handoffs: self.handoffs,
            data: self.data,
            state_patch: self.state_patch,
            usage: self.usage.map_or_else(Usage::default, |u| Usage {
                cost_micros: u.cost_micros,
                ..Usage::new(u.prompt_tokens, u.completion_tokens)
            }),
            ..AgentOutput::default()
        })
    }
}

/// `text` cut to [`MAX_ERROR_TEXT`] characters (marked with `…`), so a
/// service's error page cannot bloat run records and events.
pub(crate) fn clip_error_text(text: &str) -> String {
    // Not `llm::clip`: queue agents are built without the LLM module.
    match text.char_indices().nth(MAX_ERROR_TEXT) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_carry_exactly_the_contract_fields() {
        let input = AgentInput {
            task: "t".into(),
            ..AgentInput::default()
        };
        let json = serde_json::to_value(AgentRequest::new(
            "a",
            input,
            &AgentContext::detached("a"),
            Duration::from_millis(1500),
        ))
        .unwrap();
        let mut keys: Vec<&str> = json
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "agent",
                "deadline_ms",
                "messages",
                "metadata",
                "run_id",
                "session_id",
                "state",
                "step",
                "task"
            ]
        );
        assert_eq!(json["deadline_ms"], 1500);
    }

    #[test]
    fn a_response_with_only_a_handoff_uses_the_reason_as_content() {
        let wire: AgentResponse =
            serde_json::from_str(r#"{"handoff":{"to":"billing","reason":"refund"},"extra":1}"#)
                .unwrap();
        let out = wire.into_result().unwrap();
        assert_eq!(out.content, "refund");
        assert_eq!(out.handoff.unwrap().to, "billing");
    }

    #[test]
    fn long_error_texts_are_clipped() {
        assert_eq!(clip_error_text("short"), "short");
        assert!(clip_error_text(&"x".repeat(1000)).chars().count() <= MAX_ERROR_TEXT + 1);
    }
}
