//! Queue agents on Redis Streams.
//!
//! # Key layout
//!
//! | key | type | holds |
//! |---|---|---|
//! | `{prefix}:agentq:{agent}:requests` | stream + consumer group `workers` | one entry per request: `id`, `reply` (the reply list), `request` (JSON) |
//! | `{prefix}:agentq:wait:{id}` | string | present while the caller waits for request `id`; expires with the call's time limit |
//! | `{prefix}:agentq:replies:{instance}` | list | replies for one orchestrator instance, `{id}\n{reply JSON}` each |
//!
//! The caller sets the wait marker and adds the entry in one script, then
//! waits for its reply, which one background task per transport pops from
//! the instance's reply list (`BRPOP` on a connection of its own) and hands
//! to the waiting call. When the call times out or is cancelled, it deletes
//! its wait marker. A worker only starts a request whose marker exists, and
//! only pushes a reply while it does (checked in the same script that acks
//! the entry); a reply that still arrives for a call no longer waiting is
//! dropped by the listener. Late replies are never applied.
//!
//! Workers read with `XREADGROUP`, touch the entry they work on every
//! `claim_idle / 3` (`XCLAIM … JUSTID`), and every `claim_idle / 2` take over
//! entries idle for longer than `claim_idle` (`XAUTOCLAIM`): those of a
//! worker that died.

use std::{
    collections::HashMap,
    sync::{Arc, LazyLock, Mutex},
    time::Duration,
};

use async_trait::async_trait;
use redis::{Script, aio::ConnectionManager, streams::StreamId};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::{
    AbortOnDrop, Delivery, Handler, QueueAgentError, QueueConfig, Transport, answer_keeping,
    wire::AgentReply,
};
use crate::{
    error::{AgentError, StoreError},
    queue::{
        pacing::Backoff,
        stream_group::{GroupConsumer, NextEntry, ms},
    },
    session::{RedisLink, RedisStore, RedisStoreConfig},
};

/// The consumer group every worker of an agent joins.
const GROUP: &str = "workers";

/// How long a reply list outlives its last reply, so the lists of instances
/// that went away expire.
const REPLY_LIST_TTL: Duration = Duration::from_secs(300);

/// Extra life of a wait marker past the call's limit, for clock-free slack.
const WAIT_GRACE: Duration = Duration::from_secs(1);

/// KEYS: wait marker, request stream. ARGV: reply list, marker ttl ms,
/// request id, request JSON.
static ENQUEUE_SCRIPT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
redis.call('SET', KEYS[1], '1', 'PX', ARGV[2])
return redis.call('XADD', KEYS[2], '*', 'id', ARGV[3], 'reply', ARGV[1], 'request', ARGV[4])
",
    )
});

/// Before a worker starts: drops (acks and deletes) an entry nobody waits
/// for. KEYS: wait marker, stream. ARGV: group, entry id. Returns 1 to work.
static START_SCRIPT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('EXISTS', KEYS[1]) == 1 then return 1 end
redis.call('XACK', KEYS[2], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[2], ARGV[2])
return 0
",
    )
});

/// After the handler: pushes the reply if the caller still waits, then acks
/// and deletes the entry. KEYS: wait marker, stream, reply list. ARGV:
/// group, entry id, reply, reply list ttl ms. Returns 1 if delivered.
static FINISH_SCRIPT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local delivered = 0
if redis.call('DEL', KEYS[1]) == 1 then
  redis.call('LPUSH', KEYS[3], ARGV[3])
  redis.call('PEXPIRE', KEYS[3], ARGV[4])
  delivered = 1
end
redis.call('XACK', KEYS[2], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[2], ARGV[2])
return delivered
",
    )
});

type Waiters = Arc<Mutex<HashMap<String, oneshot::Sender<Vec<u8>>>>>;

pub(crate) struct RedisTransport {
    link: RedisLink,
    config: QueueConfig,
    /// This instance's reply list.
    replies: String,
    waiting: Waiters,
    /// The reply listener, started by the first call.
    listener: Mutex<Option<AbortOnDrop<()>>>,
}

fn unavailable(e: StoreError) -> QueueAgentError {
    QueueAgentError::Unavailable(e.to_string())
}

impl RedisTransport {
    pub(crate) fn connect(url: &str, config: &QueueConfig) -> Result<Self, QueueAgentError> {
        let store = RedisStore::connect_lazy(
            url,
            RedisStoreConfig::default().prefix(config.prefix.clone()),
        )
        .map_err(|e| QueueAgentError::InvalidUrl {
            url: super::redact(url),
            reason: e.to_string(),
        })?;
        let link = store.link().clone();
        let instance = uuid::Uuid::new_v4().simple().to_string();
        Ok(Self {
            replies: link.key(&format!("agentq:replies:{instance}")),
            link,
            config: config.clone(),
            waiting: Arc::default(),
            listener: Mutex::new(None),
        })
    }

