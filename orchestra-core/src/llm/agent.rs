//! [`LlmAgent`]: an agent answered by a [`ChatModel`], with tools.
//!
//! Each call turns the conversation into chat messages, asks the model, and
//! while the model calls tools runs them (concurrently within one round) and
//! asks again, at most `max_tool_rounds` times. Every tool call is reported
//! as `tool_called` / `tool_completed`; streamed text becomes `agent_delta`.
//! In a handoff run the agent also offers one `transfer_to_<agent>` tool per
//! allowed target; calling it ends the turn with a [`Handoff`].
//!
//! ```
//! use orchestra_core::llm::Tool;
//! use serde_json::json;
//! // A tool with a hand-written schema; the handler gets the parsed arguments.
//! let add = Tool::new("add", "adds two numbers",
//!     json!({"type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
//!            "required": ["a", "b"]}),
//!     |args| async move {
//!         let sum = args["a"].as_f64().unwrap_or(0.0) + args["b"].as_f64().unwrap_or(0.0);
//!         Ok(json!(sum))
//!     });
//! assert_eq!(add.name(), "add");
//! ```

use std::{collections::HashMap, future::Future, sync::Arc};

use async_trait::async_trait;
use futures::future::BoxFuture;
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tracing::Instrument;

use super::{ChatCall, ChatMessage, ChatModel, ChatRequest, ToolCall, ToolSpec};
use crate::context::tokens;
use crate::{
    agent::{Agent, AgentContext, AgentInfo, AgentInput, AgentOutput, Handoff, Usage},
    error::AgentError,
    message::Role,
};

/// A tool failure, handed back to the model as `{"error": "..."}` so it can
/// correct itself; it does not fail the agent call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ToolError(pub String);

impl From<String> for ToolError {
    fn from(s: String) -> Self {
        Self(s)
    }
}

impl From<&str> for ToolError {
    fn from(s: &str) -> Self {
        Self(s.to_owned())
    }
}

type Handler = dyn Fn(Value) -> BoxFuture<'static, Result<Value, ToolError>> + Send + Sync;

/// A function the model may call: a name, a description, a JSON schema of
/// the arguments and an async Rust handler.
#[derive(Clone)]
pub struct Tool {
    spec: ToolSpec,
    handler: Arc<Handler>,
}

impl std::fmt::Debug for Tool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tool").field("spec", &self.spec).finish()
    }
}

impl Tool {
    /// A tool taking raw JSON arguments described by `parameters` (a JSON schema).
    pub fn new<F, Fut>(
        name: impl Into<String>,
        description: impl Into<String>,
        parameters: Value,
        handler: F,
    ) -> Self
    where
        F: Fn(Value) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Value, ToolError>> + Send + 'static,
    {
        Self {
            spec: ToolSpec {
                name: name.into(),
                description: description.into(),
                parameters,
            },
            handler: Arc::new(move |args| Box::pin(handler(args))),
        }
    }

    /// A tool whose arguments are a Rust type: the schema is derived from it
    /// and arguments that do not parse go back to the model as an error.
    pub fn typed<A, F, Fut>(
        name: impl Into<String>,
        description: impl Into<String>,
        handler: F,
    ) -> Self
    where
        A: DeserializeOwned + JsonSchema + Send + 'static,
        F: Fn(A) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Value, ToolError>> + Send + 'static,
    {
        let mut schema = serde_json::to_value(schemars::schema_for!(A)).unwrap_or(json!({}));
        if let Some(obj) = schema.as_object_mut() {
            // Providers want a bare object schema, not a titled document.
            obj.remove("$schema");
            obj.remove("title");
        }
        let handler = Arc::new(handler);
        Self::new(name, description, schema, move |args: Value| {
            let handler = handler.clone();
            async move {
                let parsed: A = serde_json::from_value(args)
                    .map_err(|e| ToolError(format!("invalid arguments: {e}")))?;
                handler(parsed).await
            }
        })
    }

    pub fn name(&self) -> &str {
        &self.spec.name
    }

    pub fn spec(&self) -> &ToolSpec {
        &self.spec
    }

    /// Runs the handler.
    pub async fn call(&self, args: Value) -> Result<Value, ToolError> {
        (self.handler)(args).await
    }
}

