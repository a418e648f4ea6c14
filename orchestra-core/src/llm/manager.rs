//! [`LlmManager`]: a group chat manager that lets a model pick the speakers.
//!
//! Each round the model sees the participants (names and descriptions) and
//! the transcript, and answers `{"next": NAME, "reason": ..., "terminate": BOOL}`.
//! A name that is not a participant (or an answer that is not JSON) is sent
//! back once with a correction; if the second answer is no better, or the
//! model cannot be reached, the round goes round-robin and a `fallback`
//! event says why, so a flaky model slows a chat down but never stops it.
//!
//! ```no_run
//! # fn demo(model: std::sync::Arc<dyn orchestra_core::llm::ChatModel>) {
//! use std::sync::Arc;
//! use orchestra_core::{Orchestrator, RunRequest, llm::LlmManager};
//! let orch = Orchestrator::new();
//! orch.register_manager("llm", Arc::new(LlmManager::new(model)));
//! // then: RunRequest::new("group_chat", "...").option("manager", "llm")
//! # }
//! ```

use std::sync::Arc;

use async_trait::async_trait;
use serde::Deserialize;

use super::{ChatCall, ChatMessage, ChatModel, ChatRequest, ResponseFormat, clip, extract_json};
use crate::{
    context::RunContext,
    error::OrchestraError,
    event::EventKind,
    pattern::group_chat::{ChatState, GroupChatManager, RoundRobinManager, SpeakerChoice},
};

/// Picks each next speaker with a chat model.
pub struct LlmManager {
    model: Arc<dyn ChatModel>,
    instructions: Option<String>,
    allow_termination: bool,
    max_transcript: usize,
    json_mode: Option<ResponseFormat>,
}

#[derive(Deserialize)]
struct Reply {
    #[serde(default, alias = "speaker", alias = "next_speaker")]
    next: Option<String>,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    terminate: Option<bool>,
}

/// What the model's answer amounts to.
enum Verdict {
    Speak(SpeakerChoice),
    End(String),
    /// Unusable; the text explains why, for the correction prompt.
    Invalid(String),
}

impl LlmManager {
    pub fn new(model: Arc<dyn ChatModel>) -> Self {
        Self {
            model,
            instructions: None,
            allow_termination: true,
            max_transcript: 30,
            json_mode: Some(ResponseFormat::JsonObject),
        }
    }

    /// Extra guidance for the selection (e.g. "the critic speaks after every draft").
    #[must_use]
    pub fn instructions(mut self, text: impl Into<String>) -> Self {
        self.instructions = Some(text.into());
        self
    }

    /// Whether the model may end the chat (default true); otherwise only the
    /// pattern's termination conditions do.
    #[must_use]
    pub fn allow_termination(mut self, allow: bool) -> Self {
        self.allow_termination = allow;
        self
    }

    /// How many of the latest messages the model is shown.
    #[must_use]
    pub fn max_transcript(mut self, n: usize) -> Self {
        self.max_transcript = n;
        self
    }

    /// The `response_format` asked for (default `json_object`); `None` for
    /// servers that reject the parameter.
    #[must_use]
    pub fn json_mode(mut self, mode: Option<ResponseFormat>) -> Self {
        self.json_mode = mode;
        self
    }

    fn prompt(&self, chat: &ChatState) -> Vec<ChatMessage> {
        let names: Vec<&str> = chat.participants.iter().map(|p| p.name.as_str()).collect();
        let mut system = String::from(
            "You coordinate a group chat between agents working on a task. \
             Choose which participant speaks next.\nParticipants:",
        );
        for p in &chat.participants {
            system.push_str(&format!("\n- {}: {}", p.name, p.description));
        }
        if let Some(i) = &self.instructions {
            system.push_str(&format!("\n\n{i}"));
        }
        system.push_str(&format!(
            "\n\nAnswer with one JSON object and nothing else: \
             {{\"next\": one of {names:?}, \"reason\": \"why, in a few words\"{}}}",
            if self.allow_termination {
                ", \"terminate\": true only if the task is fully done and nobody needs to speak"
            } else {
                ""
            }
        ));
        let mut user = format!("Task: {}\n\nConversation so far:", chat.task);
        let skip = chat.transcript.len().saturating_sub(self.max_transcript);
        if chat.transcript.is_empty() {
            user.push_str("\n(nothing yet)");
        }
        for m in chat.transcript.iter().skip(skip) {
            user.push_str(&format!(
                "\n[{}]: {}",
                m.name.as_deref().unwrap_or("user"),
                clip(&m.content, 2000)
            ));
        }
        user.push_str("\n\nWho speaks next?");
        vec![ChatMessage::system(system), ChatMessage::user(user)]
    }

