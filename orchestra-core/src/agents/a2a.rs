//! [`A2aAgent`]: a peer agent reached over the A2A protocol (JSON-RPC 2.0).
//!
//! The agent card (`/.well-known/agent-card.json`) says where the agent
//! listens, which protocol version it speaks and whether it streams:
//!
//! | card | methods | wire shapes |
//! |---|---|---|
//! | `supportedInterfaces` with a `JSONRPC` interface of version 1.x | `SendMessage`, `SendStreamingMessage`, `GetTask`, `CancelTask` | parts by member (`{"text": …}`), `ROLE_USER`, `TASK_STATE_*`, stream items wrapped as `task` / `message` / `statusUpdate` / `artifactUpdate` |
//! | `url` + `protocolVersion` 0.x | `message/send`, `message/stream`, `tasks/get`, `tasks/cancel` | `kind`-tagged objects, `user`, lowercase states, `final` flag |
//!
//! Replies are read leniently (either shape is understood in either mode).
//! The task's text artifacts (or, without artifacts, the agent's message)
//! become the output's `content`; streamed artifact and message text arrives
//! as `agent_delta` events. Task states map as: `completed` → an answer;
//! `input-required` / `auth-required` → an answer whose `data.a2a.state`
//! says so (the next call in the same session continues that task);
//! `failed` / `rejected` / `canceled` → an agent error; `submitted` /
//! `working` when a reply or stream ends → the task is polled until it
//! settles. Every state seen is listed in `data.a2a.states`, and each is
//! emitted as an `agent_task_state` event when it arrives (streamed, in a
//! reply or while polling), so clients watch a long task progress. A cancelled
//! run drops the request and asks the peer to cancel the task.
//!
//! ```no_run
//! # async fn demo() -> Result<(), orchestra_core::AgentError> {
//! use orchestra_core::agents::a2a::{A2aAgent, A2aAgentConfig};
//! let agent = A2aAgent::connect(A2aAgentConfig::new("http://localhost:9999")).await?;
//! let orch = orchestra_core::Orchestrator::new();
//! orch.register(agent); // named after its card unless `name` is set
//! # Ok(()) }
//! ```

use std::{collections::BTreeMap, num::NonZeroUsize, sync::Mutex, time::Duration};

use async_trait::async_trait;
use lru::LruCache;
use reqwest::{
    StatusCode, Url,
    header::{ACCEPT, HeaderMap, HeaderName, HeaderValue},
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::{
    agent::{Agent, AgentContext, AgentInput, AgentOutput},
    error::AgentError,
    llm::{ChatCall, clip, sse::SseParser},
};

/// Where an agent card lives under an agent's base URL.
pub const AGENT_CARD_PATH: &str = "/.well-known/agent-card.json";

/// Which A2A version to speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum A2aProtocol {
    /// What the card says, preferring 1.0 when it offers both.
    #[default]
    Auto,
    /// v0.3: `message/send`, `message/stream`.
    #[serde(rename = "0.3")]
    V0_3,
    /// v1.0: `SendMessage`, `SendStreamingMessage`.
    #[serde(rename = "1.0")]
    V1_0,
}

fn default_timeout_ms() -> u64 {
    300_000
}
fn default_poll_ms() -> u64 {
    1_000
}

/// Configuration of an A2A agent: the server's `kind = "a2a"` agents and
/// A2A discovery (a list of card URLs) deserialize into this.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct A2aAgentConfig {
    /// The agent card's URL, or the agent's base URL (the well-known card
    /// path is then appended).
    pub card_url: String,
    /// Name in the orchestrator; default: the card's `name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Default: the card's `description`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default)]
    pub protocol: A2aProtocol,
    /// Stream replies; default: when the card says `capabilities.streaming`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    /// Environment variable with a bearer token sent as `Authorization`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bearer_token_env: Option<String>,
    /// Extra headers sent with every request (card included).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Time limit of one request (a whole stream included).
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// How often to ask for a task that is still working after a reply.
    #[serde(default = "default_poll_ms")]
    pub poll_interval_ms: u64,
}

