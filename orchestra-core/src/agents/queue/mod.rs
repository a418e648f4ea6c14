//! [`QueueAgent`]: an agent served by workers behind a message queue.
//!
//! The orchestrator puts the agent request (the same JSON as the HTTP agent
//! contract in `docs/agent-protocol.md`) on a queue and waits for the reply
//! within the call's time limit. Workers ([`crate::worker`]) take requests
//! from the queue, so an agent scales by starting more workers and survives
//! a worker crash: the request goes to another worker.
//!
//! Two transports, chosen by URL:
//! - `redis://…` (feature `redis`): a Redis Stream per agent read by a
//!   consumer group; a request whose worker stopped is reclaimed by another
//!   worker after [`QueueConfig::claim_idle`]; replies come back on a list
//!   per orchestrator instance.
//! - `nats://…` (feature `nats`): NATS request/reply with a queue group, or,
//!   with [`QueueConfig::jetstream`], a JetStream work-queue stream whose
//!   unacknowledged requests are redelivered after `claim_idle`.
//!
//! Failures map to [`AgentError`]s the run's retry and fallback policy
//! understands: an unreachable queue is `agent_unreachable`, no reply in time
//! is `agent_timeout` (both retryable), an error reply keeps the
//! retryability the worker gave it. A reply that arrives after the caller
//! gave up (timeout or cancellation) is discarded, never applied.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use orchestra_core::Orchestrator;
//! use orchestra_core::agents::queue::{QueueAgent, QueueConfig, QueueTransport};
//! let transport = QueueTransport::connect("redis://127.0.0.1:6379", QueueConfig::default()).await?;
//! let search = QueueAgent::builder("search", transport)
//!     .description("searches the internal wiki")
//!     .timeout(Duration::from_secs(20))
//!     .build()?;
//! let orch = Orchestrator::new();
//! orch.register(search);
//! # Ok(()) }
//! ```

#[cfg(feature = "nats")]
mod nats;
#[cfg(feature = "redis")]
mod redis;
pub(crate) mod wire;

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use futures::future::BoxFuture;
use tokio::{sync::oneshot, task::JoinHandle};
use tokio_util::sync::CancellationToken;

use crate::{
    agent::{Agent, AgentContext, AgentInput, AgentOutput},
    agents::wire::call_timeout,
    error::AgentError,
    queue::pacing::claim_keeper,
};
use wire::{AgentReply, AgentRequest};

/// Default time limit of one call when neither the agent nor the run sets one.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// How requests are queued, delivered and reclaimed. The orchestrator and
/// the workers of an agent must agree on `prefix` and `jetstream`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueConfig {
    /// Namespace of every key, stream and subject, so several deployments
    /// (or tests) can share one Redis or NATS. `A-Z a-z 0-9 - _`.
    pub prefix: String,
    /// NATS only: deliver through a JetStream work-queue stream (durable,
    /// redelivered when a worker dies) instead of core request/reply.
    pub jetstream: bool,
    /// A request its worker has not touched for this long goes to another
    /// worker (Redis: `XAUTOCLAIM` idle time; JetStream: `ack_wait`). Working
    /// workers touch their request every `claim_idle / 3`.
    pub claim_idle: Duration,
    /// Deliveries after which a request is answered with a permanent error
    /// instead of being handed to yet another worker.
    pub max_deliveries: u32,
    /// How long one blocking read waits; bounds how fast a worker notices
    /// it was asked to stop.
    pub block: Duration,
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            prefix: "orchestra".to_owned(),
            jetstream: false,
            claim_idle: Duration::from_secs(30),
            max_deliveries: 5,
            block: Duration::from_secs(1),
        }
    }
}

impl QueueConfig {
    #[must_use]
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    #[must_use]
    pub fn jetstream(mut self, on: bool) -> Self {
        self.jetstream = on;
        self
    }

    #[must_use]
    pub fn claim_idle(mut self, idle: Duration) -> Self {
        self.claim_idle = idle;
        self
    }

