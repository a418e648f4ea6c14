//! OpenAI-compatible chat completions: [`OpenAiChatModel`] and the
//! [`OpenAiAgentConfig`] that builds an [`LlmAgent`] from configuration.
//!
//! The client speaks `POST {base_url}/chat/completions` as OpenAI defines it,
//! which OpenAI, Azure OpenAI, vLLM, Ollama (`/v1`) and llama.cpp's server all
//! accept. Provider differences are configuration, not code: the key's header
//! (`Authorization: Bearer` or Azure's `api-key`), extra query parameters
//! (`api-version`), extra headers, and extra body fields.
//!
//! Streaming uses Server-Sent Events (`stream: true`): text pieces become
//! `agent_delta` events, tool-call pieces are put back together by their
//! `index`, and `stream_options.include_usage` brings the token counts.
//!
//! Retries: 429, 5xx and connection failures are retried here, a few times
//! (`max_retries`), honouring `retry-after-ms` / `Retry-After`, but only
//! before any output was streamed and only while the call's deadline allows.
//! Retrying inside the model call (rather than failing the whole agent call
//! for the run's retry policy) keeps the tool rounds already done: an outer
//! retry would run every tool of the call again. When the budget is spent
//! the error goes up as `RateLimited { retry_after }` or `Http { status }`,
//! which the run's retry policy may still retry.
//!
//! ```no_run
//! # async fn demo() -> Result<(), orchestra_core::AgentError> {
//! use orchestra_core::agents::openai::OpenAiAgentConfig;
//! use orchestra_core::Orchestrator;
//! // A local Ollama; for OpenAI set base_url = "https://api.openai.com/v1" and api_key_env.
//! let config: OpenAiAgentConfig = serde_json::from_value(serde_json::json!({
//!     "name": "assistant",
//!     "description": "answers general questions",
//!     "base_url": "http://localhost:11434/v1",
//!     "model": "llama3.2",
//!     "system_prompt": "You are concise."
//! })).expect("valid config");
//! let orch = Orchestrator::new();
//! orch.register(config.build()?);
//! # Ok(()) }
//! ```

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use async_trait::async_trait;
use reqwest::{
    StatusCode,
    header::{HeaderMap, HeaderName, HeaderValue},
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use tokio::time::Instant;

use crate::{
    agent::Usage,
    error::AgentError,
    llm::{
        ChatCall, ChatMessage, ChatModel, ChatRequest, ChatResponse, ChatRole, LlmAgent,
        ResponseFormat, ToolCall, clip, sse::SseParser,
    },
};

fn default_true() -> bool {
    true
}
fn default_timeout_ms() -> u64 {
    120_000
}
fn default_max_retries() -> u32 {
    2
}
fn default_max_retry_wait_ms() -> u64 {
    30_000
}
fn default_max_tool_rounds() -> u32 {
    8
}

/// Where and how to reach an OpenAI-compatible chat-completions endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OpenAiConfig {
    /// The API root that `/chat/completions` is appended to, e.g.
    /// `https://api.openai.com/v1`, `http://localhost:11434/v1` (Ollama),
    /// `http://localhost:8000/v1` (vLLM), `http://localhost:8080/v1` (llama.cpp),
    /// `https://RESOURCE.openai.azure.com/openai/deployments/DEPLOYMENT` (Azure).
    pub base_url: String,
    /// The model (ignored by Azure deployments and by single-model servers).
    pub model: String,
    /// Name of the environment variable holding the API key; none sends no key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_env: Option<String>,
    /// Header that carries the key: `Authorization` (default, as `Bearer KEY`)
    /// or e.g. `api-key` for Azure (the bare key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_header: Option<String>,
    /// Query parameters added to every request, e.g. `{"api-version": "2024-10-21"}`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub query: BTreeMap<String, String>,
    /// Extra headers sent with every request.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stop: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Stream answers over SSE (text arrives as `agent_delta` events).
    #[serde(default = "default_true")]
    pub stream: bool,
    /// Ask for token usage in streams (`stream_options.include_usage`); turn
    /// off for servers that reject `stream_options`.
    #[serde(default = "default_true")]
    pub stream_usage: bool,
    /// Time limit of one HTTP request, body included.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Retries of 429 / 5xx / connection failures inside one model call.
    #[serde(default = "default_max_retries")]
    pub max_retries: u32,
    /// Longest wait before one retry; a longer `Retry-After` fails the call
    /// as `rate_limited` instead.
    #[serde(default = "default_max_retry_wait_ms")]
    pub max_retry_wait_ms: u64,
    /// Fields merged into every request body (provider-specific options).
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub extra_body: Map<String, Value>,
}

