//! [`RedisRunQueue`]: the run queue on Redis Streams.
//!
//! ```no_run
//! use orchestra_core::queue::{RedisRunQueue, RunQueueConfig, RunJob};
//! use orchestra_core::{RedisStore, RedisStoreConfig};
//! use futures::StreamExt;
//! use serde_json::json;
//! use tokio_util::sync::CancellationToken;
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let store = RedisStore::connect("redis://127.0.0.1:6379", RedisStoreConfig::default()).await?;
//! let queue = RedisRunQueue::new(&store, RunQueueConfig::default());
//!
//! // Any instance: submit.
//! let run_id = queue.submit(&json!({"pattern": "sequential", "task": "hi"})).await?;
//!
//! // Every instance: run workers.
//! let stop = CancellationToken::new();
//! let worker = tokio::spawn({
//!     let queue = queue.clone();
//!     let stop = stop.clone();
//!     async move {
//!         queue.run_worker(|job: RunJob| async move {
//!             job.events.append(&json!({"type": "working"})).await?;
//!             Ok(json!({"output": "done"}))
//!         }, stop).await
//!     }
//! });
//!
//! // Any instance: follow the events, then read the result.
//! let mut events = queue.events(&run_id, 0);
//! while let Some(ev) = events.next().await {
//!     let ev = ev?;
//!     println!("{}: {}", ev.seq, ev.data); // seq = SSE id, resumable
//! }
//! println!("{:?}", queue.status(&run_id).await?);
//! stop.cancel();
//! worker.await??;
//! # Ok(()) }
//! ```
//!
//! # Key layout
//!
//! | key | type | holds |
//! |---|---|---|
//! | `{prefix}:runs:queue` | stream + consumer group | one entry per submitted run: `run_id`, `request` (JSON) |
//! | `{prefix}:runs:dead` | stream | runs that failed `max_deliveries` times: `run_id`, `request`, `error`, `deliveries` |
//! | `{prefix}:runs:{run_id}` | hash | the status record ([`QueuedRun`]); expires after `result_ttl` |
//! | `{prefix}:runs:{run_id}:done` | string | completion marker, set once with `SET NX`; holds the consumer that completed it |
//! | `{prefix}:runs:{run_id}:events` | stream | the run's events, entry id `{seq}-1`, capped at `events_max_len`, expires after `events_ttl` |
//!
//! # Delivery
//!
//! A worker reads new entries with `XREADGROUP` on a connection of its own
//! (the read blocks), and every `claim_idle / 2` takes over entries that
//! another consumer left idle longer than `claim_idle` (`XAUTOCLAIM`). While a
//! handler runs, the worker resets the entry's idle time every
//! `claim_idle / 3` (`XCLAIM … JUSTID`), so only a worker that stopped
//! (crashed, hung process, lost network) loses its entry. Before executing,
//! a Lua script checks the completion marker; after the handler returns, a
//! second script sets the marker with `SET NX`, writes the result, appends
//! the end-of-events entry, then `XACK`s and `XDEL`s the entry, all at once.
//! A failed attempt stays pending and is delivered again after `claim_idle`;
//! the attempt that reaches `max_deliveries` moves the entry to
//! `{prefix}:runs:dead`.

use std::{
    collections::{HashMap, VecDeque},
    future::Future,
    pin::Pin,
    sync::{Arc, LazyLock},
    time::Duration,
};

use chrono::{DateTime, Utc};
use futures::Stream;
use redis::{
    Script, Value as RedisValue,
    streams::{StreamId, StreamReadReply},
};
use serde::Serialize;
use serde_json::Value;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{
    JobError, QueueError, QueuedRun, QueuedRunStatus, RunEvent,
    pacing::{Backoff, claim_keeper},
    stream_group::{GroupConsumer, NextEntry, ms},
    validate_run_id,
};
use crate::{
    error::StoreError,
    session::{RedisLink, RedisStore},
};