/// An agent backed by a chat model.
///
/// Cheap to share: the model is an `Arc` and per-call state lives on the
/// stack, so one `LlmAgent` serves concurrent runs.
#[derive(Clone)]
pub struct LlmAgent {
    name: String,
    description: String,
    model: Arc<dyn ChatModel>,
    system_prompt: Option<String>,
    tools: Vec<Tool>,
    max_tool_rounds: u32,
    stream: bool,
    price: Option<crate::agent::Price>,
}

/// Prefix of the generated handoff tools.
pub const TRANSFER_PREFIX: &str = "transfer_to_";

impl LlmAgent {
    pub fn new(
        name: impl Into<String>,
        description: impl Into<String>,
        model: Arc<dyn ChatModel>,
    ) -> Self {
        Self {
            name: name.into(),
            description: description.into(),
            model,
            system_prompt: None,
            tools: Vec::new(),
            max_tool_rounds: 8,
            stream: true,
            price: None,
        }
    }

    /// What the model's tokens cost; sets `cost_micros` in the usage this
    /// agent reports (and so the run's cost and its `max_cost` budgets).
    #[must_use]
    pub fn price(mut self, price: crate::agent::Price) -> Self {
        self.price = Some(price);
        self
    }

    /// The instructions sent first in every request.
    #[must_use]
    pub fn system_prompt(mut self, prompt: impl Into<String>) -> Self {
        self.system_prompt = Some(prompt.into());
        self
    }

    #[must_use]
    pub fn tool(mut self, tool: Tool) -> Self {
        self.tools.push(tool);
        self
    }

    /// Most model calls that may follow tool results in one agent call; a
    /// model that keeps calling tools after that fails the call.
    #[must_use]
    pub fn max_tool_rounds(mut self, rounds: u32) -> Self {
        self.max_tool_rounds = rounds;
        self
    }

    /// Whether to ask the model to stream (text then arrives as `agent_delta`).
    #[must_use]
    pub fn streaming(mut self, on: bool) -> Self {
        self.stream = on;
        self
    }

    pub fn model(&self) -> &Arc<dyn ChatModel> {
        &self.model
    }

    /// The chat messages for one call: system prompt, the conversation so
    /// far, then the task (unless the user already asked it in the conversation).
    fn messages(&self, input: &AgentInput, targets: &[AgentInfo]) -> Vec<ChatMessage> {
        let mut out = Vec::with_capacity(input.messages.len() + 2);
        let mut system = self.system_prompt.clone().unwrap_or_default();
        if !targets.is_empty() {
            if !system.is_empty() {
                system.push_str("\n\n");
            }
            system.push_str(
                "If another agent is better suited to continue, call its transfer_to_<agent> \
                 tool with a short reason instead of answering. Agents you can transfer to:",
            );
            for t in targets {
                system.push_str(&format!("\n- {}: {}", t.name, t.description));
            }
        }
        if !system.is_empty() {
            out.push(ChatMessage::system(system));
        }
        for m in &input.messages {
            match m.role {
                Role::System => out.push(ChatMessage::system(m.content.clone())),
                Role::User => out.push(ChatMessage::user(m.content.clone())),
                Role::Assistant if m.name.as_deref() == Some(self.name.as_str()) => {
                    out.push(ChatMessage::assistant(m.content.clone()));
                }
                // Other agents' words reach this model as attributed user turns:
                // chat APIs know only one assistant.
                Role::Assistant | Role::Tool => out.push(ChatMessage::user(format!(
                    "[{}]: {}",
                    m.name.as_deref().unwrap_or("agent"),
                    m.content
                ))),
            }
        }
        // Sequential runs pass the previous answer as the task: it is already
        // the conversation's last message.
        let already_asked = input
            .messages
            .iter()
            .any(|m| m.role == Role::User && m.content == input.task)
            || input
                .messages
                .last()
                .is_some_and(|m| m.content == input.task);
        if !already_asked && !input.task.is_empty() {
            out.push(ChatMessage::user(input.task.clone()));
        }
        out
    }
}

/// Turns an agent name into a valid function name (`^[a-zA-Z0-9_-]{1,64}$`).
fn transfer_tool_name(agent: &str) -> String {
    let clean: String = agent
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut name = format!("{TRANSFER_PREFIX}{clean}");
    name.truncate(64);
    name
}

