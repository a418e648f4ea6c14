//! Queue agents on NATS.
//!
//! # Subjects and streams
//!
//! | name | what |
//! |---|---|
//! | `{prefix}.agents.{agent}.invoke` | core request/reply: workers subscribe in queue group `{prefix}.workers` |
//! | `{prefix}.agents.{agent}.jobs` | JetStream: the subject of stream `{prefix}_agents_{agent}` (`.` in the agent name becomes `_`), work-queue retention, durable pull consumer `workers` |
//!
//! Core request/reply is at most once: a worker that dies takes the request
//! with it and the caller times out (and retries, if its policy says so).
//! With JetStream the request is stored; the caller sends it with the
//! headers `Orchestra-Request-Id`, `Orchestra-Reply-To` (an inbox it
//! listens on) and `Orchestra-Deadline` (Unix milliseconds), and waits on the
//! inbox. A worker sends `+WPI` (in progress) every `claim_idle / 3`, replies
//! to the inbox and then acks; a worker that dies stops both, and after
//! `ack_wait` (= `claim_idle`) the server delivers the request to another.
//!
//! Late replies: in both modes the caller's inbox subscription ends with
//! the call, so a reply sent after a timeout or cancellation reaches no one.
//! A JetStream worker also drops a request whose deadline has passed.

use std::{
    collections::HashSet,
    sync::Mutex,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use async_nats::{
    HeaderMap, RequestErrorKind, Subject,
    jetstream::{self, AckKind, consumer::pull, stream},
};
use async_trait::async_trait;
use futures::StreamExt;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::{Delivery, Handler, QueueAgentError, QueueConfig, Transport, answer, answer_keeping};
use crate::{error::AgentError, queue::pacing::Backoff};

const REQUEST_ID: &str = "Orchestra-Request-Id";
const REPLY_TO: &str = "Orchestra-Reply-To";
const DEADLINE: &str = "Orchestra-Deadline";

/// The durable consumer every JetStream worker of an agent shares.
const CONSUMER: &str = "workers";

/// Requests older than this are dropped from a JetStream stream even if
/// nobody took them (their callers gave up long before).
const STREAM_MAX_AGE: Duration = Duration::from_secs(3600);

pub(crate) struct NatsTransport {
    client: async_nats::Client,
    js: jetstream::Context,
    config: QueueConfig,
    /// Streams known to exist, so a call costs no stream lookup.
    streams: Mutex<HashSet<String>>,
}

fn unavailable(e: impl std::fmt::Display) -> QueueAgentError {
    QueueAgentError::Unavailable(e.to_string())
}

/// The value of header `key`, if the message has it.
fn header(headers: Option<&HeaderMap>, key: &str) -> Option<String> {
    headers
        .and_then(|h| h.get(key))
        .map(|v| v.as_str().to_owned())
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis().try_into().unwrap_or(u64::MAX))
}

impl NatsTransport {
    pub(crate) async fn connect(url: &str, config: &QueueConfig) -> Result<Self, QueueAgentError> {
        let client = async_nats::ConnectOptions::new()
            .connection_timeout(Duration::from_secs(2))
            .request_timeout(None)
            .connect(url)
            .await
            .map_err(|e| {
                QueueAgentError::Unavailable(format!(
                    "cannot connect to {}: {e}",
                    super::redact(url)
                ))
            })?;
        let js = jetstream::new(client.clone());
        Ok(Self {
            client,
            js,
            config: config.clone(),
            streams: Mutex::new(HashSet::new()),
        })
    }

    fn invoke_subject(&self, agent: &str) -> String {
        format!("{}.agents.{agent}.invoke", self.config.prefix)
    }

    fn jobs_subject(&self, agent: &str) -> String {
        format!("{}.agents.{agent}.jobs", self.config.prefix)
    }

    fn stream_name(&self, agent: &str) -> String {
        format!("{}_agents_{}", self.config.prefix, agent.replace('.', "_"))
    }

    fn queue_group(&self) -> String {
        format!("{}.workers", self.config.prefix)
    }