/// How a [`RedisRunQueue`] delivers, retries and keeps runs.
#[derive(Debug, Clone)]
pub struct RunQueueConfig {
    /// The consumer group every worker of the service joins.
    pub group: String,
    /// An entry whose worker has not touched it for this long is taken over
    /// by another worker; it is also the delay before a failed run is retried.
    pub claim_idle: Duration,
    /// Deliveries after which a failing run is dead-lettered.
    pub max_deliveries: u32,
    /// How long one `XREADGROUP` waits for new entries; bounds how fast a
    /// worker notices cancellation.
    pub block: Duration,
    /// How long status records and completion markers are kept.
    pub result_ttl: Duration,
    /// Most events kept per run (approximate, `MAXLEN ~`).
    pub events_max_len: usize,
    /// How long a run's events are kept after its last event.
    pub events_ttl: Duration,
    /// How often an event reader polls while nothing new has arrived.
    pub event_poll: Duration,
}

impl Default for RunQueueConfig {
    fn default() -> Self {
        Self {
            group: "workers".to_owned(),
            claim_idle: Duration::from_secs(30),
            max_deliveries: 5,
            block: Duration::from_secs(1),
            result_ttl: Duration::from_secs(24 * 3600),
            events_max_len: 10_000,
            events_ttl: Duration::from_secs(24 * 3600),
            event_poll: Duration::from_millis(100),
        }
    }
}

/// Appends one entry to a run's event stream and returns its seq. The seq
/// continues after the last entry, so events of a retried run follow those
/// of the attempt before it, and the entry id `{seq}-1` lets readers resume
/// from a seq with `XREAD`.
const APPEND_FN: &str = r"
local function append(key, field, data, maxlen, ttl)
  local last = redis.call('XREVRANGE', key, '+', '-', 'COUNT', 1)
  local seq = 1
  if #last > 0 then seq = tonumber(string.match(last[1][1], '^(%d+)')) + 1 end
  redis.call('XADD', key, 'MAXLEN', '~', maxlen, seq .. '-1', field, data)
  redis.call('PEXPIRE', key, ttl)
  return seq
end
";

/// KEYS: events. ARGV: data, maxlen, ttl ms.
static APPEND_SCRIPT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{APPEND_FN}\nreturn append(KEYS[1], 'event', ARGV[1], ARGV[2], ARGV[3])"
    ))
});

/// KEYS: record, queue. ARGV: run id, request, now, ttl ms.
static SUBMIT_SCRIPT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('EXISTS', KEYS[1]) == 1 then return false end
redis.call('HSET', KEYS[1], 'status', 'queued', 'request', ARGV[2], 'attempts', '0',
  'submitted_at', ARGV[3], 'updated_at', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return redis.call('XADD', KEYS[2], '*', 'run_id', ARGV[1], 'request', ARGV[2])
",
    )
});

/// Before executing: skips (acks and deletes) an entry whose run completed,
/// otherwise marks the run running. KEYS: record, done, queue. ARGV: group,
/// entry id, worker, attempts, now, ttl ms, request. Returns 1 to execute.
static START_SCRIPT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('EXISTS', KEYS[2]) == 1 then
  redis.call('XACK', KEYS[3], ARGV[1], ARGV[2])
  redis.call('XDEL', KEYS[3], ARGV[2])
  return 0
end
if redis.call('HEXISTS', KEYS[1], 'submitted_at') == 0 then
  redis.call('HSET', KEYS[1], 'request', ARGV[7], 'submitted_at', ARGV[5])
end
redis.call('HSET', KEYS[1], 'status', 'running', 'worker', ARGV[3], 'attempts', ARGV[4],
  'updated_at', ARGV[5])
redis.call('PEXPIRE', KEYS[1], ARGV[6])
return 1
",
    )
});