impl A2aAgentConfig {
    pub fn new(card_url: impl Into<String>) -> Self {
        Self {
            card_url: card_url.into(),
            name: None,
            description: None,
            protocol: A2aProtocol::Auto,
            stream: None,
            bearer_token_env: None,
            headers: BTreeMap::new(),
            timeout_ms: default_timeout_ms(),
            poll_interval_ms: default_poll_ms(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Version {
    V03,
    V10,
}

impl Version {
    fn send(self, stream: bool) -> &'static str {
        match (self, stream) {
            (Self::V03, false) => "message/send",
            (Self::V03, true) => "message/stream",
            (Self::V10, false) => "SendMessage",
            (Self::V10, true) => "SendStreamingMessage",
        }
    }
    fn get_task(self) -> &'static str {
        match self {
            Self::V03 => "tasks/get",
            Self::V10 => "GetTask",
        }
    }
    fn cancel_task(self) -> &'static str {
        match self {
            Self::V03 => "tasks/cancel",
            Self::V10 => "CancelTask",
        }
    }
}

/// An agent that forwards its task to an A2A peer.
pub struct A2aAgent {
    name: String,
    description: String,
    endpoint: Url,
    version: Version,
    stream: bool,
    card: Value,
    http: reqwest::Client,
    headers: HeaderMap,
    timeout: Duration,
    poll_interval: Duration,
    /// Per orchestra session: the peer's context id and a task awaiting input.
    contexts: Mutex<LruCache<String, PeerContext>>,
}

/// The peer's context id and the id of a task waiting for input.
type PeerContext = (Option<String>, Option<String>);

impl std::fmt::Debug for A2aAgent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("A2aAgent")
            .field("name", &self.name)
            .field("endpoint", &self.endpoint.as_str())
            .field("version", &self.version)
            .field("stream", &self.stream)
            .finish()
    }
}

fn transport(e: reqwest::Error) -> AgentError {
    AgentError::Transport(e.to_string())
}

/// The card URL for a base or card URL.
fn card_url(s: &str) -> Result<Url, AgentError> {
    let url = Url::parse(s).map_err(|e| AgentError::msg(format!("invalid card_url '{s}': {e}")))?;
    if url.path().ends_with(".json") {
        return Ok(url);
    }
    let base = s.trim_end_matches('/');
    Url::parse(&format!("{base}{AGENT_CARD_PATH}"))
        .map_err(|e| AgentError::msg(format!("invalid card_url '{s}': {e}")))
}

/// Picks the JSON-RPC endpoint and version from a card.
fn choose_interface(
    card: &Value,
    card_url: &Url,
    wanted: A2aProtocol,
) -> Result<(Url, Version), AgentError> {
    let join = |u: &str| {
        card_url
            .join(u)
            .map_err(|e| AgentError::InvalidOutput(format!("agent card url '{u}': {e}")))
    };
    let mut offers: Vec<(String, Version)> = Vec::new();
    let is_jsonrpc = |b: Option<&str>| b.is_none_or(|b| b.eq_ignore_ascii_case("JSONRPC"));
    let version_of = |v: Option<&str>| match v {
        Some(v) if v.trim_start_matches('v').starts_with('0') => Version::V03,
        Some(_) => Version::V10,
        None => Version::V03,
    };
    for i in card["supportedInterfaces"].as_array().into_iter().flatten() {
        if let (Some(url), true) = (
            i["url"].as_str(),
            is_jsonrpc(i["protocolBinding"].as_str().or(i["transport"].as_str())),
        ) {
            offers.push((url.to_owned(), version_of(i["protocolVersion"].as_str())));
        }
    }
    // v0.3 cards: `url` with `preferredTransport`, plus `additionalInterfaces`.
    let legacy = version_of(card["protocolVersion"].as_str().or(Some("0.3")));
    if let Some(url) = card["url"]
        .as_str()
        .filter(|_| is_jsonrpc(card["preferredTransport"].as_str()))
    {
        offers.push((url.to_owned(), legacy));
    }
    for i in card["additionalInterfaces"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if let (Some(url), true) = (i["url"].as_str(), is_jsonrpc(i["transport"].as_str())) {
            offers.push((url.to_owned(), legacy));
        }
    }
    let pick = match wanted {
        A2aProtocol::Auto => offers
            .iter()
            .find(|(_, v)| *v == Version::V10)
            .or(offers.first()),
        A2aProtocol::V1_0 => offers.iter().find(|(_, v)| *v == Version::V10),
        A2aProtocol::V0_3 => offers.iter().find(|(_, v)| *v == Version::V03),
    };
    match pick {
        Some((url, v)) => Ok((join(url)?, *v)),
        None => Err(AgentError::InvalidOutput(format!(
            "the agent card offers no JSON-RPC interface for protocol {wanted:?}"
        ))),
    }
}

