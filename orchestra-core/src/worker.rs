//! Serve any [`Agent`] to orchestrators as a queue worker (features `redis`
//! or `nats`): the other end of [`QueueAgent`](crate::agents::queue::QueueAgent).
//!
//! A worker takes one request at a time from the agent's queue, runs the
//! agent under the request's deadline, answers, and acknowledges. Start
//! several workers (in one process or many) to share the load; a worker
//! that dies mid-request has that request finished by another (Redis and
//! JetStream transports). Stopping a worker through its token finishes the
//! request in flight, then returns; dropping or aborting the worker future
//! is a crash: the request is left for another worker.
//!
//! With [`Worker::register`] the worker also announces itself in the Redis
//! agent registry (kind `"queue"`, the transport URL without credentials)
//! with a heartbeat, so orchestrators' `/agents` lists it while it runs.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use orchestra_core::{FnAgent, agents::queue::{QueueConfig, QueueTransport}, worker::Worker};
//! use tokio_util::sync::CancellationToken;
//! let transport = QueueTransport::connect("nats://127.0.0.1:4222", QueueConfig::default()).await?;
//! let agent = FnAgent::new("echo", "repeats the task", |i, _| async move { i.task });
//! let stop = CancellationToken::new();
//! Worker::new(agent, transport).serve(stop).await?;
//! # Ok(()) }
//! ```

use std::{sync::Arc, time::Duration};

use futures::FutureExt;
use serde_json::{Map, Value};
use tokio::{sync::oneshot, task::JoinHandle};
use tokio_util::sync::CancellationToken;

use crate::{
    agent::{Agent, AgentContext, AgentRef},
    agents::queue::{
        Delivery, Handler, QueueAgentError, QueueTransport,
        wire::{AgentReply, AgentRequest},
    },
    discovery::{AgentRegistration, DiscoveryError},
    error::AgentError,
    event::EventSink,
};

/// Why a worker could not start or stopped early.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum WorkerError {
    #[error(transparent)]
    Queue(#[from] QueueAgentError),
    /// The registration in the agent registry failed.
    #[error(transparent)]
    Discovery(#[from] DiscoveryError),
}

impl WorkerError {
    /// A stable snake_case code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Queue(e) => e.code(),
            Self::Discovery(e) => e.code(),
        }
    }
}

/// One worker serving one agent on one transport.
pub struct Worker {
    agent: AgentRef,
    name: String,
    transport: QueueTransport,
    id: String,
    #[cfg(feature = "redis")]
    registry: Option<crate::discovery::RedisAgentRegistry>,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("name", &self.name)
            .field("id", &self.id)
            .field("transport", &self.transport.url())
            .finish_non_exhaustive()
    }
}

impl Worker {
    /// A worker serving `agent` under its own name.
    pub fn new(agent: impl Agent + 'static, transport: QueueTransport) -> Self {
        Self::from_arc(Arc::new(agent), transport)
    }

    pub fn from_arc(agent: AgentRef, transport: QueueTransport) -> Self {
        Self {
            name: agent.name().to_owned(),
            agent,
            transport,
            id: format!("worker-{}", uuid::Uuid::new_v4().simple()),
            #[cfg(feature = "redis")]
            registry: None,
        }
    }

    /// Serves the agent under another name than its own.
    #[must_use]
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Announces the worker in a Redis agent registry while it serves.
    #[cfg(feature = "redis")]
    #[must_use]
    pub fn register(mut self, registry: crate::discovery::RedisAgentRegistry) -> Self {
        self.registry = Some(registry);
        self
    }

    /// This worker's consumer name on the queue.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// What the worker announces in a registry.
    pub fn registration(&self) -> AgentRegistration {
        let config = self.transport.config();
        let mut metadata = Map::new();
        metadata.insert("transport".into(), Value::from(self.transport.kind()));
        metadata.insert("prefix".into(), Value::from(config.prefix.clone()));
        metadata.insert("jetstream".into(), Value::from(config.jetstream));
        metadata.insert("worker".into(), Value::from(self.id.clone()));
        let mut reg = AgentRegistration::new(&self.name, "queue", self.transport.url())
            .description(self.agent.description());
        reg.metadata = metadata;
        reg
    }

    /// Serves until `stop` fires, then finishes the request in flight and
    /// returns. Fails at once if the queue or the registry cannot be reached
    /// at start; later outages are logged and waited out.
    pub async fn serve(self, stop: CancellationToken) -> Result<(), WorkerError> {
        self.start(stop).await?.join().await
    }