    async fn ensure_stream(&self, agent: &str) -> Result<stream::Stream, QueueAgentError> {
        let name = self.stream_name(agent);
        let stream = self
            .js
            .get_or_create_stream(stream::Config {
                name: name.clone(),
                subjects: vec![self.jobs_subject(agent)],
                retention: stream::RetentionPolicy::WorkQueue,
                storage: stream::StorageType::File,
                max_age: STREAM_MAX_AGE,
                ..Default::default()
            })
            .await
            .map_err(|e| unavailable(format!("JetStream stream {name}: {e}")))?;
        self.streams
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name);
        Ok(stream)
    }

    async fn call_core(
        &self,
        agent: &str,
        request_id: &str,
        payload: Vec<u8>,
        timeout: Duration,
    ) -> Result<Vec<u8>, AgentError> {
        let mut headers = HeaderMap::new();
        headers.insert(REQUEST_ID, request_id);
        let request = async_nats::Request::new()
            .payload(payload.into())
            .headers(headers)
            .timeout(Some(timeout));
        match self
            .client
            .send_request(self.invoke_subject(agent), request)
            .await
        {
            Ok(msg) => Ok(msg.payload.to_vec()),
            Err(e) => Err(match e.kind() {
                RequestErrorKind::TimedOut => AgentError::Timeout(timeout),
                RequestErrorKind::NoResponders => {
                    AgentError::Transport(format!("no worker serves agent '{agent}'"))
                }
                _ => AgentError::Transport(e.to_string()),
            }),
        }
    }

    async fn call_jetstream(
        &self,
        agent: &str,
        request_id: &str,
        payload: Vec<u8>,
        timeout: Duration,
    ) -> Result<Vec<u8>, AgentError> {
        let known = self
            .streams
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&self.stream_name(agent));
        if !known {
            self.ensure_stream(agent)
                .await
                .map_err(|e| AgentError::Transport(e.to_string()))?;
        }
        let inbox = self.client.new_inbox();
        // Subscribed before publishing, so no reply can come too early.
        let mut replies = self
            .client
            .subscribe(inbox.clone())
            .await
            .map_err(|e| AgentError::Transport(e.to_string()))?;
        let mut headers = HeaderMap::new();
        headers.insert(REQUEST_ID, request_id);
        headers.insert(REPLY_TO, inbox.as_str());
        headers.insert(
            DEADLINE,
            now_ms()
                .saturating_add(timeout.as_millis().try_into().unwrap_or(u64::MAX))
                .to_string()
                .as_str(),
        );
        let ack = self
            .js
            .publish_with_headers(self.jobs_subject(agent), headers, payload.into())
            .await
            .map_err(|e| AgentError::Transport(e.to_string()))?;
        ack.await.map_err(|e| {
            AgentError::Transport(format!("JetStream did not store the request: {e}"))
        })?;
        while let Some(msg) = replies.next().await {
            let matches =
                header(msg.headers.as_ref(), REQUEST_ID).is_none_or(|id| id == request_id);
            if matches {
                return Ok(msg.payload.to_vec());
            }
        }
        Err(AgentError::Transport(
            "the NATS connection closed".to_owned(),
        ))
    }

    async fn serve_core(
        &self,
        agent: &str,
        worker: &str,
        handler: Handler,
        stop: CancellationToken,
        ready: oneshot::Sender<()>,
    ) -> Result<(), QueueAgentError> {
        let subject = self.invoke_subject(agent);
        let mut sub = self
            .client
            .queue_subscribe(subject.clone(), self.queue_group())
            .await
            .map_err(unavailable)?;
        // Once the server has answered a ping it has the subscription.
        self.client.flush().await.map_err(unavailable)?;
        let _ = ready.send(());
        tracing::info!(%subject, worker, "queue worker started");
        loop {
            let msg = tokio::select! {
                () = stop.cancelled() => break,
                m = sub.next() => match m {
                    Some(m) => m,
                    None => return Err(QueueAgentError::Unavailable("the NATS subscription ended".into())),
                },
            };
            let Some(reply_to) = msg.reply.clone() else {
                tracing::warn!(%subject, "request without a reply subject; skipped");
                continue;
            };
            let request_id = header(msg.headers.as_ref(), REQUEST_ID).unwrap_or_default();
            let delivery = Delivery {
                request_id: request_id.clone(),
                payload: msg.payload.to_vec(),
                attempt: 1,
            };
            let reply = answer(&handler, delivery).await;
            self.send_reply(reply_to, &request_id, reply).await;
        }
        // Stop taking requests; those already buffered for this subscriber
        // time out at their callers (core NATS delivers at most once).
        if let Err(e) = sub.unsubscribe().await {
            tracing::debug!(error = %e, "unsubscribe failed");
        }
        if let Err(e) = self.client.flush().await {
            tracing::debug!(error = %e, "flush failed");
        }
        tracing::info!(%subject, worker, "queue worker stopped");
        Ok(())
    }

    async fn serve_jetstream(
        &self,
        agent: &str,
        worker: &str,
        handler: Handler,
        stop: CancellationToken,
        ready: oneshot::Sender<()>,
    ) -> Result<(), QueueAgentError> {
        let cfg = &self.config;
        let stream = self.ensure_stream(agent).await?;
        let consumer: jetstream::consumer::Consumer<pull::Config> = stream
            .get_or_create_consumer(
                CONSUMER,
                pull::Config {
                    durable_name: Some(CONSUMER.to_owned()),
                    ack_policy: jetstream::consumer::AckPolicy::Explicit,
                    ack_wait: cfg.claim_idle,
                    max_deliver: i64::from(cfg.max_deliveries),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| unavailable(format!("JetStream consumer: {e}")))?;
        let name = self.stream_name(agent);
        let _ = ready.send(());
        tracing::info!(stream = %name, worker, "queue worker started");
        let mut backoff = Backoff::new();
        while !stop.is_cancelled() {
            // One request at a time, so a busy worker leaves the others to
            // its peers and a dead one holds at most one.
            let fetched = consumer
                .fetch()
                .max_messages(1)
                .expires(cfg.block)
                .messages()
                .await;
            let mut batch = match fetched {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(stream = %name, error = %e, backoff = ?backoff.current(), "queue worker cannot fetch; retrying");
                    if !backoff.wait(&stop).await {
                        break;
                    }
                    continue;
                }
            };
            backoff.reset();
            while let Some(next) = batch.next().await {
                match next {
                    Ok(msg) => self.process_jetstream(msg, &handler).await,
                    Err(e) => tracing::debug!(error = %e, "fetch ended"),
                }
            }
        }
        tracing::info!(stream = %name, worker, "queue worker stopped");
        Ok(())
    }

    async fn process_jetstream(&self, msg: jetstream::Message, handler: &Handler) {
        let get = |k: &str| header(msg.headers.as_ref(), k);
        let request_id = get(REQUEST_ID).unwrap_or_default();
        let deliveries = msg
            .info()
            .map_or(1, |i| u32::try_from(i.delivered).unwrap_or(u32::MAX));
        let Some(reply_to) = get(REPLY_TO) else {
            tracing::warn!(request_id, "request without a reply subject; dropped");
            ack(&msg, AckKind::Term).await;
            return;
        };
        let deadline = get(DEADLINE).and_then(|d| d.parse::<u64>().ok());
        if deadline.is_some_and(|d| d < now_ms()) {
            tracing::debug!(request_id, "the caller's deadline has passed; dropped");
            ack(&msg, AckKind::Ack).await;
            return;
        }
        let delivery = Delivery {
            request_id: request_id.clone(),
            payload: msg.payload.to_vec(),
            attempt: deliveries,
        };
        let reply = answer_keeping(handler, delivery, self.config.claim_idle, || {
            ack(&msg, AckKind::Progress)
        })
        .await;
        if !self.send_reply(reply_to.into(), &request_id, reply).await {
            // Not acked: delivered again after ack_wait.
            return;
        }
        if let Err(e) = msg.double_ack().await {
            tracing::warn!(request_id, error = %e, "could not ack a request");
        }
    }

    /// Sends `reply` to the caller's inbox; `false` (logged) if it could not.
    async fn send_reply(&self, to: Subject, request_id: &str, reply: Vec<u8>) -> bool {
        let mut headers = HeaderMap::new();
        headers.insert(REQUEST_ID, request_id);
        match self
            .client
            .publish_with_headers(to, headers, reply.into())
            .await
        {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(request_id, error = %e, "could not send a reply");
                false
            }
        }
    }
}