/// "TASK_STATE_INPUT_REQUIRED", "input-required", "input_required" → "input-required".
fn normalize_state(s: &str) -> String {
    let s = s.to_ascii_lowercase();
    let s = s
        .strip_prefix("task_state_")
        .unwrap_or(&s)
        .replace('_', "-");
    if s == "cancelled" {
        "canceled".into()
    } else {
        s
    }
}

fn is_terminal(state: &str) -> bool {
    matches!(state, "completed" | "failed" | "canceled" | "rejected")
}

fn is_interrupted(state: &str) -> bool {
    matches!(state, "input-required" | "auth-required")
}

/// Text and data of a list of parts (v0.3 `kind`-tagged or v1.0 by member).
fn parts(parts: &Value) -> (String, Vec<Value>) {
    let mut text = String::new();
    let mut data = Vec::new();
    for p in parts.as_array().into_iter().flatten() {
        if let Some(t) = p["text"].as_str() {
            text.push_str(t);
        } else if !p["data"].is_null() {
            data.push(p["data"].clone());
        }
    }
    (text, data)
}

/// One item of a reply or stream, whatever the version.
enum Item {
    Task(Value),
    Message(Value),
    Status { status: Value, is_final: bool },
    Artifact { artifact: Value, append: bool },
}

fn classify(v: &Value) -> Option<Item> {
    match v["kind"].as_str() {
        Some("task") => return Some(Item::Task(v.clone())),
        Some("message") => return Some(Item::Message(v.clone())),
        Some("status-update") => {
            return Some(Item::Status {
                status: v["status"].clone(),
                is_final: v["final"].as_bool().unwrap_or(false),
            });
        }
        Some("artifact-update") => {
            return Some(Item::Artifact {
                artifact: v["artifact"].clone(),
                append: v["append"].as_bool().unwrap_or(false),
            });
        }
        _ => {}
    }
    if v["task"].is_object() {
        return Some(Item::Task(v["task"].clone()));
    }
    if v["message"].is_object() {
        return Some(Item::Message(v["message"].clone()));
    }
    for key in ["statusUpdate", "taskStatusUpdate"] {
        if v[key].is_object() {
            return Some(Item::Status {
                status: v[key]["status"].clone(),
                is_final: v[key]["final"].as_bool().unwrap_or(false),
            });
        }
    }
    for key in ["artifactUpdate", "taskArtifactUpdate"] {
        if v[key].is_object() {
            return Some(Item::Artifact {
                artifact: v[key]["artifact"].clone(),
                append: v[key]["append"].as_bool().unwrap_or(false),
            });
        }
    }
    if v["status"].is_object() && v["id"].is_string() {
        return Some(Item::Task(v.clone()));
    }
    if v["parts"].is_array() {
        return Some(Item::Message(v.clone()));
    }
    None
}