/// After success: records completion once, then acks. KEYS: record, done,
/// queue, events. ARGV: group, entry id, worker, result, now, ttl ms,
/// events maxlen, events ttl ms. Returns 1 if this call completed the run.
static COMPLETE_SCRIPT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r"{APPEND_FN}
local won = 0
if redis.call('SET', KEYS[2], ARGV[3], 'NX', 'PX', ARGV[6]) then
  won = 1
  redis.call('HSET', KEYS[1], 'status', 'completed', 'result', ARGV[4], 'worker', ARGV[3],
    'updated_at', ARGV[5])
  redis.call('HDEL', KEYS[1], 'error')
  redis.call('PEXPIRE', KEYS[1], ARGV[6])
  append(KEYS[4], 'end', 'completed', ARGV[7], ARGV[8])
end
redis.call('XACK', KEYS[3], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[3], ARGV[2])
return won
"
    ))
});

/// After a failure that may be retried: records the error, leaves the entry
/// pending. KEYS: record, done. ARGV: error, now.
static RETRY_SCRIPT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'status', 'retrying', 'error', ARGV[1], 'updated_at', ARGV[2])
return 1
",
    )
});

/// Moves an entry to the dead-letter stream. KEYS: record, done, queue, dead,
/// Counts for monitoring in one round trip. KEYS: queue, dead-letter
/// stream. ARGV: group. A group not created yet has nothing pending.
static STATS_SCRIPT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local depth = redis.call('XLEN', KEYS[1])
local pending = 0
local ok, summary = pcall(redis.call, 'XPENDING', KEYS[1], ARGV[1])
if ok and type(summary) == 'table' and summary[1] then pending = summary[1] end
return {depth, pending, redis.call('XLEN', KEYS[2])}
",
    )
});

/// events. ARGV: group, entry id, run id, request, error, deliveries, now,
/// ttl ms, events maxlen, events ttl ms.
static DEAD_SCRIPT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r"{APPEND_FN}
if redis.call('EXISTS', KEYS[2]) == 0 then
  redis.call('XADD', KEYS[4], '*', 'run_id', ARGV[3], 'request', ARGV[4], 'error', ARGV[5],
    'deliveries', ARGV[6], 'entry_id', ARGV[2])
  redis.call('HSET', KEYS[1], 'status', 'dead', 'error', ARGV[5], 'attempts', ARGV[6],
    'updated_at', ARGV[7])
  redis.call('PEXPIRE', KEYS[1], ARGV[8])
  append(KEYS[5], 'end', 'dead', ARGV[9], ARGV[10])
end
redis.call('XACK', KEYS[3], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[3], ARGV[2])
return 1
",
    ))
});

/// The run queue on Redis Streams. Cheap to clone; shares the store's
/// connection and key prefix.
#[derive(Clone)]
pub struct RedisRunQueue {
    link: RedisLink,
    config: Arc<RunQueueConfig>,
}

impl std::fmt::Debug for RedisRunQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisRunQueue")
            .field("prefix", &self.link.config.prefix)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// One delivery of a run to a handler.
#[derive(Debug, Clone)]
pub struct RunJob {
    pub run_id: String,
    /// The request as submitted.
    pub request: Value,
    /// 1 on the first delivery; more after failures or a crashed worker.
    pub attempt: u32,
    /// Appends to the run's event stream.
    pub events: EventWriter,
    /// Cancelled when the worker is stopped; the handler should wind down.
    pub cancel: CancellationToken,
}

/// Appends events to one run's event stream.
#[derive(Clone)]
pub struct EventWriter {
    link: RedisLink,
    key: String,
    max_len: usize,
    ttl: Duration,
}

impl std::fmt::Debug for EventWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventWriter")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl EventWriter {
    /// Appends one event and returns its seq.
    pub async fn append<T: Serialize + ?Sized>(&self, event: &T) -> Result<u64, QueueError> {
        let json = serde_json::to_string(event).map_err(|e| QueueError::Encoding(e.to_string()))?;
        let mut conn = self.link.conn.clone();
        let mut inv = APPEND_SCRIPT.key(&self.key);
        inv.arg(json).arg(self.max_len).arg(ms(self.ttl));
        Ok(self
            .link
            .call("append event", inv.invoke_async(&mut conn))
            .await?)
    }
}

