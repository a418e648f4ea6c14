//! The queue's reply: the agent contract's response ([`crate::agents::wire`])
//! plus the `error` object that stands in for an HTTP error status.

use std::time::Duration;

use serde::{Deserialize, Serialize};

pub(crate) use crate::agents::wire::AgentRequest;
use crate::{
    agent::AgentOutput,
    agents::wire::{AgentResponse, clip_error_text},
    error::AgentError,
};

/// A reply: the HTTP contract's response object, or `{"error": {...}}`.
/// Unknown fields are ignored so workers can add their own.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct AgentReply {
    #[serde(flatten)]
    pub response: AgentResponse,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ReplyError>,
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
                response: AgentResponse::from_output(out),
                error: None,
            },
            Err(AgentError::InputRequired(q)) => Self {
                response: AgentResponse::from_question(*q),
                error: None,
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

    pub fn into_result(self) -> Result<AgentOutput, AgentError> {
        if self.response.input_required.is_some() {
            return self.response.into_result();
        }
        if let Some(e) = self.error {
            if e.code.as_deref() == Some("rate_limited") || e.retry_after_ms.is_some() {
                return Err(AgentError::RateLimited {
                    retry_after: e.retry_after_ms.map(Duration::from_millis),
                });
            }
            return Err(AgentError::Failed {
                message: clip_error_text(&e.message),
                retryable: e.retryable,
            });
        }
        self.response.into_result()
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
    use crate::{
        agent::{Handoff, Usage},
        run::InputRequest,
    };

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