/// What is known of the peer's task so far.
#[derive(Default)]
struct TaskView {
    task_id: Option<String>,
    context_id: Option<String>,
    state: Option<String>,
    states: Vec<String>,
    /// States reached and not yet reported as events, each with the text
    /// of its status message.
    unreported: Vec<(String, Option<String>)>,
    /// (artifact id, text) in arrival order.
    artifacts: Vec<(String, String)>,
    data: Vec<Value>,
    status_text: String,
    message_text: String,
    /// A direct message reply or a final status: nothing more will come.
    finished: bool,
}

impl TaskView {
    /// Records a state change; whether the state changed.
    fn set_state(&mut self, state: Option<&str>) -> bool {
        let Some(s) = state
            .map(normalize_state)
            .filter(|s| self.state.as_deref() != Some(s.as_str()))
        else {
            return false;
        };
        tracing::debug!(state = %s, task = ?self.task_id, "a2a task state");
        self.states.push(s.clone());
        self.state = Some(s);
        true
    }

    fn set_status(&mut self, status: &Value) {
        let changed = self.set_state(status["state"].as_str());
        let (text, data) = parts(&status["message"]["parts"]);
        if changed && let Some(state) = self.state.clone() {
            self.unreported
                .push((state, (!text.is_empty()).then(|| text.clone())));
        }
        if !text.is_empty() {
            self.status_text = text;
        }
        self.data.extend(data);
    }

    /// Emits the states reached since the last report as
    /// `agent_task_state` events, in arrival order.
    fn report(&mut self, ctx: &AgentContext) {
        for (state, message) in std::mem::take(&mut self.unreported) {
            ctx.task_state(self.task_id.as_deref(), &state, message.as_deref());
        }
    }

    /// Applies one item; returns text to stream on.
    fn apply(&mut self, item: Item) -> Option<String> {
        match item {
            Item::Task(t) => {
                if let Some(id) = t["id"].as_str() {
                    self.task_id = Some(id.to_owned());
                }
                if let Some(c) = t["contextId"].as_str() {
                    self.context_id = Some(c.to_owned());
                }
                self.set_status(&t["status"]);
                if let Some(list) = t["artifacts"].as_array() {
                    self.artifacts.clear();
                    for a in list {
                        let (text, data) = parts(&a["parts"]);
                        self.data.extend(data);
                        self.artifacts
                            .push((a["artifactId"].as_str().unwrap_or("").to_owned(), text));
                    }
                }
                None
            }
            Item::Message(m) => {
                if let Some(c) = m["contextId"].as_str() {
                    self.context_id = Some(c.to_owned());
                }
                let (text, data) = parts(&m["parts"]);
                self.data.extend(data);
                self.message_text.push_str(&text);
                if m["taskId"].is_null() || self.task_id.is_none() {
                    self.finished = true;
                }
                (!text.is_empty()).then_some(text)
            }
            Item::Status { status, is_final } => {
                self.set_status(&status);
                self.finished |= is_final;
                None
            }
            Item::Artifact { artifact, append } => {
                let id = artifact["artifactId"].as_str().unwrap_or("").to_owned();
                let (text, data) = parts(&artifact["parts"]);
                self.data.extend(data);
                match self.artifacts.iter_mut().find(|(a, _)| *a == id) {
                    Some((_, t)) if append => t.push_str(&text),
                    Some((_, t)) => *t = text.clone(),
                    None => self.artifacts.push((id, text.clone())),
                }
                (!text.is_empty()).then_some(text)
            }
        }
    }

    fn settled(&self) -> bool {
        self.finished
            || self
                .state
                .as_deref()
                .is_some_and(|s| is_terminal(s) || is_interrupted(s))
    }