    /// Starts serving on a task of its own and returns once the worker
    /// receives requests, so a caller can send work without racing it.
    pub async fn start(self, stop: CancellationToken) -> Result<WorkerHandle, WorkerError> {
        #[cfg(feature = "redis")]
        let heartbeat_stop = CancellationToken::new();
        #[cfg(feature = "redis")]
        let heartbeat = match &self.registry {
            Some(registry) => Some(
                crate::discovery::Heartbeat::start(
                    registry.clone(),
                    self.registration(),
                    heartbeat_stop.clone(),
                )
                .await?,
            ),
            None => None,
        };
        let agent = self.agent.clone();
        let name: Arc<str> = self.name.as_str().into();
        let handler: Handler = Arc::new(move |d: Delivery| {
            let agent = agent.clone();
            let name = name.clone();
            async move { answer(agent, name, d).await }.boxed()
        });
        let (ready_tx, ready_rx) = oneshot::channel();
        let id = self.id.clone();
        let task_stop = stop.clone();
        let ended = CancellationToken::new();
        // Fires however the task ends: returned, panicked or aborted.
        let ending = ended.clone().drop_guard();
        let task = tokio::spawn(async move {
            let _ending = ending;
            let served = self
                .transport
                .serve(&self.name, &self.id, handler, task_stop, ready_tx)
                .await;
            #[cfg(feature = "redis")]
            if let Some(beat) = heartbeat {
                heartbeat_stop.cancel();
                beat.stopped().await;
            }
            Ok(served?)
        });
        let mut handle = WorkerHandle {
            id,
            stop,
            ended,
            task: Some(task),
        };
        if ready_rx.await.is_err() {
            // Setup failed: the task ended with the reason.
            return Err(handle.join_inner().await.err().unwrap_or_else(|| {
                WorkerError::Queue(QueueAgentError::Unavailable(
                    "the worker stopped before it was ready".into(),
                ))
            }));
        }
        Ok(handle)
    }
}

/// A running worker. Dropping the handle leaves the worker running; use
/// [`stop`](Self::stop) and [`join`](Self::join) to end it cleanly, or
/// [`abort`](Self::abort) to end it as a crash would.
pub struct WorkerHandle {
    id: String,
    stop: CancellationToken,
    ended: CancellationToken,
    task: Option<JoinHandle<Result<(), WorkerError>>>,
}

impl std::fmt::Debug for WorkerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerHandle")
            .field("id", &self.id)
            .field("finished", &self.is_finished())
            .finish()
    }
}

impl WorkerHandle {
    /// The worker's consumer name on the queue.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Asks the worker to stop: it takes no new request and returns once
    /// the request in flight is answered.
    pub fn stop(&self) {
        self.stop.cancel();
    }

    pub fn is_finished(&self) -> bool {
        self.task.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Resolves once the worker has stopped, however it stopped, without
    /// taking the handle (unlike [`join`](Self::join)): for hosts that keep
    /// a process alive while a worker serves.
    pub fn ended(&self) -> impl Future<Output = ()> + Send + 'static {
        self.ended.clone().cancelled_owned()
    }

    /// Waits until the worker has stopped.
    pub async fn join(mut self) -> Result<(), WorkerError> {
        self.join_inner().await
    }

    async fn join_inner(&mut self) -> Result<(), WorkerError> {
        match self.task.take() {
            Some(task) => match task.await {
                Ok(r) => r,
                Err(e) => Err(WorkerError::Queue(QueueAgentError::Unavailable(format!(
                    "the worker task ended abnormally: {e}"
                )))),
            },
            None => Ok(()),
        }
    }

    /// Ends the worker at once, without answering or acknowledging the
    /// request in flight, as if its process had died: the request goes to
    /// another worker (Redis, JetStream) or times out (core NATS).
    pub fn abort(mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Runs the agent on one request under the request's deadline.
async fn answer(agent: AgentRef, name: Arc<str>, d: Delivery) -> Vec<u8> {
    let mut request: AgentRequest = match serde_json::from_slice(&d.payload) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(request_id = %d.request_id, error = %e, "undecodable request");
            return AgentReply::failure(format!("invalid request: {e}"), false).encode();
        }
    };
    let limit = (request.deadline_ms > 0).then(|| Duration::from_millis(request.deadline_ms));
    let cancel = CancellationToken::new();
    let ctx = AgentContext::new(
        name,
        request.step,
        cancel.clone(),
        limit.map(|l| tokio::time::Instant::now() + l),
        EventSink::disabled(),
    )
    .with_answer(request.answer.take().map(Arc::new))
    .with_handoff(request.handoff.take().map(Arc::new), None);
    tracing::debug!(request_id = %d.request_id, attempt = d.attempt, "serving a request");
    let call = agent.invoke(request.into_input(), ctx);
    let result = match limit {
        Some(limit) => match tokio::time::timeout(limit, call).await {
            Ok(r) => r,
            Err(_) => {
                // The caller has given up too; let the agent's own work stop.
                cancel.cancel();
                Err(AgentError::Timeout(limit))
            }
        },
        None => call.await,
    };
    AgentReply::from_result(result).encode()
}
