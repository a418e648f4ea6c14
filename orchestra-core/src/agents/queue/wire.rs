//! The JSON an agent receives and answers: the HTTP agent contract of
//! `docs/agent-protocol.md` (kept field for field in step with
//! `agents::http`), plus the `error` reply that stands in for an HTTP error
//! status on a queue.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::{
    agent::{AgentContext, AgentInput, AgentOutput, Handoff, Usage},
    error::AgentError,
    message::Message,
    run::InputRequest,
};

/// Longest error text kept from a worker's error reply.
const MAX_ERROR_TEXT: usize = 300;

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

/// A reply: the HTTP contract's response object, or `{"error": {...}}`.
/// Unknown fields are ignored so workers can add their own.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct AgentReply {
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ReplyError>,
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

/// A failure reported by the worker. `retryable` decides whether the run's
/// retry policy tries again, as an HTTP 5xx or 4xx status would.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ReplyError {
    #[serde(default)]
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(default)]
    pub retryable: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
}

impl AgentReply {
    pub fn from_result(result: Result<AgentOutput, AgentError>) -> Self {
        match result {
            Ok(out) => Self {
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
                error: None,
            },
            Err(AgentError::InputRequired(q)) => Self {
                input_required: Some(WireInputRequest {
                    prompt: q.prompt,
                    schema: q.schema,
                    context: q.context,
                }),
                ..Self::default()
            },
            Err(e) => Self {
                error: Some(ReplyError {
                    message: e.to_string(),
                    code: Some(e.code().to_owned()),
                    retryable: e.is_retryable(),
                    retry_after_ms: match &e {
                        AgentError::RateLimited {
                            retry_after: Some(d),
                        } => Some(d.as_millis().try_into().unwrap_or(u64::MAX)),
                        _ => None,
                    },
                }),
                ..Self::default()
            },
        }
    }

    // The struct update keeps this building when AgentOutput gains fields.
    #[allow(clippy::needless_update)]
    pub fn into_result(self) -> Result<AgentOutput, AgentError> {
        if let Some(q) = self.input_required {
            let mut request = InputRequest::new(q.prompt);
            request.schema = q.schema;
            request.context = q.context;
            return Err(AgentError::input(request));
        }
        if let Some(e) = self.error {
            if e.code.as_deref() == Some("rate_limited") || e.retry_after_ms.is_some() {
                return Err(AgentError::RateLimited {
                    retry_after: e.retry_after_ms.map(Duration::from_millis),
                });
            }
            let message = match e.message.char_indices().nth(MAX_ERROR_TEXT) {
                Some((cut, _)) => format!("{}…", &e.message[..cut]),
                None => e.message,
            };
            return Err(AgentError::Failed {
                message,
                retryable: e.retryable,
            });
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

    /// Decodes a reply; anything but a JSON object of this shape is
    /// `invalid_agent_output`, as for an HTTP agent.
    pub fn decode(bytes: &[u8]) -> Result<Self, AgentError> {
        serde_json::from_slice(bytes)
            .map_err(|e| AgentError::InvalidOutput(format!("reply is not valid JSON: {e}")))
    }

    /// A permanent failure reply, for requests a worker cannot serve.
    pub fn failure(message: impl Into<String>, retryable: bool) -> Self {
        Self {
            error: Some(ReplyError {
                message: message.into(),
                code: None,
                retryable,
                retry_after_ms: None,
            }),
            ..Self::default()
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        // A struct of strings and JSON values always serializes.
        serde_json::to_vec(self).unwrap_or_else(|_| b"{}".to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_keep_their_retryability_across_the_queue() {
        let reply = AgentReply::from_result(Err(AgentError::retryable("busy")));
        let back = AgentReply::decode(&reply.encode()).unwrap().into_result();
        assert!(back.unwrap_err().is_retryable());
        let reply = AgentReply::from_result(Err(AgentError::msg("bad input")));
        let back = AgentReply::decode(&reply.encode()).unwrap().into_result();
        assert!(!back.unwrap_err().is_retryable());
        let reply = AgentReply::from_result(Err(AgentError::RateLimited {
            retry_after: Some(Duration::from_secs(2)),
        }));
        let back = AgentReply::decode(&reply.encode()).unwrap().into_result();
        assert!(matches!(
            back,
            Err(AgentError::RateLimited { retry_after: Some(d) }) if d == Duration::from_secs(2)
        ));
    }

    #[test]
    fn requests_carry_exactly_the_http_agent_fields() {
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
    fn input_requests_and_parallel_handoffs_cross_the_queue() {
        let reply = AgentReply::from_result(Err(AgentError::input(InputRequest::new("approve?"))));
        let back = AgentReply::decode(&reply.encode()).unwrap().into_result();
        assert!(matches!(back, Err(AgentError::InputRequired(q)) if q.prompt == "approve?"),);
        let mut out = AgentOutput::handoff(Handoff::new("a", "first"));
        out.handoffs = vec![Handoff::new("b", "second")];
        let back = AgentReply::decode(&AgentReply::from_result(Ok(out.clone())).encode())
            .unwrap()
            .into_result()
            .unwrap();
        assert_eq!(back, out);
    }

    #[test]
    fn outputs_survive_the_round_trip() {
        let out = AgentOutput::text("hi")
            .with_usage(Usage::new(3, 4))
            .with_state_patch(serde_json::json!({"k": 1}));
        let reply = AgentReply::from_result(Ok(out.clone()));
        let back = AgentReply::decode(&reply.encode())
            .unwrap()
            .into_result()
            .unwrap();
        assert_eq!(back, out);
        assert!(AgentReply::decode(b"[1]").is_err());
    }
}