    #[must_use]
    pub fn max_deliveries(mut self, n: u32) -> Self {
        self.max_deliveries = n;
        self
    }

    #[must_use]
    pub fn block(mut self, block: Duration) -> Self {
        self.block = block;
        self
    }

    fn validate(&self) -> Result<(), QueueAgentError> {
        if self.prefix.is_empty()
            || self.prefix.len() > 64
            || !self
                .prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
        {
            return Err(QueueAgentError::InvalidConfig(format!(
                "prefix {:?} must be 1 to 64 characters of A-Z, a-z, 0-9, '-', '_'",
                self.prefix
            )));
        }
        if self.claim_idle < Duration::from_millis(100) {
            return Err(QueueAgentError::InvalidConfig(
                "claim_idle must be at least 100 ms".into(),
            ));
        }
        if self.max_deliveries == 0 {
            return Err(QueueAgentError::InvalidConfig(
                "max_deliveries must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

/// Why a queue transport, agent or worker could not be set up or run.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum QueueAgentError {
    /// The URL is malformed or names a transport this build lacks.
    #[error("invalid queue url '{url}': {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("invalid queue configuration: {0}")]
    InvalidConfig(String),
    /// Agent names are 1–128 characters of `A-Z a-z 0-9 - _ .`.
    #[error("invalid agent name '{0}': use 1 to 128 characters of A-Z, a-z, 0-9, '-', '_', '.'")]
    InvalidName(String),
    /// The queue could not be reached or refused an operation.
    #[error("queue unavailable: {0}")]
    Unavailable(String),
}

impl QueueAgentError {
    /// A stable snake_case code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidUrl { .. } => "invalid_queue_url",
            Self::InvalidConfig(_) => "invalid_queue_config",
            Self::InvalidName(_) => "invalid_agent_name",
            Self::Unavailable(_) => "queue_unavailable",
        }
    }
}

pub(crate) fn validate_agent_name(name: &str) -> Result<(), QueueAgentError> {
    let ok = !name.is_empty()
        && name.len() <= crate::discovery::MAX_AGENT_NAME_LEN
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(QueueAgentError::InvalidName(name.to_owned()))
    }
}

/// One request as a worker receives it.
pub(crate) struct Delivery {
    /// The caller's id of this request, unique per call attempt.
    pub request_id: String,
    /// The request JSON.
    pub payload: Vec<u8>,
    /// 1 on the first delivery, more after a worker stopped mid-request.
    pub attempt: u32,
}

/// Answers one delivery with the reply JSON. Runs on a task of its own, so
/// a stopped worker can abort it like a crashed process would.
pub(crate) type Handler = Arc<dyn Fn(Delivery) -> BoxFuture<'static, Vec<u8>> + Send + Sync>;

/// One transport: the orchestrator's side (`call`) and the workers' (`serve`).
#[async_trait]
pub(crate) trait Transport: Send + Sync {
    /// Queues one request and waits for its reply (the caller bounds the
    /// wait with `timeout` and may drop the future to cancel; either way a
    /// reply arriving later is discarded).
    async fn call(
        &self,
        agent: &str,
        request_id: &str,
        payload: Vec<u8>,
        timeout: Duration,
    ) -> Result<Vec<u8>, AgentError>;

    /// Serves `agent` as one worker until `stop` fires; the request in
    /// flight then finishes and is answered before this returns. `ready`
    /// fires once the worker receives requests (its group, subscription or
    /// consumer exists); setup failures are returned instead.
    async fn serve(
        &self,
        agent: &str,
        worker: &str,
        handler: Handler,
        stop: CancellationToken,
        ready: oneshot::Sender<()>,
    ) -> Result<(), QueueAgentError>;

    /// Whether the queue answers.
    async fn ping(&self) -> Result<(), QueueAgentError>;