/// A run that failed on every allowed delivery.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeadLetter {
    /// Its id in the dead-letter stream.
    pub id: String,
    pub run_id: String,
    pub request: Value,
    pub error: String,
    pub deliveries: u32,
}

/// How full the queue is, for monitoring.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct QueueStats {
    /// Runs in the queue stream: waiting for a worker or being executed.
    pub depth: u64,
    /// Of those, runs delivered to a worker and not yet finished (being
    /// executed, or waiting to be retried or reclaimed).
    pub pending: u64,
    /// Runs in the dead-letter stream.
    pub dead_letters: u64,
}

impl QueueStats {
    /// Runs no worker has taken yet.
    pub fn waiting(&self) -> u64 {
        self.depth.saturating_sub(self.pending)
    }
}

/// The events of a run, ending after its last one.
pub type RunEventStream = Pin<Box<dyn Stream<Item = Result<RunEvent, QueueError>> + Send>>;

/// Resets the run's idle time so no other worker reclaims it.
async fn keep_claim(group: &GroupConsumer<'_>, d: &Delivery) {
    match group.keep_claim(&d.entry_id).await {
        Ok(true) => {}
        Ok(false) => {
            tracing::warn!(run_id = %d.run_id, "the queue entry is gone; another worker finished this run")
        }
        Err(e) => tracing::warn!(run_id = %d.run_id, error = %e, "could not keep the claim"),
    }
}

fn now() -> String {
    Utc::now().to_rfc3339()
}