impl OpenAiConfig {
    /// A config with defaults for everything but the endpoint and model.
    pub fn new(base_url: impl Into<String>, model: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into(),
            model: model.into(),
            api_key_env: None,
            api_key_header: None,
            query: BTreeMap::new(),
            headers: BTreeMap::new(),
            temperature: None,
            top_p: None,
            max_tokens: None,
            stop: Vec::new(),
            seed: None,
            stream: true,
            stream_usage: true,
            timeout_ms: default_timeout_ms(),
            max_retries: default_max_retries(),
            max_retry_wait_ms: default_max_retry_wait_ms(),
            extra_body: Map::new(),
        }
    }
}

/// Configuration of an LLM agent on an OpenAI-compatible endpoint: the
/// server's `kind = "openai"` agents deserialize into this.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OpenAiAgentConfig {
    pub name: String,
    /// What the agent is good at (read by routers, managers and planners).
    #[serde(default)]
    pub description: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_prompt: Option<String>,
    /// Most tool rounds per agent call.
    #[serde(default = "default_max_tool_rounds")]
    pub max_tool_rounds: u32,
    pub base_url: String,
    pub model: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_env: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_header: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub query: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stop: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    #[serde(default = "default_true")]
    pub stream: bool,
    #[serde(default = "default_true")]
    pub stream_usage: bool,
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    #[serde(default = "default_max_retries")]
    pub max_retries: u32,
    #[serde(default = "default_max_retry_wait_ms")]
    pub max_retry_wait_ms: u64,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub extra_body: Map<String, Value>,
    /// What the model's tokens cost: the run's `usage.cost_micros` and the
    /// `max_cost` budgets are computed from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price: Option<crate::agent::Price>,
}

impl OpenAiAgentConfig {
    /// The endpoint part of this config.
    pub fn endpoint(&self) -> OpenAiConfig {
        OpenAiConfig {
            base_url: self.base_url.clone(),
            model: self.model.clone(),
            api_key_env: self.api_key_env.clone(),
            api_key_header: self.api_key_header.clone(),
            query: self.query.clone(),
            headers: self.headers.clone(),
            temperature: self.temperature,
            top_p: self.top_p,
            max_tokens: self.max_tokens,
            stop: self.stop.clone(),
            seed: self.seed,
            stream: self.stream,
            stream_usage: self.stream_usage,
            timeout_ms: self.timeout_ms,
            max_retries: self.max_retries,
            max_retry_wait_ms: self.max_retry_wait_ms,
            extra_body: self.extra_body.clone(),
        }
    }

    /// Builds the agent (without tools: add them with [`LlmAgent::tool`]).
    /// Fails when `api_key_env` names a variable that is not set.
    pub fn build(&self) -> Result<LlmAgent, AgentError> {
        let model = OpenAiChatModel::new(self.endpoint())?;
        let mut agent = LlmAgent::new(&self.name, &self.description, Arc::new(model))
            .max_tool_rounds(self.max_tool_rounds)
            .streaming(self.stream);
        if let Some(p) = &self.system_prompt {
            agent = agent.system_prompt(p);
        }
        if let Some(price) = self.price {
            agent = agent.price(price);
        }
        Ok(agent)
    }
}