    /// Deletes what the queue keeps for `agent` (requests included).
    async fn remove(&self, agent: &str) -> Result<(), QueueAgentError>;
}

/// A connection to a queue, shared by every [`QueueAgent`] and worker that
/// uses it. Cheap to clone.
#[derive(Clone)]
pub struct QueueTransport {
    inner: Arc<dyn Transport>,
    url: Arc<str>,
    config: Arc<QueueConfig>,
}

impl std::fmt::Debug for QueueTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueueTransport")
            .field("url", &self.url)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl QueueTransport {
    /// Connects to `redis://…` / `rediss://…` (feature `redis`) or
    /// `nats://…` / `tls://…` (feature `nats`). The Redis connection is made
    /// on first use; NATS connects here.
    pub async fn connect(url: &str, config: QueueConfig) -> Result<Self, QueueAgentError> {
        config.validate()?;
        let scheme = url.split_once("://").map(|(s, _)| s).unwrap_or_default();
        let inner: Arc<dyn Transport> = match scheme {
            #[cfg(feature = "redis")]
            "redis" | "rediss" | "redis+unix" => {
                if config.jetstream {
                    return Err(QueueAgentError::InvalidConfig(
                        "jetstream applies to NATS transports only".into(),
                    ));
                }
                Arc::new(redis::RedisTransport::connect(url, &config)?)
            }
            #[cfg(feature = "nats")]
            "nats" | "tls" => Arc::new(nats::NatsTransport::connect(url, &config).await?),
            _ => {
                return Err(QueueAgentError::InvalidUrl {
                    url: redact(url),
                    reason: format!("expected {}", supported_schemes()),
                });
            }
        };
        Ok(Self {
            inner,
            url: redact(url).into(),
            config: Arc::new(config),
        })
    }

    /// The URL without credentials, safe to log and list.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn config(&self) -> &QueueConfig {
        &self.config
    }

    /// "redis", "nats" or "nats-jetstream".
    pub fn kind(&self) -> &'static str {
        if self.url.starts_with("redis") {
            "redis"
        } else if self.config.jetstream {
            "nats-jetstream"
        } else {
            "nats"
        }
    }

    /// Checks that the queue answers (for health probes).
    pub async fn ping(&self) -> Result<(), QueueAgentError> {
        self.inner.ping().await
    }

    /// Deletes the agent's queue with any requests still in it: the Redis
    /// stream and its consumer group, or the JetStream stream and its
    /// consumer (core NATS keeps nothing). For decommissioning an agent and
    /// for tests; workers still serving it create it again.
    pub async fn remove_queue(&self, agent: &str) -> Result<(), QueueAgentError> {
        validate_agent_name(agent)?;
        self.inner.remove(agent).await
    }

    pub(crate) async fn serve(
        &self,
        agent: &str,
        worker: &str,
        handler: Handler,
        stop: CancellationToken,
        ready: oneshot::Sender<()>,
    ) -> Result<(), QueueAgentError> {
        validate_agent_name(agent)?;
        self.inner.serve(agent, worker, handler, stop, ready).await
    }
}

fn supported_schemes() -> String {
    let mut schemes = Vec::new();
    if cfg!(feature = "redis") {
        schemes.push("redis://");
    }
    if cfg!(feature = "nats") {
        schemes.push("nats://");
    }
    schemes.join(" or ")
}

/// The URL with any user name and password removed.
pub(crate) fn redact(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            match authority.rsplit_once('@') {
                Some((_, host)) => format!("{scheme}://{host}{path}"),
                None => url.to_owned(),
            }
        }
        None => url.to_owned(),
    }
}

/// Builds a [`QueueAgent`].
pub struct QueueAgentBuilder {
    name: String,
    description: String,
    transport: QueueTransport,
    timeout: Duration,
}

impl QueueAgentBuilder {
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

    pub fn build(self) -> Result<QueueAgent, QueueAgentError> {
        validate_agent_name(&self.name)?;
        Ok(QueueAgent {
            name: self.name,
            description: self.description,
            transport: self.transport,
            timeout: self.timeout,
        })
    }
}

/// An agent answered by workers behind a queue.
pub struct QueueAgent {
    name: String,
    description: String,
    transport: QueueTransport,
    timeout: Duration,
}

