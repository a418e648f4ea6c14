//! Errors crossing into JavaScript, converted in one place.
//!
//! Every error leaves Rust as a napi error whose message is
//! [`MARKER`] followed by a JSON envelope `{"code", "message", ...}`. The
//! JavaScript facade (`lib/errors.js`) turns the envelope into the matching
//! `OrchestraError` subclass, so codes stay the core's stable codes. The
//! message keeps the source chain as indented "Caused by:" lines.

use orchestra_core::{AgentError, OrchestraError, StoreError};
use serde_json::{Map, Value, json};

/// Prefix that marks an error message as an Orchestra envelope.
pub const MARKER: &str = "__orchestra_error__";

/// Converts core results into napi results.
pub trait NapiExt<T> {
    fn napi(self) -> napi::Result<T>;
}

impl<T> NapiExt<T> for Result<T, OrchestraError> {
    fn napi(self) -> napi::Result<T> {
        self.map_err(|e| orchestra_error(&e))
    }
}

impl<T> NapiExt<T> for Result<T, StoreError> {
    fn napi(self) -> napi::Result<T> {
        self.map_err(|e| orchestra_error(&OrchestraError::Store(e)))
    }
}

/// The napi error for a core error.
pub fn orchestra_error(err: &OrchestraError) -> napi::Error {
    let mut extra = Map::new();
    match err {
        OrchestraError::InvalidRequest { field, .. }
        | OrchestraError::InvalidOptions { field, .. } => {
            extra.insert("field".into(), json!(field));
        }
        OrchestraError::AgentFailed { agent, source } => {
            extra.insert("agent".into(), json!(agent));
            extra.insert("agent_code".into(), json!(source.code()));
        }
        _ => {}
    }
    envelope(err.code(), &with_causes(err), extra)
}

/// A napi error for a failure inside the binding itself (bad JSON from the facade).
pub fn binding_error(code: &str, message: impl std::fmt::Display) -> napi::Error {
    envelope(code, &message.to_string(), Map::new())
}

/// The napi error for an agent that could not be set up (bad config,
/// unreachable card): `agent_failed`, naming the agent.
#[cfg(feature = "http-agents")]
pub fn agent_failure(agent: &str, err: &AgentError) -> napi::Error {
    orchestra_error(&OrchestraError::AgentFailed {
        agent: agent.to_owned(),
        source: err.clone(),
    })
}

/// Maps an agent-side failure reported by JavaScript.
pub fn agent_error(message: String, retryable: bool) -> AgentError {
    if retryable {
        AgentError::retryable(message)
    } else {
        AgentError::msg(message)
    }
}

fn envelope(code: &str, message: &str, mut extra: Map<String, Value>) -> napi::Error {
    extra.insert("code".into(), json!(code));
    extra.insert("message".into(), json!(message));
    napi::Error::from_reason(format!("{MARKER}{}", Value::Object(extra)))
}

/// The error's message followed by its sources, one "Caused by:" line each,
/// indented one step further per level.
pub fn with_causes(err: &dyn std::error::Error) -> String {
    let mut message = err.to_string();
    let mut cause = err.source();
    let mut indent = 2;
    while let Some(e) = cause {
        let line = format!("Caused by: {e}");
        for l in line.lines() {
            message.push('\n');
            message.push_str(&" ".repeat(indent));
            message.push_str(l);
        }
        cause = e.source();
        indent += 2;
    }
    message
}