async fn ack(msg: &jetstream::Message, kind: AckKind) {
    if let Err(e) = msg.ack_with(kind).await {
        tracing::debug!(error = %e, "ack failed");
    }
}

#[async_trait]
impl Transport for NatsTransport {
    async fn call(
        &self,
        agent: &str,
        request_id: &str,
        payload: Vec<u8>,
        timeout: Duration,
    ) -> Result<Vec<u8>, AgentError> {
        if self.config.jetstream {
            self.call_jetstream(agent, request_id, payload, timeout)
                .await
        } else {
            self.call_core(agent, request_id, payload, timeout).await
        }
    }

    async fn serve(
        &self,
        agent: &str,
        worker: &str,
        handler: Handler,
        stop: CancellationToken,
        ready: oneshot::Sender<()>,
    ) -> Result<(), QueueAgentError> {
        if self.config.jetstream {
            self.serve_jetstream(agent, worker, handler, stop, ready)
                .await
        } else {
            self.serve_core(agent, worker, handler, stop, ready).await
        }
    }

    async fn remove(&self, agent: &str) -> Result<(), QueueAgentError> {
        if !self.config.jetstream {
            return Ok(());
        }
        let name = self.stream_name(agent);
        self.streams
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&name);
        match self.js.delete_stream(&name).await {
            Ok(_) => Ok(()),
            Err(e) if e.to_string().contains("not found") => Ok(()),
            Err(e) => Err(unavailable(format!("JetStream stream {name}: {e}"))),
        }
    }

    async fn ping(&self) -> Result<(), QueueAgentError> {
        match tokio::time::timeout(Duration::from_secs(2), self.client.flush()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(unavailable(e)),
            Err(_) => Err(QueueAgentError::Unavailable(
                "NATS did not answer within 2 s".into(),
            )),
        }
    }
}