fn transfer_tools(
    targets: &[AgentInfo],
    ctx: &AgentContext,
) -> (Vec<ToolSpec>, HashMap<String, String>) {
    let mut specs = Vec::new();
    let mut names = HashMap::new();
    for t in targets {
        let tool = transfer_tool_name(&t.name);
        let mut parameters = json!({
            "type": "object",
            "properties": {"reason": {"type": "string", "description": "Why this agent should take over."}},
            "required": ["reason"]
        });
        // A typed route: the model must fill in the payload the route expects.
        if let Some(schema) = ctx.handoff_payload_schema(&t.name) {
            parameters["properties"]["payload"] = schema.clone();
            parameters["required"] = json!(["reason", "payload"]);
        }
        specs.push(ToolSpec {
            name: tool.clone(),
            description: format!(
                "Hand the conversation over to {}: {}",
                t.name, t.description
            ),
            parameters,
        });
        names.insert(tool, t.name.clone());
    }
    (specs, names)
}

fn parse_arguments(raw: &str) -> Result<Value, String> {
    if raw.trim().is_empty() {
        return Ok(json!({}));
    }
    serde_json::from_str(raw).map_err(|e| format!("arguments are not valid JSON: {e}"))
}

#[async_trait]
impl Agent for LlmAgent {
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
        let targets = ctx.handoff_targets().to_vec();
        let (transfer_specs, transfer_names) = transfer_tools(&targets, &ctx);
        let mut request = ChatRequest::new(self.messages(&input, &targets));
        request.tools = self.tools.iter().map(|t| t.spec.clone()).collect();
        request.tools.extend(transfer_specs);
        let on_delta = |text: &str| ctx.delta(text);
        let mut usage = Usage::default();
        let mut round = 0u32;
        loop {
            let mut call = ChatCall::new(ctx.cancellation(), ctx.deadline());
            if self.stream {
                call = call.on_delta(&on_delta);
            }
            let model = self.model.model();
            let span = tracing::info_span!(
                "chat",
                otel.name = %format_args!("chat {model}"),
                otel.kind = "client",
                gen_ai.operation.name = "chat",
                gen_ai.request.model = %model,
                gen_ai.agent.name = %self.name,
                gen_ai.usage.input_tokens = tracing::field::Empty,
                gen_ai.usage.output_tokens = tracing::field::Empty,
                gen_ai.response.finish_reasons = tracing::field::Empty,
                error.type = tracing::field::Empty,
                otel.status_code = tracing::field::Empty,
            );
            let response = match self
                .model
                .chat(&request, call)
                .instrument(span.clone())
                .await
            {
                Ok(r) => {
                    span.record("gen_ai.usage.input_tokens", tokens(r.usage.prompt_tokens));
                    span.record(
                        "gen_ai.usage.output_tokens",
                        tokens(r.usage.completion_tokens),
                    );
                    if let Some(reason) = &r.finish_reason {
                        span.record("gen_ai.response.finish_reasons", reason.as_str());
                    }
                    r
                }
                Err(e) => {
                    span.record("error.type", e.code());
                    span.record("otel.status_code", "ERROR");
                    return Err(e);
                }
            };
            let mut step_usage = response.usage;
            if let Some(price) = &self.price {
                step_usage.cost_micros = price.cost_micros(&step_usage);
            }
            usage += step_usage;
            if response.tool_calls.is_empty() {
                return Ok(AgentOutput::text(response.content).with_usage(usage));
            }
            // Every transfer the model asked for in this turn, in its order:
            // the first is the handoff; the rest go to the pattern, which
            // runs them in parallel or reports them (never silently dropped).
            let transfers: Vec<Handoff> = response
                .tool_calls
                .iter()
                .filter(|tc| transfer_names.contains_key(&tc.name))
                .map(|tc| {
                    let to = transfer_names[&tc.name].clone();
                    let args = parse_arguments(&tc.arguments).unwrap_or_else(|_| json!({}));
                    let reason = args["reason"]
                        .as_str()
                        .filter(|r| !r.trim().is_empty())
                        .map(str::to_owned)
                        .unwrap_or_else(|| format!("{} transferred to {to}", self.name));
                    let payload = args.get("payload").filter(|p| !p.is_null()).cloned();
                    ctx.tool_called(&tc.name, &tc.id, args);
                    ctx.tool_completed(&tc.name, &tc.id, json!({"transferred_to": to}));
                    let h = Handoff::new(to, reason);
                    match payload {
                        Some(p) => h.with_payload(p),
                        None => h,
                    }
                })
                .collect();
            let mut transfers = transfers.into_iter();
            if let Some(first) = transfers.next() {
                tracing::debug!(agent = %self.name, to = %first.to, "llm agent hands off");
                let mut out = AgentOutput::handoff(first).with_usage(usage);
                out.handoffs = transfers.collect();
                if !response.content.trim().is_empty() {
                    out.content = response.content;
                }
                return Ok(out);
            }
            if round >= self.max_tool_rounds {
                return Err(AgentError::msg(format!(
                    "the model kept calling tools after {} rounds (max_tool_rounds)",
                    self.max_tool_rounds
                )));
            }
            round += 1;
            request.messages.push(ChatMessage::assistant_tool_calls(
                response.content.clone(),
                response.tool_calls.clone(),
            ));
            let results = self.run_tools(&response.tool_calls, &ctx).await?;
            for (tc, result) in response.tool_calls.iter().zip(results) {
                request
                    .messages
                    .push(ChatMessage::tool_result(tc.id.clone(), result.to_string()));
            }
        }
    }
}