/// A [`ChatModel`] on an OpenAI-compatible endpoint.
///
/// Holds one connection pool; clone the `Arc` to share it between agents,
/// managers and planners.
#[derive(Clone)]
pub struct OpenAiChatModel {
    config: OpenAiConfig,
    url: String,
    headers: HeaderMap,
    http: reqwest::Client,
}

impl std::fmt::Debug for OpenAiChatModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the headers: they hold the key.
        f.debug_struct("OpenAiChatModel")
            .field("url", &self.url)
            .field("model", &self.config.model)
            .finish()
    }
}

/// How one attempt failed, and whether another may help.
struct Failure {
    error: AgentError,
    retry: bool,
    retry_after: Option<Duration>,
}

impl OpenAiChatModel {
    /// Reads the API key from the environment now, so a missing key fails at
    /// start-up rather than on the first request.
    pub fn new(config: OpenAiConfig) -> Result<Self, AgentError> {
        let mut headers = HeaderMap::new();
        for (k, v) in &config.headers {
            headers.insert(header_name(k)?, header_value(v)?);
        }
        if let Some(var) = &config.api_key_env {
            let key = std::env::var(var).map_err(|_| {
                AgentError::msg(format!(
                    "environment variable {var} (api_key_env) is not set"
                ))
            })?;
            match config.api_key_header.as_deref() {
                None => {
                    let mut v = header_value(&format!("Bearer {key}"))?;
                    v.set_sensitive(true);
                    headers.insert(reqwest::header::AUTHORIZATION, v);
                }
                Some(h) if h.eq_ignore_ascii_case("authorization") => {
                    let mut v = header_value(&format!("Bearer {key}"))?;
                    v.set_sensitive(true);
                    headers.insert(reqwest::header::AUTHORIZATION, v);
                }
                Some(h) => {
                    let mut v = header_value(&key)?;
                    v.set_sensitive(true);
                    headers.insert(header_name(h)?, v);
                }
            }
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| AgentError::msg(format!("cannot build HTTP client: {e}")))?;
        let url = format!("{}/chat/completions", config.base_url.trim_end_matches('/'));
        Ok(Self {
            config,
            url,
            headers,
            http,
        })
    }

    pub fn config(&self) -> &OpenAiConfig {
        &self.config
    }

    /// The JSON body of one request.
    fn body(&self, request: &ChatRequest, stream: bool) -> Value {
        let c = &self.config;
        let mut body = Map::new();
        body.insert("model".into(), json!(c.model));
        body.insert(
            "messages".into(),
            Value::Array(request.messages.iter().map(wire_message).collect()),
        );
        if let Some(t) = request.temperature.or(c.temperature) {
            body.insert("temperature".into(), json!(t));
        }
        if let Some(p) = c.top_p {
            body.insert("top_p".into(), json!(p));
        }
        if let Some(m) = c.max_tokens {
            body.insert("max_tokens".into(), json!(m));
        }
        if !c.stop.is_empty() {
            body.insert("stop".into(), json!(c.stop));
        }
        if let Some(s) = c.seed {
            body.insert("seed".into(), json!(s));
        }
        if !request.tools.is_empty() {
            let tools: Vec<Value> = request
                .tools
                .iter()
                .map(|t| {
                    json!({"type": "function", "function": {
                        "name": t.name, "description": t.description, "parameters": t.parameters}})
                })
                .collect();
            body.insert("tools".into(), Value::Array(tools));
        }
        match &request.response_format {
            None | Some(ResponseFormat::Text) => {}
            Some(ResponseFormat::JsonObject) => {
                body.insert("response_format".into(), json!({"type": "json_object"}));
            }
            Some(ResponseFormat::JsonSchema { name, schema }) => {
                body.insert(
                    "response_format".into(),
                    json!({"type": "json_schema", "json_schema": {"name": name, "schema": schema}}),
                );
            }
        }
        body.insert("stream".into(), json!(stream));
        if stream && c.stream_usage {
            body.insert("stream_options".into(), json!({"include_usage": true}));
        }
        for (k, v) in &c.extra_body {
            body.insert(k.clone(), v.clone());
        }
        Value::Object(body)
    }