    fn content(&self) -> String {
        let artifacts: Vec<&str> = self
            .artifacts
            .iter()
            .map(|(_, t)| t.as_str())
            .filter(|t| !t.is_empty())
            .collect();
        if !artifacts.is_empty() {
            artifacts.join("\n")
        } else if !self.message_text.is_empty() {
            self.message_text.clone()
        } else {
            self.status_text.clone()
        }
    }
}

impl A2aAgent {
    /// Reads the agent card and prepares the agent.
    pub async fn connect(config: A2aAgentConfig) -> Result<Self, AgentError> {
        let mut headers = HeaderMap::new();
        for (k, v) in &config.headers {
            let name = HeaderName::from_bytes(k.as_bytes())
                .map_err(|e| AgentError::msg(format!("invalid header name '{k}': {e}")))?;
            let value = HeaderValue::from_str(v)
                .map_err(|_| AgentError::msg(format!("invalid value for header '{k}'")))?;
            headers.insert(name, value);
        }
        if let Some(var) = &config.bearer_token_env {
            let token = std::env::var(var).map_err(|_| {
                AgentError::msg(format!(
                    "environment variable {var} (bearer_token_env) is not set"
                ))
            })?;
            let mut v = HeaderValue::from_str(&format!("Bearer {token}"))
                .map_err(|_| AgentError::msg("invalid bearer token"))?;
            v.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, v);
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| AgentError::msg(format!("cannot build HTTP client: {e}")))?;
        let url = card_url(&config.card_url)?;
        let timeout = Duration::from_millis(config.timeout_ms);
        let response = http
            .get(url.clone())
            .headers(headers.clone())
            .timeout(timeout)
            .send()
            .await
            .map_err(transport)?;
        let status = response.status();
        if !status.is_success() {
            return Err(AgentError::Http {
                status: status.as_u16(),
                message: format!("agent card {url}"),
            });
        }
        let card: Value = response.json().await.map_err(|e| {
            AgentError::InvalidOutput(format!("the agent card at {url} is not JSON: {e}"))
        })?;
        let (endpoint, version) = choose_interface(&card, &url, config.protocol)?;
        let stream = config
            .stream
            .unwrap_or_else(|| card["capabilities"]["streaming"].as_bool().unwrap_or(false));
        let name = config
            .name
            .or_else(|| card["name"].as_str().map(str::to_owned))
            .ok_or_else(|| AgentError::InvalidOutput("the agent card has no name".into()))?;
        let description = config
            .description
            .or_else(|| card["description"].as_str().map(str::to_owned))
            .unwrap_or_default();
        tracing::info!(agent = %name, endpoint = %endpoint, ?version, stream, "A2A agent connected");
        Ok(Self {
            name,
            description,
            endpoint,
            version,
            stream,
            card,
            http,
            headers,
            timeout,
            poll_interval: Duration::from_millis(config.poll_interval_ms.max(10)),
            contexts: Mutex::new(LruCache::new(NonZeroUsize::MIN.saturating_add(1023))),
        })
    }

    /// The agent card as fetched.
    pub fn card(&self) -> &Value {
        &self.card
    }

    /// Whether this agent speaks A2A 1.0 (else 0.3).
    pub fn is_v1(&self) -> bool {
        self.version == Version::V10
    }

    fn contexts(&self) -> std::sync::MutexGuard<'_, LruCache<String, PeerContext>> {
        match self.contexts.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    fn request(&self, method: &str, params: Value) -> reqwest::RequestBuilder {
        let body = json!({
            "jsonrpc": "2.0",
            "id": uuid::Uuid::new_v4().to_string(),
            "method": method,
            "params": params,
        });
        let mut req = self
            .http
            .post(self.endpoint.clone())
            .headers(self.headers.clone())
            .json(&body);
        if self.version == Version::V10 {
            req = req.header("A2A-Version", "1.0");
        }
        req
    }

    fn message(&self, input: &AgentInput) -> Value {
        let (context_id, task_id) = self
            .contexts()
            .get(&input.session_id)
            .cloned()
            .unwrap_or_default();
        let mut m = match self.version {
            Version::V03 => json!({
                "kind": "message",
                "role": "user",
                "messageId": uuid::Uuid::new_v4().to_string(),
                "parts": [{"kind": "text", "text": input.task}],
            }),
            Version::V10 => json!({
                "role": "ROLE_USER",
                "messageId": uuid::Uuid::new_v4().to_string(),
                "parts": [{"text": input.task}],
            }),
        };
        m["metadata"] =
            json!({"orchestra": {"session_id": input.session_id, "run_id": input.run_id}});
        if let Some(c) = context_id {
            m["contextId"] = json!(c);
        }
        if let Some(t) = task_id {
            m["taskId"] = json!(t);
        }
        m
    }

    /// Checks the HTTP status; errors map to the core's retryable kinds.
    fn status_error(status: StatusCode, headers: &HeaderMap) -> Option<AgentError> {
        if status.is_success() {
            return None;
        }
        if status == StatusCode::TOO_MANY_REQUESTS {
            let retry_after = headers
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            return Some(AgentError::RateLimited { retry_after });
        }
        Some(AgentError::Http {
            status: status.as_u16(),
            message: "A2A request failed".into(),
        })
    }

    /// The `result` of a JSON-RPC response, or its error as an AgentError.
    fn result(rpc: Value) -> Result<Value, AgentError> {
        if let Some(err) = rpc.get("error").filter(|e| !e.is_null()) {
            let code = err["code"].as_i64().unwrap_or(0);
            let message = err["message"]
                .as_str()
                .unwrap_or("unknown error")
                .to_owned();
            let text = format!("A2A error {code}: {message}");
            // -32603 is the peer's internal error: worth another try.
            return Err(if code == -32603 {
                AgentError::retryable(text)
            } else {
                AgentError::msg(text)
            });
        }
        rpc.get("result")
            .cloned()
            .ok_or_else(|| AgentError::InvalidOutput("JSON-RPC response without result".into()))
    }

    async fn send(
        &self,
        params: Value,
        view: &mut TaskView,
        call: &ChatCall<'_>,
        ctx: &AgentContext,
    ) -> Result<(), AgentError> {
        let response = call
            .guard(
                Some(self.timeout),
                self.request(self.version.send(false), params).send(),
            )
            .await?
            .map_err(transport)?;
        if let Some(e) = Self::status_error(response.status(), response.headers()) {
            return Err(e);
        }
        let text = call
            .guard(Some(self.timeout), response.text())
            .await?
            .map_err(transport)?;
        let rpc: Value = serde_json::from_str(&text).map_err(|e| {
            AgentError::InvalidOutput(format!("A2A reply is not JSON ({e}): {}", clip(&text, 200)))
        })?;
        let result = Self::result(rpc)?;
        let item = classify(&result).ok_or_else(|| {
            AgentError::InvalidOutput(format!(
                "unrecognized A2A result: {}",
                clip(&result.to_string(), 200)
            ))
        })?;
        view.apply(item);
        view.report(ctx);
        Ok(())
    }

    async fn stream(
        &self,
        params: Value,
        view: &mut TaskView,
        call: &ChatCall<'_>,
        ctx: &AgentContext,
    ) -> Result<(), AgentError> {
        let request = self
            .request(self.version.send(true), params)
            .header(ACCEPT, "text/event-stream");
        let mut response = call
            .guard(Some(self.timeout), request.send())
            .await?
            .map_err(transport)?;
        if let Some(e) = Self::status_error(response.status(), response.headers()) {
            return Err(e);
        }
        let mut parser = SseParser::default();
        loop {
            let chunk = match call.guard(Some(self.timeout), response.chunk()).await? {
                Ok(Some(c)) => c,
                Ok(None) => return Ok(()),
                // A broken stream is not fatal: the task is polled next.
                Err(e) => {
                    tracing::warn!(error = %e, "A2A stream broke off");
                    return Ok(());
                }
            };
            for event in parser.push(&chunk) {
                let rpc: Value = serde_json::from_str(&event.data).map_err(|e| {
                    AgentError::InvalidOutput(format!(
                        "A2A stream event is not JSON ({e}): {}",
                        clip(&event.data, 200)
                    ))
                })?;
                let result = Self::result(rpc)?;
                let Some(item) = classify(&result) else {
                    tracing::debug!(event = %clip(&result.to_string(), 200), "skipping unknown A2A stream item");
                    continue;
                };
                let text = view.apply(item);
                view.report(ctx);
                if let Some(text) = text {
                    ctx.delta(text);
                }
                if view.settled() {
                    return Ok(());
                }
            }
        }
    }

    /// Asks for the task until it settles.
    async fn poll(
        &self,
        view: &mut TaskView,
        call: &ChatCall<'_>,
        ctx: &AgentContext,
    ) -> Result<(), AgentError> {
        let Some(id) = view.task_id.clone() else {
            return Err(AgentError::Transport(
                "the A2A reply ended before naming a task or answering".into(),
            ));
        };
        while !view.settled() {
            call.guard(None, tokio::time::sleep(self.poll_interval))
                .await?;
            let response = call
                .guard(
                    Some(self.timeout),
                    self.request(self.version.get_task(), json!({"id": id}))
                        .send(),
                )
                .await?
                .map_err(transport)?;
            if let Some(e) = Self::status_error(response.status(), response.headers()) {
                return Err(e);
            }
            let rpc: Value = call
                .guard(Some(self.timeout), response.json())
                .await?
                .map_err(|e| AgentError::InvalidOutput(format!("A2A task reply: {e}")))?;
            view.apply(Item::Task(Self::result(rpc)?));
            view.report(ctx);
        }
        Ok(())
    }

    /// Best effort: tells the peer to stop a task this side gave up on.
    fn cancel_remote(&self, task_id: String) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let request = self
            .request(self.version.cancel_task(), json!({"id": task_id}))
            .timeout(Duration::from_secs(5));
        tracing::debug!(agent = %self.name, task = %task_id, "asking the A2A peer to cancel");
        runtime.spawn(async move {
            if let Err(e) = request.send().await {
                tracing::debug!(error = %e, "A2A cancel request failed");
            }
        });
    }
}

