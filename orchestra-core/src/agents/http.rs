//! [`HttpAgent`]: a generic agent service (a RAG, search or ticketing service)
//! called with one JSON POST per step.
//!
//! The wire contract is documented in `docs/agent-protocol.md`. In short, the
//! agent receives `{"agent","task","messages","session_id","run_id","step",
//! "metadata","state","deadline_ms"}` and answers `{"content", "handoff"?,
//! "data"?, "usage"?, "state_patch"?}`. HTTP 429, 408 and 5xx map to
//! retryable errors, other 4xx to permanent ones, so the run's retry policy
//! does the right thing without the service knowing about it.
//!
//! The request is raced against the run's cancellation token and the call's
//! deadline: when the run is cancelled or times out the HTTP request is
//! dropped, which closes the connection so the service can stop too.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use orchestra_core::{Orchestrator, agents::http::HttpAgent};
//! let search = HttpAgent::builder("search", "http://127.0.0.1:9000/invoke")
//!     .description("searches the internal wiki")
//!     .timeout(Duration::from_secs(20))
//!     .header("authorization", "Bearer secret")?
//!     .build()?;
//! let orch = Orchestrator::new();
//! orch.register(search);
//! # Ok(()) }
//! ```

use std::time::Duration;

use async_trait::async_trait;
use reqwest::{
    StatusCode,
    header::{HeaderMap, HeaderName, HeaderValue, RETRY_AFTER},
};
use serde_json::Value;

use crate::{
    agent::{Agent, AgentContext, AgentInput, AgentOutput},
    agents::wire::{AgentRequest, AgentResponse, call_timeout, clip_error_text},
    error::AgentError,
};

/// Default time limit of one call when neither the agent nor the run sets one.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// Why an [`HttpAgent`] could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HttpAgentError {
    #[error("invalid agent url '{url}': {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("invalid header '{name}': {reason}")]
    InvalidHeader { name: String, reason: String },
    #[error("could not build the HTTP client: {0}")]
    Client(String),
}

/// Builds an [`HttpAgent`].
pub struct HttpAgentBuilder {
    name: String,
    description: String,
    url: String,
    timeout: Duration,
    headers: HeaderMap,
    client: Option<reqwest::Client>,
}

impl HttpAgentBuilder {
    #[must_use]
    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.description = description.into();
        self
    }

    /// Time limit of one call (each attempt); the run's own deadline still applies.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Adds a header sent with every call. Values are marked sensitive so they
    /// never appear in debug output.
    pub fn header(mut self, name: &str, value: &str) -> Result<Self, HttpAgentError> {
        let header_name =
            HeaderName::from_bytes(name.as_bytes()).map_err(|e| HttpAgentError::InvalidHeader {
                name: name.to_owned(),
                reason: e.to_string(),
            })?;
        let mut header_value =
            HeaderValue::from_str(value).map_err(|e| HttpAgentError::InvalidHeader {
                name: name.to_owned(),
                reason: e.to_string(),
            })?;
        header_value.set_sensitive(true);
        self.headers.insert(header_name, header_value);
        Ok(self)
    }

    /// Shares a client (and its connection pool) between agents.
    #[must_use]
    pub fn client(mut self, client: reqwest::Client) -> Self {
        self.client = Some(client);
        self
    }

    pub fn build(self) -> Result<HttpAgent, HttpAgentError> {
        let url = reqwest::Url::parse(&self.url).map_err(|e| HttpAgentError::InvalidUrl {
            url: self.url.clone(),
            reason: e.to_string(),
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(HttpAgentError::InvalidUrl {
                url: self.url,
                reason: "scheme must be http or https".into(),
            });
        }
        let client = match self.client {
            Some(c) => c,
            None => reqwest::Client::builder()
                .build()
                .map_err(|e| HttpAgentError::Client(e.to_string()))?,
        };
        Ok(HttpAgent {
            name: self.name,
            description: self.description,
            url,
            timeout: self.timeout,
            headers: self.headers,
            client,
        })
    }
}

/// An agent served over HTTP by another process.
pub struct HttpAgent {
    name: String,
    description: String,
    url: reqwest::Url,
    timeout: Duration,
    headers: HeaderMap,
    client: reqwest::Client,
}