    fn stream_key(&self, agent: &str) -> String {
        self.link.key(&format!("agentq:{agent}:requests"))
    }

    fn wait_key(&self, request_id: &str) -> String {
        self.link.key(&format!("agentq:wait:{request_id}"))
    }

    fn ensure_listener(&self) -> Result<(), AgentError> {
        let mut listener = self.listener.lock().unwrap_or_else(|p| p.into_inner());
        if listener.as_ref().is_some_and(|l| !l.0.is_finished()) {
            return Ok(());
        }
        let conn = self
            .link
            .dedicated(self.config.block)
            .map_err(|e| AgentError::Transport(e.to_string()))?;
        let task = tokio::spawn(listen(
            self.link.clone(),
            conn,
            self.replies.clone(),
            self.waiting.clone(),
            self.config.block,
        ));
        *listener = Some(AbortOnDrop(task));
        Ok(())
    }
}

/// Pops replies for this instance and hands each to its waiting call;
/// replies for calls no longer waiting are dropped here.
async fn listen(
    link: RedisLink,
    conn: ConnectionManager,
    key: String,
    waiting: Waiters,
    block: Duration,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let mut c = conn.clone();
        let popped: Result<Option<(String, Vec<u8>)>, StoreError> = link
            .call_within(
                link.config.op_timeout() + block,
                "wait for replies",
                redis::cmd("BRPOP")
                    .arg(&key)
                    .arg(block.as_secs_f64())
                    .query_async(&mut c),
            )
            .await;
        match popped {
            Ok(Some((_, item))) => {
                backoff = Duration::from_millis(100);
                let Some(split) = item.iter().position(|b| *b == b'\n') else {
                    tracing::warn!("skipping a malformed queue reply");
                    continue;
                };
                let id = String::from_utf8_lossy(&item[..split]).into_owned();
                let waiter = waiting
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&id);
                match waiter {
                    Some(tx) => {
                        // The call may have given up in between: then the
                        // reply is dropped with the channel.
                        let _ = tx.send(item[split + 1..].to_vec());
                    }
                    None => {
                        tracing::debug!(request_id = %id, "late reply discarded");
                    }
                }
            }
            Ok(None) => backoff = Duration::from_millis(100),
            Err(e) => {
                tracing::warn!(error = %e, ?backoff, "cannot read queue replies; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// Stops waiting for a request when the call ends in any way: removes the
/// waiter and deletes the wait marker, so the reply is never applied.
struct WaitGuard {
    waiting: Waiters,
    request_id: String,
    link: RedisLink,
    wait_key: String,
    answered: bool,
}

impl Drop for WaitGuard {
    fn drop(&mut self) {
        self.waiting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.request_id);
        if self.answered {
            return;
        }
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let link = self.link.clone();
            let key = std::mem::take(&mut self.wait_key);
            rt.spawn(async move {
                let mut conn = link.conn.clone();
                let r: Result<i64, StoreError> = link
                    .call(
                        "abandon request",
                        redis::cmd("DEL").arg(&key).query_async(&mut conn),
                    )
                    .await;
                if let Err(e) = r {
                    tracing::debug!(error = %e, "could not delete the wait marker; it expires");
                }
            });
        }
    }
}

#[async_trait]
impl Transport for RedisTransport {
    async fn call(
        &self,
        agent: &str,
        request_id: &str,
        payload: Vec<u8>,
        timeout: Duration,
    ) -> Result<Vec<u8>, AgentError> {
        self.ensure_listener()?;
        let (tx, rx) = oneshot::channel();
        self.waiting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(request_id.to_owned(), tx);
        let mut guard = WaitGuard {
            waiting: self.waiting.clone(),
            request_id: request_id.to_owned(),
            link: self.link.clone(),
            wait_key: self.wait_key(request_id),
            answered: false,
        };
        let mut conn = self.link.conn.clone();
        let mut inv = ENQUEUE_SCRIPT.key(self.wait_key(request_id));
        inv.key(self.stream_key(agent))
            .arg(&self.replies)
            .arg(ms(timeout + WAIT_GRACE))
            .arg(request_id)
            .arg(payload);
        let _entry: String = self
            .link
            .call("queue request", inv.invoke_async(&mut conn))
            .await
            .map_err(|e| AgentError::Transport(e.to_string()))?;
        tracing::debug!(agent, request_id, "request queued");
        match rx.await {
            Ok(reply) => {
                guard.answered = true;
                Ok(reply)
            }
            Err(_) => Err(AgentError::Transport(
                "the reply listener stopped".to_owned(),
            )),
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
        let w = RedisWorker {
            t: self,
            group: GroupConsumer {
                link: &self.link,
                stream: self.stream_key(agent),
                group: GROUP.to_owned(),
                consumer: worker.to_owned(),
            },
            handler,
        };
        w.group.create_group().await.map_err(unavailable)?;
        let _ = ready.send(());
        w.run(stop).await
    }

    async fn ping(&self) -> Result<(), QueueAgentError> {
        let mut conn = self.link.conn.clone();
        let _: String = self
            .link
            .call("ping", redis::cmd("PING").query_async(&mut conn))
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn remove(&self, agent: &str) -> Result<(), QueueAgentError> {
        let mut conn = self.link.conn.clone();
        let _: i64 = self
            .link
            .call(
                "remove queue",
                redis::cmd("DEL")
                    .arg(self.stream_key(agent))
                    .query_async(&mut conn),
            )
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}

struct RedisWorker<'a> {
    t: &'a RedisTransport,
    group: GroupConsumer<'a>,
    handler: Handler,
}

/// One entry taken from the stream.
struct Entry {
    entry_id: String,
    request_id: String,
    reply: String,
    payload: Vec<u8>,
    deliveries: u32,
}

impl RedisWorker<'_> {
    async fn run(&self, stop: CancellationToken) -> Result<(), QueueAgentError> {
        let cfg = &self.t.config;
        let blocking = self.t.link.dedicated(cfg.block).map_err(unavailable)?;
        let mut next = NextEntry::new(cfg.claim_idle, true);
        let mut backoff = Backoff::new();
        let (stream, consumer) = (&self.group.stream, &self.group.consumer);
        tracing::info!(%stream, %consumer, "queue worker started");
        while !stop.is_cancelled() {
            let step = async {
                if let Some((e, deliveries)) = next.take(&self.group, &blocking, cfg.block).await? {
                    self.process(entry(e, deliveries)).await?;
                }
                Ok::<(), StoreError>(())
            };
            match step.await {
                Ok(()) => backoff.reset(),
                Err(e) => {
                    next.failed(&e);
                    tracing::warn!(%consumer, error = %e, backoff = ?backoff.current(), "queue worker cannot reach Redis; retrying");
                    if !backoff.wait(&stop).await {
                        break;
                    }
                }
            }
        }
        // Everything taken was answered: leave the group tidy.
        self.group.leave().await;
        tracing::info!(%consumer, "queue worker stopped");
        Ok(())
    }

    async fn process(&self, e: Entry) -> Result<(), StoreError> {
        let link = &self.t.link;
        let cfg = &self.t.config;
        let wait_key = self.t.wait_key(&e.request_id);
        let mut conn = link.conn.clone();
        let mut inv = START_SCRIPT.key(&wait_key);
        inv.key(&self.group.stream).arg(GROUP).arg(&e.entry_id);
        let start: i64 = link
            .call("start request", inv.invoke_async(&mut conn))
            .await?;
        if start == 0 {
            tracing::debug!(request_id = %e.request_id, "nobody waits for this request any more; dropped");
            return Ok(());
        }
        let reply = if e.deliveries > cfg.max_deliveries {
            tracing::warn!(request_id = %e.request_id, deliveries = e.deliveries, "request abandoned by too many workers; answering with an error");
            AgentReply::failure(
                format!(
                    "the request was abandoned by its worker {} times",
                    e.deliveries - 1
                ),
                false,
            )
            .encode()
        } else {
            let delivery = Delivery {
                request_id: e.request_id.clone(),
                payload: e.payload,
                attempt: e.deliveries,
            };
            answer_keeping(&self.handler, delivery, cfg.claim_idle, || {
                self.keep_claim(&e.entry_id)
            })
            .await
        };
        let mut item = Vec::with_capacity(e.request_id.len() + 1 + reply.len());
        item.extend_from_slice(e.request_id.as_bytes());
        item.push(b'\n');
        item.extend_from_slice(&reply);
        let mut inv = FINISH_SCRIPT.key(&wait_key);
        inv.key(&self.group.stream)
            .key(&e.reply)
            .arg(GROUP)
            .arg(&e.entry_id)
            .arg(item)
            .arg(ms(REPLY_LIST_TTL));
        let delivered: i64 = link
            .call("answer request", inv.invoke_async(&mut conn))
            .await?;
        if delivered == 0 {
            tracing::debug!(request_id = %e.request_id, "the caller gave up; reply discarded");
        }
        Ok(())
    }

    /// Resets the entry's idle time so no other worker reclaims it.
    async fn keep_claim(&self, entry_id: &str) {
        if let Err(e) = self.group.keep_claim(entry_id).await {
            tracing::warn!(entry = entry_id, error = %e, "could not keep the claim on a request");
        }
    }
}

fn entry(e: StreamId, deliveries: u32) -> Entry {
    Entry {
        request_id: e.get("id").unwrap_or_default(),
        reply: e.get("reply").unwrap_or_default(),
        payload: e.get("request").unwrap_or_default(),
        entry_id: e.id,
        deliveries,
    }
}