/// Cancels the peer's unfinished task when the call is abandoned.
struct CancelOnDrop<'a> {
    agent: &'a A2aAgent,
    view: TaskView,
    armed: bool,
}

impl Drop for CancelOnDrop<'_> {
    fn drop(&mut self) {
        if !self.armed || self.view.settled() {
            return;
        }
        if let Some(id) = self.view.task_id.take() {
            self.agent.cancel_remote(id);
        }
    }
}

#[async_trait]
impl Agent for A2aAgent {
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
        let mut params = json!({"message": self.message(&input)});
        if self.version == Version::V03 {
            params["configuration"] = json!({"blocking": true});
        }
        let call = ChatCall::new(ctx.cancellation(), ctx.deadline());
        // The run may drop this future when it is cancelled or times out;
        // the guard then tells the peer to stop the task.
        let mut guard = CancelOnDrop {
            agent: self,
            view: TaskView::default(),
            armed: true,
        };
        let view = &mut guard.view;
        let sent = if self.stream {
            self.stream(params, view, &call, &ctx).await
        } else {
            self.send(params, view, &call, &ctx).await
        };
        let sent = match sent {
            Ok(()) if !view.settled() => self.poll(view, &call, &ctx).await,
            other => other,
        };
        if let Err(e) = sent {
            if !matches!(e, AgentError::Cancelled | AgentError::Timeout(_)) {
                guard.armed = false;
            }
            return Err(e);
        }
        guard.armed = false;
        let view = std::mem::take(&mut guard.view);
        let state = view.state.clone().unwrap_or_else(|| "completed".into());
        {
            // Remember the peer's context (and a task waiting for input) for this session.
            let waiting = is_interrupted(&state)
                .then(|| view.task_id.clone())
                .flatten();
            self.contexts()
                .put(input.session_id.clone(), (view.context_id.clone(), waiting));
        }
        match state.as_str() {
            "failed" | "rejected" => {
                return Err(AgentError::msg(format!(
                    "A2A task {state}: {}",
                    if view.status_text.is_empty() {
                        "no reason given"
                    } else {
                        &view.status_text
                    }
                )));
            }
            "canceled" => return Err(AgentError::msg("the A2A peer canceled the task")),
            _ => {}
        }
        let data = json!({"a2a": {
            "task_id": view.task_id,
            "context_id": view.context_id,
            "state": state,
            "states": view.states,
            "data": view.data,
        }});
        Ok(AgentOutput::text(view.content()).with_data(data))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_of_both_versions_normalize_alike() {
        assert_eq!(
            normalize_state("TASK_STATE_INPUT_REQUIRED"),
            "input-required"
        );
        assert_eq!(normalize_state("input-required"), "input-required");
        assert_eq!(normalize_state("cancelled"), "canceled");
        assert!(is_terminal(&normalize_state("TASK_STATE_COMPLETED")));
    }