impl std::fmt::Debug for QueueAgent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueueAgent")
            .field("name", &self.name)
            .field("transport", &self.transport.url())
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl QueueAgent {
    pub fn builder(name: impl Into<String>, transport: QueueTransport) -> QueueAgentBuilder {
        QueueAgentBuilder {
            name: name.into(),
            description: String::new(),
            transport,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    pub fn transport(&self) -> &QueueTransport {
        &self.transport
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }
}

#[async_trait]
impl Agent for QueueAgent {
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
        let request = AgentRequest::new(&self.name, input, &ctx, timeout);
        let payload = serde_json::to_vec(&request)
            .map_err(|e| AgentError::msg(format!("cannot encode the request: {e}")))?;
        // A fresh id per attempt: a retry never receives the reply meant
        // for the attempt it replaces.
        let request_id = uuid::Uuid::now_v7().to_string();
        let call = self
            .transport
            .inner
            .call(&self.name, &request_id, payload, timeout);
        let bytes = tokio::select! {
            biased;
            () = ctx.cancellation().cancelled() => return Err(AgentError::Cancelled),
            r = tokio::time::timeout(timeout, call) => match r {
                Ok(r) => r?,
                Err(_) => return Err(AgentError::Timeout(timeout)),
            },
        };
        AgentReply::decode(&bytes)?.into_result()
    }
}

/// Aborts a spawned task when dropped, so dropping a worker stops its
/// handler as a crashed process would.
pub(crate) struct AbortOnDrop<T>(pub JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Answers a delivery: its handler runs on a task of its own, aborted if
/// this future is dropped (as a crashed process would stop).
#[cfg(feature = "nats")]
pub(crate) async fn answer(handler: &Handler, delivery: Delivery) -> Vec<u8> {
    let mut task = AbortOnDrop(tokio::spawn(handler(delivery)));
    handler_reply((&mut task.0).await)
}

/// [`answer`] for queues that give an idle request to another worker:
/// `keep` tells the queue the request is still worked on, on every tick of
/// [`claim_keeper`] until the handler ends.
pub(crate) async fn answer_keeping<F, Fut>(
    handler: &Handler,
    delivery: Delivery,
    claim_idle: Duration,
    mut keep: F,
) -> Vec<u8>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut task = AbortOnDrop(tokio::spawn(handler(delivery)));
    let mut ticker = claim_keeper(claim_idle);
    let joined = loop {
        tokio::select! {
            joined = &mut task.0 => break joined,
            _ = ticker.tick() => keep().await,
        }
    };
    handler_reply(joined)
}

/// The reply of a finished handler task; a panic becomes a retryable
/// error reply.
fn handler_reply(joined: Result<Vec<u8>, tokio::task::JoinError>) -> Vec<u8> {
    match joined {
        Ok(reply) => reply,
        Err(e) if e.is_panic() => AgentReply::failure("the agent panicked", true).encode(),
        Err(e) => AgentReply::failure(format!("the agent task ended: {e}"), true).encode(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_removed_from_urls() {
        assert_eq!(
            redact("redis://:secret@10.0.0.1:6379/0"),
            "redis://10.0.0.1:6379/0"
        );
        assert_eq!(redact("nats://u:p@h:4222"), "nats://h:4222");
        assert_eq!(redact("nats://h:4222"), "nats://h:4222");
    }

    #[test]
    fn configs_and_names_are_checked() {
        assert!(QueueConfig::default().validate().is_ok());
        assert!(QueueConfig::default().prefix("a.b").validate().is_err());
        assert!(QueueConfig::default().prefix("").validate().is_err());
        assert!(
            QueueConfig::default()
                .claim_idle(Duration::from_millis(1))
                .validate()
                .is_err()
        );
        assert!(validate_agent_name("wiki.search-2").is_ok());
        assert!(validate_agent_name("a b").is_err());
        assert!(validate_agent_name("a*").is_err());
    }
}
