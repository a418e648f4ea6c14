//! [`HumanAgent`]: a person taking part in a run as if they were an agent.
//!
//! Its turn pauses the run with an `input_requested` event; the answer
//! (resumed with `Orchestrator::resume`) becomes its message. In a group chat
//! a human participant speaks when the manager picks them.

use async_trait::async_trait;
use serde_json::{Value, json};

use crate::{
    agent::{Agent, AgentContext, AgentInput, AgentOutput},
    error::AgentError,
    run::{InputKind, InputRequest},
};

/// A participant whose every turn is answered by a person.
#[derive(Debug, Clone)]
pub struct HumanAgent {
    name: String,
    description: String,
    prompt: Option<String>,
}

impl HumanAgent {
    pub fn new(name: impl Into<String>, description: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            description: description.into(),
            prompt: None,
        }
    }

    /// What to ask the person (default: the step's instruction).
    #[must_use]
    pub fn prompt(mut self, prompt: impl Into<String>) -> Self {
        self.prompt = Some(prompt.into());
        self
    }

    /// The answers a person may give: text, or `{"content": text, "data": any}`.
    pub fn answer_schema() -> Value {
        json!({
            "anyOf": [
                {"type": "string", "minLength": 1},
                {
                    "type": "object",
                    "required": ["content"],
                    "properties": {"content": {"type": "string", "minLength": 1}, "data": {}},
                },
            ]
        })
    }
}

#[async_trait]
impl Agent for HumanAgent {
    fn name(&self) -> &str {
        &self.name
    }

    fn description(&self) -> &str {
        &self.description
    }

    async fn invoke(
        &self,
        input: AgentInput,
        ctx: AgentContext,
    ) -> Result<AgentOutput, AgentError> {
        match ctx.answer() {
            Some(Value::String(text)) => Ok(AgentOutput::text(text.clone())),
            Some(answer) => {
                let content = answer
                    .get("content")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
                let out = AgentOutput::text(content);
                Ok(match answer.get("data") {
                    Some(data) if !data.is_null() => out.with_data(data.clone()),
                    _ => out,
                })
            }
            None => {
                let last = input
                    .messages
                    .last()
                    .map(|m| json!({"role": m.role, "name": m.name, "content": m.content}));
                let mut request =
                    InputRequest::new(self.prompt.clone().unwrap_or_else(|| input.task.clone()))
                        .schema(Self::answer_schema());
                request.kind = InputKind::Human;
                if let Some(last) = last {
                    request = request.context(json!({"last_message": last}));
                }
                Err(AgentError::InputRequired(Box::new(request)))
            }
        }
    }
}