    #[test]
    fn a_card_offering_both_versions_is_spoken_to_in_1_0() {
        let base = Url::parse("http://h:1/.well-known/agent-card.json").unwrap();
        let card = json!({
            "name": "x",
            "supportedInterfaces": [
                {"url": "http://h:1/v03", "protocolBinding": "JSONRPC", "protocolVersion": "0.3"},
                {"url": "/v1", "protocolBinding": "JSONRPC", "protocolVersion": "1.0"},
                {"url": "http://h:1/grpc", "protocolBinding": "GRPC", "protocolVersion": "1.0"}
            ]
        });
        let (url, v) = choose_interface(&card, &base, A2aProtocol::Auto).unwrap();
        assert_eq!((url.as_str(), v), ("http://h:1/v1", Version::V10));
        let (url, v) = choose_interface(&card, &base, A2aProtocol::V0_3).unwrap();
        assert_eq!((url.as_str(), v), ("http://h:1/v03", Version::V03));
        let legacy = json!({"name": "y", "url": "http://h:2/rpc", "protocolVersion": "0.3.0"});
        let (_, v) = choose_interface(&legacy, &base, A2aProtocol::Auto).unwrap();
        assert_eq!(v, Version::V03);
        assert!(choose_interface(&legacy, &base, A2aProtocol::V1_0).is_err());
    }

    #[test]
    fn card_urls_get_the_well_known_path() {
        assert_eq!(
            card_url("http://h:1/").unwrap().as_str(),
            "http://h:1/.well-known/agent-card.json"
        );
        assert_eq!(
            card_url("http://h:1/card.json").unwrap().as_str(),
            "http://h:1/card.json"
        );
    }

    #[test]
    fn appended_artifact_chunks_join_and_stream() {
        let mut v = TaskView::default();
        let a = |text: &str, append: bool| Item::Artifact {
            artifact: json!({"artifactId": "a1", "parts": [{"kind": "text", "text": text}]}),
            append,
        };
        assert_eq!(v.apply(a("Hel", false)).as_deref(), Some("Hel"));
        assert_eq!(v.apply(a("lo", true)).as_deref(), Some("lo"));
        v.apply(
            classify(&json!({"statusUpdate": {"status": {"state": "TASK_STATE_COMPLETED"}}}))
                .unwrap(),
        );
        assert!(v.settled());
        assert_eq!(v.content(), "Hello");
        assert_eq!(v.states, vec!["completed"]);
    }
}