/// Ends a spawned handler when the worker future is dropped or aborted, so
/// an aborted worker stops its run as a crashed process would.
struct AbortOnDrop(JoinHandle<Result<Value, JobError>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A delivered entry.
struct Delivery {
    entry_id: String,
    run_id: String,
    request: Value,
    raw_request: String,
    deliveries: u32,
}

impl RedisRunQueue {
    /// A queue on the store's Redis and prefix.
    pub fn new(store: &RedisStore, config: RunQueueConfig) -> Self {
        Self {
            link: store.link().clone(),
            config: Arc::new(config),
        }
    }

    pub fn config(&self) -> &RunQueueConfig {
        &self.config
    }

    fn queue_key(&self) -> String {
        self.link.key("runs:queue")
    }

    fn dead_key(&self) -> String {
        self.link.key("runs:dead")
    }

    fn record_key(&self, run_id: &str) -> String {
        self.link.key(&format!("runs:{run_id}"))
    }

    fn done_key(&self, run_id: &str) -> String {
        self.link.key(&format!("runs:{run_id}:done"))
    }

    fn events_key(&self, run_id: &str) -> String {
        self.link.key(&format!("runs:{run_id}:events"))
    }

    /// An event writer for a run (workers get one in [`RunJob`]; this is
    /// for code that produces a run's events elsewhere).
    pub fn event_writer(&self, run_id: &str) -> Result<EventWriter, QueueError> {
        validate_run_id(run_id)?;
        Ok(EventWriter {
            link: self.link.clone(),
            key: self.events_key(run_id),
            max_len: self.config.events_max_len,
            ttl: self.config.events_ttl,
        })
    }

    /// Queues a run under a new id (a UUID v7) and returns the id.
    pub async fn submit<T: Serialize + ?Sized>(&self, request: &T) -> Result<String, QueueError> {
        let run_id = uuid::Uuid::now_v7().to_string();
        self.submit_with_id(&run_id, request).await?;
        Ok(run_id)
    }

    /// Queues a run under the caller's id; [`QueueError::DuplicateRun`] if
    /// that id was used before (and its record has not expired).
    pub async fn submit_with_id<T: Serialize + ?Sized>(
        &self,
        run_id: &str,
        request: &T,
    ) -> Result<(), QueueError> {
        validate_run_id(run_id)?;
        let json =
            serde_json::to_string(request).map_err(|e| QueueError::Encoding(e.to_string()))?;
        let mut conn = self.link.conn.clone();
        let mut inv = SUBMIT_SCRIPT.key(self.record_key(run_id));
        inv.key(self.queue_key())
            .arg(run_id)
            .arg(json)
            .arg(now())
            .arg(ms(self.config.result_ttl));
        let entry: Option<String> = self
            .link
            .call("submit", inv.invoke_async(&mut conn))
            .await?;
        match entry {
            Some(entry) => {
                tracing::debug!(run_id, entry, "run queued");
                Ok(())
            }
            None => Err(QueueError::DuplicateRun(run_id.to_owned())),
        }
    }

    /// The status record of a run; `None` if unknown or expired.
    pub async fn status(&self, run_id: &str) -> Result<Option<QueuedRun>, QueueError> {
        validate_run_id(run_id)?;
        let mut conn = self.link.conn.clone();
        let fields: HashMap<String, String> = self
            .link
            .call(
                "status",
                redis::cmd("HGETALL")
                    .arg(self.record_key(run_id))
                    .query_async(&mut conn),
            )
            .await?;
        if fields.is_empty() {
            return Ok(None);
        }
        parse_record(run_id, &fields).map(Some)
    }

    /// Queue depth, pending deliveries and dead letters, read at once.
    pub async fn stats(&self) -> Result<QueueStats, QueueError> {
        let mut conn = self.link.conn.clone();
        let mut inv = STATS_SCRIPT.key(self.queue_key());
        inv.key(self.dead_key()).arg(&self.config.group);
        let (depth, pending, dead_letters): (u64, u64, u64) = self
            .link
            .call("queue stats", inv.invoke_async(&mut conn))
            .await?;
        Ok(QueueStats {
            depth,
            pending,
            dead_letters,
        })
    }

    /// Up to `limit` dead-lettered runs, oldest first.
    pub async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, QueueError> {
        let mut conn = self.link.conn.clone();
        let reply: redis::streams::StreamRangeReply = self
            .link
            .call(
                "dead letters",
                redis::cmd("XRANGE")
                    .arg(self.dead_key())
                    .arg("-")
                    .arg("+")
                    .arg("COUNT")
                    .arg(limit.max(1))
                    .query_async(&mut conn),
            )
            .await?;
        Ok(reply
            .ids
            .iter()
            .map(|e| DeadLetter {
                id: e.id.clone(),
                run_id: e.get("run_id").unwrap_or_default(),
                request: e
                    .get::<String>("request")
                    .and_then(|r| serde_json::from_str(&r).ok())
                    .unwrap_or(Value::Null),
                error: e.get("error").unwrap_or_default(),
                deliveries: e.get("deliveries").unwrap_or_default(),
            })
            .collect())
    }

    /// The events of a run with seq greater than `after_seq` (0 = from the
    /// start; pass the SSE `Last-Event-ID` to resume). The stream ends after
    /// the run's last event once the run is completed or dead-lettered, or
    /// with [`QueueError::UnknownRun`] if there is no such run.
    pub fn events(&self, run_id: &str, after_seq: u64) -> RunEventStream {
        let state = EventReader {
            queue: self.clone(),
            run_id: run_id.to_owned(),
            after: after_seq,
            buffered: VecDeque::new(),
            done: false,
            checked_exists: false,
            saw_final: false,
        };
        Box::pin(futures::stream::unfold(state, |mut st| async move {
            let item = st.next().await?;
            Some((item, st))
        }))
    }

    /// Runs one worker until `cancel` fires: takes runs from the queue
    /// (new ones, and ones other workers abandoned), calls `handler` for
    /// each, one at a time, and records the outcome. Redis outages are
    /// logged and waited out. Run several workers (in one process or many)
    /// for parallelism; each joins the group as its own consumer.
    ///
    /// When `cancel` fires during a run, the handler's [`RunJob::cancel`]
    /// fires too; if it still returns a result that result is recorded,
    /// otherwise the run is left for another worker.
    pub async fn run_worker<H, F>(
        &self,
        handler: H,
        cancel: CancellationToken,
    ) -> Result<(), QueueError>
    where
        H: Fn(RunJob) -> F + Send + Sync + 'static,
        F: Future<Output = Result<Value, JobError>> + Send + 'static,
    {
        let consumer = format!("worker-{}", uuid::Uuid::new_v4().simple());
        let blocking = self.link.dedicated(self.config.block)?;
        let group = GroupConsumer {
            link: &self.link,
            stream: self.queue_key(),
            group: self.config.group.clone(),
            consumer,
        };
        let consumer = group.consumer.as_str();
        let mut next = NextEntry::new(self.config.claim_idle, false);
        let mut backoff = Backoff::new();
        let mut abandoned = false;
        tracing::info!(consumer, group = %self.config.group, "worker started");
        while !cancel.is_cancelled() {
            let step = async {
                let taken = next.take(&group, &blocking, self.config.block).await?;
                if let Some((entry, deliveries)) = taken {
                    let d = self.delivery(entry, deliveries);
                    abandoned |= !self.process(d, &group, &handler, &cancel).await?;
                }
                Ok::<(), StoreError>(())
            };
            match step.await {
                Ok(()) => backoff.reset(),
                Err(e) => {
                    next.failed(&e);
                    tracing::warn!(consumer, error = %e, backoff = ?backoff.current(), "worker cannot reach the queue; retrying");
                    if !backoff.wait(&cancel).await {
                        break;
                    }
                }
            }
        }
        if !abandoned {
            // Nothing of ours is pending: leave the group tidy.
            group.leave().await;
        }
        tracing::info!(consumer, "worker stopped");
        Ok(())
    }

    fn delivery(&self, entry: StreamId, deliveries: u32) -> Delivery {
        let raw_request: String = entry.get("request").unwrap_or_default();
        Delivery {
            run_id: entry.get("run_id").unwrap_or_default(),
            request: serde_json::from_str(&raw_request).unwrap_or(Value::Null),
            raw_request,
            entry_id: entry.id,
            deliveries,
        }
    }

    /// Executes one delivery. Returns `false` if the run was left pending
    /// because the worker was stopped.
    async fn process<H, F>(
        &self,
        d: Delivery,
        group: &GroupConsumer<'_>,
        handler: &H,
        cancel: &CancellationToken,
    ) -> Result<bool, StoreError>
    where
        H: Fn(RunJob) -> F + Send + Sync + 'static,
        F: Future<Output = Result<Value, JobError>> + Send + 'static,
    {
        let consumer = group.consumer.as_str();
        if validate_run_id(&d.run_id).is_err() {
            tracing::warn!(entry = %d.entry_id, "queue entry without a valid run id; dead-lettering");
            self.dead_letter(&d, "queue entry has no valid run_id")
                .await?;
            return Ok(true);
        }
        if d.deliveries > self.config.max_deliveries {
            let error = format!("abandoned by its worker on {} deliveries", d.deliveries - 1);
            self.dead_letter(&d, &error).await?;
            return Ok(true);
        }
        let mut conn = self.link.conn.clone();
        let mut inv = START_SCRIPT.key(self.record_key(&d.run_id));
        inv.key(self.done_key(&d.run_id))
            .key(self.queue_key())
            .arg(&self.config.group)
            .arg(&d.entry_id)
            .arg(consumer)
            .arg(d.deliveries)
            .arg(now())
            .arg(ms(self.config.result_ttl))
            .arg(&d.raw_request);
        let start: i64 = self
            .link
            .call("start run", inv.invoke_async(&mut conn))
            .await?;
        if start == 0 {
            tracing::info!(run_id = %d.run_id, "run already completed; skipping the delivery");
            return Ok(true);
        }

        let job_cancel = cancel.child_token();
        let job = RunJob {
            run_id: d.run_id.clone(),
            request: d.request.clone(),
            attempt: d.deliveries,
            events: EventWriter {
                link: self.link.clone(),
                key: self.events_key(&d.run_id),
                max_len: self.config.events_max_len,
                ttl: self.config.events_ttl,
            },
            cancel: job_cancel.clone(),
        };
        let mut task = AbortOnDrop(tokio::spawn(handler(job)));
        let mut ticker = claim_keeper(self.config.claim_idle);
        let outcome = loop {
            tokio::select! {
                joined = &mut task.0 => break joined,
                _ = ticker.tick() => keep_claim(group, &d).await,
                () = cancel.cancelled(), if !job_cancel.is_cancelled() => job_cancel.cancel(),
            }
        };
        let outcome: Result<Value, String> = match outcome {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(e.to_string()),
            Err(e) if e.is_panic() => Err("handler panicked".to_owned()),
            Err(e) => Err(format!("handler task ended: {e}")),
        };
        match outcome {
            Ok(result) => {
                let result = serde_json::to_string(&result)
                    .map_err(|e| StoreError::Backend(format!("cannot encode the result: {e}")))?;
                let mut inv = COMPLETE_SCRIPT.key(self.record_key(&d.run_id));
                inv.key(self.done_key(&d.run_id))
                    .key(self.queue_key())
                    .key(self.events_key(&d.run_id))
                    .arg(&self.config.group)
                    .arg(&d.entry_id)
                    .arg(consumer)
                    .arg(result)
                    .arg(now())
                    .arg(ms(self.config.result_ttl))
                    .arg(self.config.events_max_len)
                    .arg(ms(self.config.events_ttl));
                let won: i64 = self
                    .link
                    .call("complete run", inv.invoke_async(&mut conn))
                    .await?;
                if won == 1 {
                    tracing::info!(run_id = %d.run_id, "run completed");
                } else {
                    tracing::warn!(run_id = %d.run_id, "run was completed elsewhere meanwhile; result discarded");
                }
                Ok(true)
            }
            Err(_) if cancel.is_cancelled() => {
                tracing::info!(run_id = %d.run_id, "worker stopped mid-run; leaving the run for another worker");
                Ok(false)
            }
            Err(error) if d.deliveries >= self.config.max_deliveries => {
                tracing::warn!(run_id = %d.run_id, %error, "run failed on its last allowed delivery");
                self.dead_letter(&d, &error).await?;
                Ok(true)
            }
            Err(error) => {
                tracing::warn!(run_id = %d.run_id, %error, "run failed; it will be retried");
                let mut inv = RETRY_SCRIPT.key(self.record_key(&d.run_id));
                inv.key(self.done_key(&d.run_id)).arg(error).arg(now());
                let _: i64 = self
                    .link
                    .call("record failure", inv.invoke_async(&mut conn))
                    .await?;
                Ok(true)
            }
        }
    }

    /// Resets the entry's idle time so no other worker reclaims it.
    async fn dead_letter(&self, d: &Delivery, error: &str) -> Result<(), StoreError> {
        let run_id = if validate_run_id(&d.run_id).is_ok() {
            d.run_id.as_str()
        } else {
            // Keys for an unusable id: nothing to update but the streams.
            "invalid"
        };
        let mut conn = self.link.conn.clone();
        let mut inv = DEAD_SCRIPT.key(self.record_key(run_id));
        inv.key(self.done_key(run_id))
            .key(self.queue_key())
            .key(self.dead_key())
            .key(self.events_key(run_id))
            .arg(&self.config.group)
            .arg(&d.entry_id)
            .arg(&d.run_id)
            .arg(&d.raw_request)
            .arg(error)
            .arg(d.deliveries)
            .arg(now())
            .arg(ms(self.config.result_ttl))
            .arg(self.config.events_max_len)
            .arg(ms(self.config.events_ttl));
        let _: i64 = self
            .link
            .call("dead-letter", inv.invoke_async(&mut conn))
            .await?;
        tracing::warn!(run_id = %d.run_id, deliveries = d.deliveries, "run moved to the dead-letter stream");
        Ok(())
    }
}

fn parse_record(run_id: &str, f: &HashMap<String, String>) -> Result<QueuedRun, QueueError> {
    let bad = |what: &str| QueueError::Encoding(format!("run {run_id}: unreadable {what}"));
    let time = |k: &str| -> Result<DateTime<Utc>, QueueError> {
        f.get(k)
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc))
            .ok_or_else(|| bad(k))
    };
    let json = |k: &str| -> Result<Option<Value>, QueueError> {
        f.get(k)
            .map(|s| serde_json::from_str(s).map_err(|_| bad(k)))
            .transpose()
    };
    Ok(QueuedRun {
        run_id: run_id.to_owned(),
        status: f
            .get("status")
            .and_then(|s| QueuedRunStatus::parse(s))
            .ok_or_else(|| bad("status"))?,
        request: json("request")?.unwrap_or(Value::Null),
        result: json("result")?,
        error: f.get("error").cloned(),
        attempts: f
            .get("attempts")
            .and_then(|a| a.parse().ok())
            .unwrap_or_default(),
        worker: f.get("worker").cloned(),
        submitted_at: time("submitted_at")?,
        updated_at: time("updated_at")?,
    })
}