impl LlmAgent {
    /// Runs one round of tool calls concurrently; results come back in call order.
    async fn run_tools(
        &self,
        calls: &[ToolCall],
        ctx: &AgentContext,
    ) -> Result<Vec<Value>, AgentError> {
        let mut futures = Vec::with_capacity(calls.len());
        for tc in calls {
            let parsed = parse_arguments(&tc.arguments);
            ctx.tool_called(
                &tc.name,
                &tc.id,
                parsed.clone().unwrap_or_else(|_| json!(tc.arguments)),
            );
            let tool = self.tools.iter().find(|t| t.spec.name == tc.name).cloned();
            let span = tracing::info_span!(
                "execute_tool",
                otel.name = %format_args!("execute_tool {}", tc.name),
                gen_ai.operation.name = "execute_tool",
                gen_ai.tool.name = %tc.name,
                gen_ai.tool.call.id = %tc.id,
                gen_ai.agent.name = %self.name,
                error.type = tracing::field::Empty,
                otel.status_code = tracing::field::Empty,
            );
            let recorded = span.clone();
            futures.push(
                async move {
                    let args = parsed.map_err(ToolError)?;
                    let r = match tool {
                        Some(t) => t.call(args).await,
                        None => Err(ToolError(format!("unknown tool '{}'", tc.name))),
                    };
                    if r.is_err() {
                        recorded.record("error.type", "tool_error");
                        recorded.record("otel.status_code", "ERROR");
                    }
                    r
                }
                .instrument(span),
            );
        }
        let outcomes = tokio::select! {
            r = futures::future::join_all(futures) => r,
            () = ctx.cancellation().cancelled() => return Err(AgentError::Cancelled),
        };
        Ok(calls
            .iter()
            .zip(outcomes)
            .map(|(tc, outcome)| {
                let result = outcome.unwrap_or_else(|e| {
                    tracing::debug!(tool = %tc.name, error = %e, "tool failed");
                    json!({"error": e.0})
                });
                ctx.tool_completed(&tc.name, &tc.id, result.clone());
                result
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{llm::UnusedModel, message::Message};

    #[test]
    fn transfer_tool_names_are_valid_function_names() {
        assert_eq!(transfer_tool_name("billing"), "transfer_to_billing");
        assert_eq!(
            transfer_tool_name("sales team.eu"),
            "transfer_to_sales_team_eu"
        );
        assert!(transfer_tool_name(&"x".repeat(100)).len() <= 64);
    }

    #[test]
    fn the_task_is_not_repeated_when_the_conversation_ends_with_it() {
        let a = LlmAgent::new("me", "d", Arc::new(UnusedModel)).system_prompt("be brief");
        let input = AgentInput {
            task: "hello".into(),
            messages: vec![
                Message::user("hello"),
                Message::assistant("other", "hi from other"),
            ],
            ..Default::default()
        };
        let m = a.messages(&input, &[]);
        // system, user, [other]: … and no second copy of the task
        assert_eq!(m.len(), 3);
        assert_eq!(m[2].content, "[other]: hi from other");
        let input = AgentInput {
            task: "summarize that".into(),
            ..input
        };
        let m = a.messages(&input, &[]);
        assert_eq!(m.len(), 4);
        assert_eq!(m[3].content, "summarize that");
        let input = AgentInput {
            task: "hi from other".into(),
            ..input
        };
        assert_eq!(
            a.messages(&input, &[]).len(),
            3,
            "the previous answer is not repeated"
        );
    }
}