    fn judge(&self, text: &str, chat: &ChatState) -> Verdict {
        let Some(value) = extract_json(text) else {
            return Verdict::Invalid("the answer was not a JSON object".into());
        };
        let Ok(reply) = serde_json::from_value::<Reply>(value) else {
            return Verdict::Invalid("the answer did not have the expected fields".into());
        };
        let reason = reply.reason.unwrap_or_default();
        if self.allow_termination && reply.terminate == Some(true) {
            return Verdict::End(reason);
        }
        let Some(next) = reply.next else {
            return Verdict::Invalid("the answer named no \"next\" speaker".into());
        };
        let wanted = next.trim().trim_matches(['"', '\'', '@']);
        let found = chat
            .participants
            .iter()
            .find(|p| p.name == wanted)
            .or_else(|| {
                chat.participants
                    .iter()
                    .find(|p| p.name.eq_ignore_ascii_case(wanted))
            });
        match found {
            Some(p) => Verdict::Speak(SpeakerChoice::new(p.name.clone(), reason)),
            None => Verdict::Invalid(format!("'{next}' is not a participant")),
        }
    }
}

#[async_trait]
impl GroupChatManager for LlmManager {
    async fn select_next(
        &self,
        chat: &ChatState,
        ctx: &RunContext,
    ) -> Result<Option<SpeakerChoice>, OrchestraError> {
        let mut request = ChatRequest::new(self.prompt(chat));
        request.response_format = self.json_mode.clone();
        request.temperature = Some(0.0);
        let mut problem = String::new();
        for attempt in 0..2 {
            let call = ChatCall::new(ctx.cancellation(), Some(ctx.deadline()));
            let answer = match self.model.chat(&request, call).await {
                Ok(a) => {
                    // The manager's tokens are the run's too.
                    ctx.add_usage(a.usage);
                    a
                }
                Err(crate::error::AgentError::Cancelled) => return Err(OrchestraError::Cancelled),
                Err(e) => {
                    problem = format!("the model failed: {e}");
                    tracing::warn!(attempt, error = %e, "llm manager: model call failed");
                    continue;
                }
            };
            match self.judge(&answer.content, chat) {
                Verdict::Speak(choice) => return Ok(Some(choice)),
                Verdict::End(reason) => {
                    tracing::debug!(%reason, "llm manager ends the chat");
                    return Ok(None);
                }
                Verdict::Invalid(why) => {
                    tracing::warn!(attempt, %why, "llm manager: unusable answer");
                    let names: Vec<&str> =
                        chat.participants.iter().map(|p| p.name.as_str()).collect();
                    request
                        .messages
                        .push(ChatMessage::assistant(answer.content.clone()));
                    request.messages.push(ChatMessage::user(format!(
                        "{why}. Answer again with one JSON object; \"next\" must be exactly one of {names:?}."
                    )));
                    problem = why;
                }
            }
        }
        let fallback = RoundRobinManager.select_next(chat, ctx).await?;
        ctx.emit(EventKind::Fallback {
            from: "llm_manager".into(),
            to: "round_robin".into(),
            reason: problem.clone(),
        });
        tracing::warn!(reason = %problem, "llm manager fell back to round robin");
        Ok(fallback.map(|c| SpeakerChoice::new(c.agent, format!("round robin ({problem})"))))
    }
}