/// Polls a run's event stream.
struct EventReader {
    queue: RedisRunQueue,
    run_id: String,
    after: u64,
    buffered: VecDeque<RunEvent>,
    done: bool,
    checked_exists: bool,
    saw_final: bool,
}

impl EventReader {
    async fn next(&mut self) -> Option<Result<RunEvent, QueueError>> {
        loop {
            if let Some(ev) = self.buffered.pop_front() {
                return Some(Ok(ev));
            }
            if self.done {
                return None;
            }
            match self.fetch().await {
                Ok(true) => {}
                Ok(false) => tokio::time::sleep(self.queue.config.event_poll).await,
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
    }

    /// Reads what is new; `Ok(false)` when there was nothing.
    async fn fetch(&mut self) -> Result<bool, QueueError> {
        if !self.checked_exists {
            validate_run_id(&self.run_id)?;
        }
        let q = &self.queue;
        let key = q.events_key(&self.run_id);
        let mut conn = q.link.conn.clone();
        let reply: Option<StreamReadReply> = q
            .link
            .call(
                "read events",
                redis::cmd("XREAD")
                    .arg("COUNT")
                    .arg(256)
                    .arg("STREAMS")
                    .arg(&key)
                    .arg(format!("{}-1", self.after))
                    .query_async(&mut conn),
            )
            .await?;
        let entries = reply
            .and_then(|r| r.keys.into_iter().next())
            .map(|k| k.ids)
            .unwrap_or_default();
        if !entries.is_empty() {
            self.checked_exists = true;
            for e in entries {
                let seq =
                    e.id.split('-')
                        .next()
                        .and_then(|s| s.parse().ok())
                        .unwrap_or(self.after + 1);
                self.after = seq;
                if e.contains_key("end") {
                    self.done = true;
                    break;
                }
                let data = match e.map.get("event") {
                    Some(RedisValue::BulkString(b)) => serde_json::from_slice(b)
                        .map_err(|err| QueueError::Encoding(err.to_string()))?,
                    _ => Value::Null,
                };
                self.buffered.push_back(RunEvent { seq, data });
            }
            return Ok(true);
        }
        // Nothing new: stop if the run is over (its end entry may have been
        // trimmed or expired) or was never submitted.
        if self.saw_final {
            self.done = true;
            return Ok(true);
        }
        match q.status(&self.run_id).await? {
            Some(run) if run.status.is_final() => {
                // Events may have landed between the read and the status
                // check: read once more before ending.
                self.saw_final = true;
                Ok(true)
            }
            Some(_) => {
                self.checked_exists = true;
                Ok(false)
            }
            None if self.checked_exists => {
                self.done = true;
                Ok(true)
            }
            None => Err(QueueError::UnknownRun(self.run_id.clone())),
        }
    }
}