    async fn attempt(
        &self,
        body: &Value,
        stream: bool,
        call: &ChatCall<'_>,
        streamed: &mut bool,
    ) -> Result<ChatResponse, Failure> {
        let timeout = Some(Duration::from_millis(self.config.timeout_ms));
        let send = self
            .http
            .post(&self.url)
            .headers(self.headers.clone())
            .query(&self.config.query)
            .json(body)
            .send();
        let response = match call.guard(timeout, send).await {
            Err(e) => return Err(fatal(e)),
            Ok(Err(e)) => {
                return Err(Failure {
                    retry: e.is_connect() || e.is_request(),
                    error: AgentError::Transport(e.to_string()),
                    retry_after: None,
                });
            }
            Ok(Ok(r)) => r,
        };
        let status = response.status();
        if !status.is_success() {
            let retry_after = retry_after(response.headers());
            let text = call
                .guard(timeout, response.text())
                .await
                .map_err(fatal)?
                .unwrap_or_default();
            let message = error_message(&text);
            tracing::warn!(status = status.as_u16(), %message, url = %self.url, "chat completion failed");
            let error = if status == StatusCode::TOO_MANY_REQUESTS {
                AgentError::RateLimited { retry_after }
            } else {
                AgentError::Http {
                    status: status.as_u16(),
                    message,
                }
            };
            return Err(Failure {
                retry: status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error(),
                error,
                retry_after,
            });
        }
        if stream {
            self.read_stream(response, call, timeout, streamed)
                .await
                .map_err(fatal)
        } else {
            let text = match call.guard(timeout, response.text()).await {
                Err(e) => return Err(fatal(e)),
                Ok(Err(e)) => return Err(fatal(AgentError::Transport(e.to_string()))),
                Ok(Ok(t)) => t,
            };
            parse_completion(&text).map_err(fatal)
        }
    }

    async fn read_stream(
        &self,
        mut response: reqwest::Response,
        call: &ChatCall<'_>,
        timeout: Option<Duration>,
        streamed: &mut bool,
    ) -> Result<ChatResponse, AgentError> {
        let mut parser = SseParser::default();
        let mut acc = StreamAccumulator::default();
        loop {
            let chunk = match call.guard(timeout, response.chunk()).await? {
                Ok(Some(c)) => c,
                Ok(None) => break,
                Err(e) => {
                    return Err(AgentError::Transport(format!("stream broke off: {e}")));
                }
            };
            for event in parser.push(&chunk) {
                let data = event.data.trim();
                if data == "[DONE]" {
                    return Ok(acc.finish());
                }
                if data.is_empty() {
                    continue;
                }
                let chunk: StreamChunk = serde_json::from_str(data).map_err(|e| {
                    AgentError::InvalidOutput(format!(
                        "malformed stream chunk ({e}): {}",
                        clip(data, 200)
                    ))
                })?;
                if let Some(err) = chunk.error {
                    return Err(AgentError::retryable(format!(
                        "the model failed mid-stream: {}",
                        error_message(&err.to_string())
                    )));
                }
                if let Some(text) = acc.add(chunk) {
                    *streamed = true;
                    if let Some(f) = call.on_delta {
                        f(&text);
                    }
                }
            }
        }
        // No [DONE]: a finished answer (finish_reason seen) is still whole;
        // anything else was cut off.
        if acc.finish_reason.is_some() {
            Ok(acc.finish())
        } else {
            Err(AgentError::Transport(
                "the stream ended before the answer was complete".into(),
            ))
        }
    }
}

fn fatal(error: AgentError) -> Failure {
    Failure {
        error,
        retry: false,
        retry_after: None,
    }
}

fn header_name(s: &str) -> Result<HeaderName, AgentError> {
    HeaderName::from_bytes(s.as_bytes())
        .map_err(|e| AgentError::msg(format!("invalid header name '{s}': {e}")))
}

