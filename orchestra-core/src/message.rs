//! Conversation messages: the unit that sessions store and agents read.
//!
//! The JSON shape is the wire shape everywhere (REST, Python, Node), so it is
//! kept flat and explicit:
//!
//! ```
//! use orchestra_core::{Message, Role};
//! let m = Message::assistant("researcher", "Tides follow the moon.");
//! let json = serde_json::to_value(&m).unwrap();
//! assert_eq!(json["role"], "assistant");
//! assert_eq!(json["name"], "researcher");
//! assert_eq!(m.role, Role::Assistant);
//! ```

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Instructions that frame the conversation.
    System,
    /// The person (or calling system) that gave the task.
    User,
    /// An agent's answer.
    Assistant,
    /// The result of a tool call.
    Tool,
}

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Message {
    pub role: Role,
    pub content: String,
    /// The agent that wrote an assistant message; `None` for user and system text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Structured output that came with the text, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
    #[serde(default = "Utc::now")]
    #[schemars(transform = no_default)]
    #[serde(serialize_with = "crate::timestamp::serialize")]
    pub created_at: DateTime<Utc>,
}

/// "Now" is not a useful default to publish in a schema (and changes every time).
fn no_default(schema: &mut schemars::Schema) {
    if let Some(o) = schema.as_object_mut() {
        o.remove("default");
    }
}

impl Message {
    /// A message with the given role and text, stamped now.
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        Self::stamped(role, content, Utc::now())
    }

    /// [`new`](Self::new) with a time the caller already has (no clock read).
    pub(crate) fn stamped(
        role: Role,
        content: impl Into<String>,
        created_at: DateTime<Utc>,
    ) -> Self {
        Self {
            role,
            content: content.into(),
            name: None,
            data: None,
            created_at,
        }
    }

    /// A user message.
    pub fn user(content: impl Into<String>) -> Self {
        Self::new(Role::User, content)
    }

    /// A system message.
    pub fn system(content: impl Into<String>) -> Self {
        Self::new(Role::System, content)
    }

    /// An assistant message written by the named agent.
    pub fn assistant(name: impl Into<String>, content: impl Into<String>) -> Self {
        Self::new(Role::Assistant, content).with_name(name)
    }

    /// Sets the author name.
    #[must_use]
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Attaches structured data.
    #[must_use]
    pub fn with_data(mut self, data: Value) -> Self {
        self.data = Some(data);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_round_trips_through_json_unchanged() {
        let m = Message::assistant("a", "hi").with_data(serde_json::json!({"k": 1}));
        let back: Message = serde_json::from_str(&serde_json::to_string(&m).unwrap()).unwrap();
        assert_eq!(back, m);
    }

    #[test]
    fn a_message_without_timestamp_or_name_deserializes() {
        let m: Message = serde_json::from_str(r#"{"role":"user","content":"x"}"#).unwrap();
        assert_eq!(m.role, Role::User);
        assert!(m.name.is_none());
    }
}