impl std::fmt::Debug for HttpAgent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpAgent")
            .field("name", &self.name)
            .field("url", &self.url.as_str())
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl HttpAgent {
    pub fn builder(name: impl Into<String>, url: impl Into<String>) -> HttpAgentBuilder {
        HttpAgentBuilder {
            name: name.into(),
            description: String::new(),
            url: url.into(),
            timeout: DEFAULT_TIMEOUT,
            headers: HeaderMap::new(),
            client: None,
        }
    }

    pub fn url(&self) -> &str {
        self.url.as_str()
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    async fn call(
        &self,
        body: &AgentRequest,
        timeout: Duration,
    ) -> Result<AgentOutput, AgentError> {
        let response = self
            .client
            .post(self.url.clone())
            .headers(self.headers.clone())
            .header("x-orchestra-run-id", &body.run_id)
            .header("x-orchestra-session-id", &body.session_id)
            .headers(trace_headers())
            .timeout(timeout)
            .json(body)
            .send()
            .await
            .map_err(|e| transport_error(e, timeout))?;
        let status = response.status();
        if !status.is_success() {
            let retry_after = response
                .headers()
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            let text = response.text().await.unwrap_or_default();
            return Err(status_error(status, retry_after, &text));
        }
        let bytes = response
            .bytes()
            .await
            .map_err(|e| transport_error(e, timeout))?;
        let wire: AgentResponse = serde_json::from_slice(&bytes)
            .map_err(|e| AgentError::InvalidOutput(format!("response is not valid JSON: {e}")))?;
        wire.into_result()
    }
}

#[async_trait]
impl Agent for HttpAgent {
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
        let timeout = call_timeout(self.timeout, &ctx);
        let body = AgentRequest::new(&self.name, input, &ctx, timeout);
        tokio::select! {
            biased;
            () = ctx.cancellation().cancelled() => Err(AgentError::Cancelled),
            r = self.call(&body, timeout) => r,
        }
    }
}

/// W3C trace context of the current span (`traceparent`, and `tracestate`
/// when set), so the agent service's own spans join the run's trace.
#[cfg(feature = "otel")]
fn trace_headers() -> HeaderMap {
    use opentelemetry::trace::TraceContextExt;
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let mut headers = HeaderMap::new();
    let cx = tracing::Span::current().context();
    let span = cx.span();
    let sc = span.span_context();
    if !sc.is_valid() {
        return headers;
    }
    let parent = format!(
        "00-{:032x}-{:016x}-{:02x}",
        sc.trace_id(),
        sc.span_id(),
        sc.trace_flags().to_u8()
    );
    if let Ok(v) = HeaderValue::from_str(&parent) {
        headers.insert(HeaderName::from_static("traceparent"), v);
    }
    let state = sc.trace_state().header();
    if !state.is_empty()
        && let Ok(v) = HeaderValue::from_str(&state)
    {
        headers.insert(HeaderName::from_static("tracestate"), v);
    }
    headers
}

#[cfg(not(feature = "otel"))]
fn trace_headers() -> HeaderMap {
    HeaderMap::new()
}

fn transport_error(e: reqwest::Error, timeout: Duration) -> AgentError {
    if e.is_timeout() {
        AgentError::Timeout(timeout)
    } else if e.is_decode() || e.is_body() {
        AgentError::Transport(format!("reading the response failed: {e}"))
    } else {
        AgentError::Transport(e.to_string())
    }
}

/// Maps an error status to an [`AgentError`] whose retryability matches
/// HTTP semantics: 429, 408 and 5xx may succeed later, other 4xx will not.
fn status_error(status: StatusCode, retry_after: Option<Duration>, body: &str) -> AgentError {
    if status == StatusCode::TOO_MANY_REQUESTS {
        return AgentError::RateLimited { retry_after };
    }
    AgentError::Http {
        status: status.as_u16(),
        message: error_text(body),
    }
}

/// The message of `{"error":{"message":..}}`, `{"error":".."}` or
/// `{"message":".."}` bodies, else the start of the text.
fn error_text(body: &str) -> String {
    let from_json = serde_json::from_str::<Value>(body).ok().and_then(|v| {
        v.pointer("/error/message")
            .or_else(|| v.get("error"))
            .or_else(|| v.get("message"))
            .and_then(Value::as_str)
            .map(str::to_owned)
    });
    clip_error_text(from_json.as_deref().unwrap_or_else(|| body.trim()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_retryable_or_permanent_errors() {
        assert!(status_error(StatusCode::TOO_MANY_REQUESTS, None, "").is_retryable());
        assert!(status_error(StatusCode::BAD_GATEWAY, None, "").is_retryable());
        assert!(status_error(StatusCode::REQUEST_TIMEOUT, None, "").is_retryable());
        assert!(!status_error(StatusCode::BAD_REQUEST, None, "").is_retryable());
        assert!(!status_error(StatusCode::UNAUTHORIZED, None, "").is_retryable());
        let e = status_error(
            StatusCode::TOO_MANY_REQUESTS,
            Some(Duration::from_secs(2)),
            "",
        );
        assert!(matches!(
            e,
            AgentError::RateLimited {
                retry_after: Some(d)
            } if d == Duration::from_secs(2)
        ));
    }

    #[test]
    fn error_bodies_are_summarized() {
        assert_eq!(error_text(r#"{"error":{"message":"bad key"}}"#), "bad key");
        assert_eq!(error_text(r#"{"error":"quota"}"#), "quota");
        assert_eq!(error_text("  plain text "), "plain text");
        assert!(error_text(&"x".repeat(1000)).chars().count() <= 301);
    }

    #[test]
    fn only_http_urls_are_accepted() {
        assert!(HttpAgent::builder("a", "ftp://x/y").build().is_err());
        assert!(HttpAgent::builder("a", "not a url").build().is_err());
        assert!(
            HttpAgent::builder("a", "http://127.0.0.1:1/x")
                .build()
                .is_ok()
        );
        assert!(
            HttpAgent::builder("a", "http://127.0.0.1:1/x")
                .header("bad header", "v")
                .is_err()
        );
    }
}