fn header_value(s: &str) -> Result<HeaderValue, AgentError> {
    HeaderValue::from_str(s).map_err(|_| AgentError::msg("invalid header value"))
}

/// `retry-after-ms` (OpenAI, Azure) or `Retry-After` in seconds.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(ms) = get("retry-after-ms").and_then(|v| v.trim().parse::<f64>().ok()) {
        return (ms.is_finite() && ms >= 0.0).then(|| Duration::from_secs_f64(ms / 1000.0));
    }
    get("retry-after")
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(Duration::from_secs_f64)
}

/// The `error.message` of an OpenAI-style error body, or the body itself.
fn error_message(body: &str) -> String {
    serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| {
            v.pointer("/error/message")
                .or_else(|| v.get("message"))
                .or_else(|| v.get("error"))
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .unwrap_or_else(|| clip(body.trim(), 300))
}

fn wire_message(m: &ChatMessage) -> Value {
    match m.role {
        ChatRole::System => json!({"role": "system", "content": m.content}),
        ChatRole::User => json!({"role": "user", "content": m.content}),
        ChatRole::Assistant if m.tool_calls.is_empty() => {
            json!({"role": "assistant", "content": m.content})
        }
        ChatRole::Assistant => {
            let calls: Vec<Value> = m
                .tool_calls
                .iter()
                .map(|tc| {
                    json!({"id": tc.id, "type": "function",
                           "function": {"name": tc.name, "arguments": tc.arguments}})
                })
                .collect();
            let content = if m.content.is_empty() {
                Value::Null
            } else {
                json!(m.content)
            };
            json!({"role": "assistant", "content": content, "tool_calls": calls})
        }
        ChatRole::Tool => json!({
            "role": "tool",
            "tool_call_id": m.tool_call_id.clone().unwrap_or_default(),
            "content": m.content
        }),
    }
}

#[derive(Deserialize, Default)]
struct WireUsage {
    #[serde(default)]
    prompt_tokens: Option<u64>,
    #[serde(default)]
    completion_tokens: Option<u64>,
    #[serde(default)]
    total_tokens: Option<u64>,
}

impl WireUsage {
    fn usage(&self) -> Usage {
        let (p, c) = (
            self.prompt_tokens.unwrap_or(0),
            self.completion_tokens.unwrap_or(0),
        );
        Usage {
            prompt_tokens: p,
            completion_tokens: c,
            total_tokens: self.total_tokens.unwrap_or(p + c),
            cost_micros: 0,
        }
    }
}

#[derive(Deserialize)]
struct WireFunction {
    #[serde(default)]
    name: Option<String>,
    /// A JSON string per the API; some servers send an object.
    #[serde(default)]
    arguments: Option<Value>,
}

fn arguments_text(v: Option<Value>) -> String {
    match v {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s,
        Some(other) => other.to_string(),
    }
}

#[derive(Deserialize)]
struct WireToolCall {
    #[serde(default)]
    index: Option<u32>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    function: Option<WireFunction>,
}

#[derive(Deserialize)]
struct WireMessage {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    tool_calls: Option<Vec<WireToolCall>>,
}

#[derive(Deserialize)]
struct WireChoice {
    #[serde(default, alias = "delta")]
    message: Option<WireMessage>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct Completion {
    #[serde(default)]
    choices: Vec<WireChoice>,
    #[serde(default)]
    usage: Option<WireUsage>,
    #[serde(default)]
    error: Option<Value>,
}

type StreamChunk = Completion;

fn parse_completion(text: &str) -> Result<ChatResponse, AgentError> {
    let c: Completion = serde_json::from_str(text).map_err(|e| {
        AgentError::InvalidOutput(format!(
            "the chat completion is not valid JSON ({e}): {}",
            clip(text, 200)
        ))
    })?;
    if let Some(err) = c.error {
        return Err(AgentError::msg(format!(
            "the model answered with an error: {}",
            error_message(&err.to_string())
        )));
    }
    let Some(choice) = c.choices.into_iter().next() else {
        return Err(AgentError::InvalidOutput(
            "the chat completion has no choices".into(),
        ));
    };
    let message = choice.message.unwrap_or(WireMessage {
        content: None,
        tool_calls: None,
    });
    let tool_calls = message
        .tool_calls
        .unwrap_or_default()
        .into_iter()
        .enumerate()
        .map(|(i, tc)| {
            let f = tc.function.unwrap_or(WireFunction {
                name: None,
                arguments: None,
            });
            ToolCall {
                id: tc.id.unwrap_or_else(|| format!("call_{i}")),
                name: f.name.unwrap_or_default(),
                arguments: arguments_text(f.arguments),
            }
        })
        .collect();
    Ok(ChatResponse {
        content: message.content.unwrap_or_default(),
        tool_calls,
        finish_reason: choice.finish_reason,
        usage: c.usage.map(|u| u.usage()).unwrap_or_default(),
    })
}

/// Puts a streamed answer back together.
#[derive(Default)]
struct StreamAccumulator {
    content: String,
    /// Tool calls by their `index` in the stream.
    calls: BTreeMap<u32, ToolCall>,
    finish_reason: Option<String>,
    usage: Usage,
}

impl StreamAccumulator {
    /// Adds one chunk; returns its text, if any, for streaming on.
    fn add(&mut self, chunk: StreamChunk) -> Option<String> {
        if let Some(u) = chunk.usage {
            self.usage = u.usage();
        }
        let mut text = String::new();
        // Only the first choice is used (n = 1).
        for choice in chunk.choices.into_iter().take(1) {
            if let Some(r) = choice.finish_reason {
                self.finish_reason = Some(r);
            }
            let Some(delta) = choice.message else {
                continue;
            };
            if let Some(t) = delta.content.filter(|t| !t.is_empty()) {
                self.content.push_str(&t);
                text.push_str(&t);
            }
            for (pos, tc) in delta.tool_calls.unwrap_or_default().into_iter().enumerate() {
                // Servers that omit `index` send each call whole, in order.
                let index = tc.index.unwrap_or(pos as u32);
                let entry = self.calls.entry(index).or_insert_with(|| ToolCall {
                    id: String::new(),
                    name: String::new(),
                    arguments: String::new(),
                });
                if let Some(id) = tc.id.filter(|i| !i.is_empty()) {
                    entry.id = id;
                }
                if let Some(f) = tc.function {
                    if let Some(n) = f.name {
                        entry.name.push_str(&n);
                    }
                    entry.arguments.push_str(&arguments_text(f.arguments));
                }
            }
        }
        (!text.is_empty()).then_some(text)
    }

    fn finish(self) -> ChatResponse {
        let tool_calls = self
            .calls
            .into_iter()
            .map(|(i, mut tc)| {
                if tc.id.is_empty() {
                    tc.id = format!("call_{i}");
                }
                tc
            })
            .collect();
        ChatResponse {
            content: self.content,
            tool_calls,
            finish_reason: self.finish_reason,
            usage: self.usage,
        }
    }
}

#[async_trait]
impl ChatModel for OpenAiChatModel {
    fn model(&self) -> &str {
        &self.config.model
    }

    async fn chat(
        &self,
        request: &ChatRequest,
        call: ChatCall<'_>,
    ) -> Result<ChatResponse, AgentError> {
        let stream = self.config.stream && call.on_delta.is_some();
        let body = self.body(request, stream);
        let mut retries = 0u32;
        let mut streamed = false;
        loop {
            let failure = match self.attempt(&body, stream, &call, &mut streamed).await {
                Ok(r) => return Ok(r),
                Err(f) => f,
            };
            if !failure.retry || streamed || retries >= self.config.max_retries {
                return Err(failure.error);
            }
            retries += 1;
            let backoff = Duration::from_millis(250u64.saturating_mul(1 << retries.min(10)));
            let wait = failure.retry_after.unwrap_or(backoff);
            let too_long = wait > Duration::from_millis(self.config.max_retry_wait_ms)
                || call.deadline.is_some_and(|d| Instant::now() + wait >= d);
            if too_long {
                return Err(failure.error);
            }
            tracing::info!(model = %self.config.model, retry = retries, ?wait, error = %failure.error,
                "retrying chat completion");
            call.guard(None, tokio::time::sleep(wait)).await?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(v: Value) -> StreamChunk {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn streamed_tool_call_pieces_are_joined_by_index() {
        let mut acc = StreamAccumulator::default();
        acc.add(chunk(
            json!({"choices": [{"index": 0, "delta": {"role": "assistant", "content": null,
            "tool_calls": [{"index": 0, "id": "call_a", "type": "function",
                            "function": {"name": "get_weather", "arguments": ""}}]}}]}),
        ));
        acc.add(chunk(json!({"choices": [{"index": 0, "delta": {
            "tool_calls": [{"index": 1, "id": "call_b", "function": {"name": "get_time", "arguments": "{}"}}]}}]})));
        acc.add(chunk(json!({"choices": [{"index": 0, "delta": {
            "tool_calls": [{"index": 0, "function": {"arguments": "{\"city\":"}}]}}]})));
        acc.add(chunk(json!({"choices": [{"index": 0, "delta": {
            "tool_calls": [{"index": 0, "function": {"arguments": "\"Paris\"}"}}]}}]})));
        acc.add(chunk(
            json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}),
        ));
        acc.add(chunk(json!({"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12}})));
        let r = acc.finish();
        assert_eq!(r.tool_calls.len(), 2);
        assert_eq!(r.tool_calls[0].name, "get_weather");
        assert_eq!(r.tool_calls[0].arguments, "{\"city\":\"Paris\"}");
        assert_eq!(r.tool_calls[1].id, "call_b");
        assert_eq!(r.finish_reason.as_deref(), Some("tool_calls"));
        assert_eq!(r.usage, Usage::new(5, 7));
    }

    #[test]
    fn retry_after_prefers_milliseconds() {
        let mut h = HeaderMap::new();
        h.insert("retry-after", HeaderValue::from_static("2"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(2)));
        h.insert("retry-after-ms", HeaderValue::from_static("150"));
        assert_eq!(retry_after(&h), Some(Duration::from_millis(150)));
        h.insert("retry-after-ms", HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(2)));
    }

    #[test]
    fn azure_style_config_sends_the_key_in_its_own_header() {
        // PATH is always set: it stands in for the key without changing the
        // environment under other test threads.
        let var = "PATH";
        let key = std::env::var(var).unwrap();
        let mut c = OpenAiConfig::new("https://r.openai.azure.com/openai/deployments/d/", "gpt");
        c.api_key_env = Some(var.into());
        c.api_key_header = Some("api-key".into());
        let m = OpenAiChatModel::new(c).unwrap();
        assert_eq!(m.headers.get("api-key").unwrap(), key.as_str());
        assert!(m.headers.get("authorization").is_none());
        assert_eq!(
            m.url,
            "https://r.openai.azure.com/openai/deployments/d/chat/completions"
        );
        assert!(!format!("{m:?}").contains(&key));
    }

    #[test]
    fn a_missing_key_variable_fails_construction() {
        let mut c = OpenAiConfig::new("http://x", "m");
        c.api_key_env = Some("ORCHESTRA_TEST_SURELY_UNSET_VAR".into());
        assert!(OpenAiChatModel::new(c).is_err());
    }

    #[test]
    fn the_agent_config_parses_with_defaults_and_rejects_typos() {
        let c: OpenAiAgentConfig = serde_json::from_value(json!({
            "name": "a", "base_url": "http://localhost:11434/v1", "model": "llama3.2"
        }))
        .unwrap();
        assert!(c.stream);
        assert_eq!(c.max_tool_rounds, 8);
        assert!(
            serde_json::from_value::<OpenAiAgentConfig>(json!({
                "name": "a", "base_url": "x", "model": "m", "temprature": 0.2
            }))
            .is_err()
        );
    }
}
