//! [`RedisStore`]: sessions in Redis, shared by every process that points at it.
//!
//! This is the store for running several instances as one service: any
//! instance can continue any session, and no write is lost when two of them
//! append to the same session at once.
//!
//! ```no_run
//! use std::{sync::Arc, time::Duration};
//! use orchestra_core::{Orchestrator, RedisStore, RedisStoreConfig};
//! # async fn demo() -> Result<(), orchestra_core::StoreError> {
//! let store = RedisStore::connect(
//!     "redis://127.0.0.1:6379",
//!     RedisStoreConfig::default().prefix("myapp").ttl(Some(Duration::from_secs(3600))),
//! )
//! .await?;
//! let orch = Orchestrator::builder().store(Arc::new(store)).build();
//! # let _ = orch; Ok(()) }
//! ```
//!
//! # Key layout
//!
//! | key | type | holds |
//! |---|---|---|
//! | `{prefix}:session:{id}` | hash | `v` = version, `data` = the session as JSON, `sum` = its [`SessionSummary`] as JSON; expires after the TTL, refreshed on every write |
//! | `{prefix}:run:{run_id}` | string | the id of the session holding the run, so runs can be found by id (resume, `GET /runs/{run_id}`); set by every session write while the run is running, and by the writes of its session while it is the session's latest run; same TTL as sessions |
//! | `{prefix}:checkpoint:{run_id}` | string | the latest checkpoint of a run in progress (its record as JSON), kept apart from the session so checkpoints never contend with other writers; deleted when the run's record is final |
//! | `{prefix}:scratch:{id}` | hash | a large session's new hash, staged by its write and moved into place by the write's script in the same transaction; only seen after a write failed half-way, and then expires within a minute |
//! | `{prefix}:sessions` | sorted set | member = session id, score = `updated_at` in Unix milliseconds: the listing index |
//!
//! Every write goes through one Lua script that checks the version, writes
//! the hash (or, for a large session, moves it into place from a scratch
//! key written in the same transaction), sets its expiry and updates the
//! index, so a reader never sees a
//! session without its index entry or a half-written value, and a stale
//! writer gets [`StoreError::Conflict`] instead of overwriting newer messages.
//! Index entries of expired sessions are removed by
//! [`list`](SessionStore::list) when it meets them and by
//! [`RedisStore::sweep_expired`], which a long-running process should call
//! periodically.
//!
//! When Redis cannot be reached every call fails within about
//! `connect_timeout + response_timeout` with [`StoreError::Unavailable`];
//! the connection is re-established in the background and the same store
//! object works again once Redis is back.

use std::{
    future::Future,
    sync::{
        Arc, LazyLock,
        atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering},
    },
    time::Duration,
};

use async_trait::async_trait;
use redis::{
    AsyncCommands, Client, ErrorKind, RedisError, Script, ServerErrorKind,
    aio::{ConnectionManager, ConnectionManagerConfig},
};
use serde::{Serialize, ser::SerializeStruct};

use super::{Page, Session, SessionStore, SessionSummary};
use crate::error::StoreError;
use crate::run::RunStatus;
use crate::timestamp::Timestamp;

/// Where and how a [`RedisStore`] keeps sessions.
#[derive(Debug, Clone)]
pub struct RedisStoreConfig {
    /// Prepended to every key, so several applications can share one Redis.
    /// On Redis Cluster use a hash tag such as `{orchestra}` so that the keys
    /// one script touches live in one slot.
    pub prefix: String,
    /// Idle time after which a session is dropped, refreshed on every write;
    /// `None` keeps sessions until deleted.
    pub ttl: Option<Duration>,
    /// Limit on establishing a TCP connection to Redis.
    pub connect_timeout: Duration,
    /// Limit on waiting for one reply.
    pub response_timeout: Duration,
    /// Reconnection attempts (with backoff) behind one failed call before it
    /// reports [`StoreError::Unavailable`]; later calls start new attempts.
    pub reconnect_attempts: usize,
    /// How often the store drops the listing-index entries of expired
    /// sessions ([`RedisStore::sweep_expired`], started in the background by
    /// a write once this much time has passed since the last sweep); `None`
    /// leaves it to listings and to the application.
    pub sweep_interval: Option<Duration>,
}

impl Default for RedisStoreConfig {
    fn default() -> Self {
        Self {
            prefix: "orchestra".to_owned(),
            ttl: Some(Duration::from_secs(24 * 3600)),
            connect_timeout: Duration::from_secs(1),
            response_timeout: Duration::from_secs(2),
            reconnect_attempts: 2,
            sweep_interval: Some(Duration::from_secs(60)),
        }
    }
}

impl RedisStoreConfig {
    #[must_use]
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    #[must_use]
    pub fn ttl(mut self, ttl: Option<Duration>) -> Self {
        self.ttl = ttl;
        self
    }

    #[must_use]
    pub fn sweep_interval(mut self, every: Option<Duration>) -> Self {
        self.sweep_interval = every;
        self
    }

    #[must_use]
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    #[must_use]
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// The longest one call may take before it is reported as unavailable.
    pub(crate) fn op_timeout(&self) -> Duration {
        self.connect_timeout + self.response_timeout
    }

    fn manager_config(&self, response_timeout: Duration) -> ConnectionManagerConfig {
        ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.connect_timeout))
            .set_response_timeout(Some(response_timeout))
            .set_number_of_retries(self.reconnect_attempts)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(500))
    }
}

/// A Redis connection shared by the store, the agent registry and the run
/// queue: one multiplexed, self-reconnecting connection plus the settings to
/// open dedicated ones for blocking reads.
#[derive(Clone)]
pub(crate) struct RedisLink {
    pub(crate) client: Client,
    pub(crate) conn: ConnectionManager,
    pub(crate) config: Arc<RedisStoreConfig>,
    /// Whether the last call found Redis unreachable.
    pub(crate) unreachable: Arc<AtomicBool>,
}

impl RedisLink {
    /// `{prefix}:{suffix}`.
    pub(crate) fn key(&self, suffix: &str) -> String {
        format!("{}:{suffix}", self.config.prefix)
    }

    /// Runs one Redis call with the configured deadline, mapping failures.
    pub(crate) async fn call<T, F>(&self, what: &'static str, fut: F) -> Result<T, StoreError>
    where
        F: Future<Output = Result<T, RedisError>>,
    {
        let result = with_deadline(self.config.op_timeout(), what, fut).await;
        let unreachable = matches!(result, Err(StoreError::Unavailable(_)));
        if unreachable != self.unreachable.load(Ordering::Relaxed) {
            self.unreachable.store(unreachable, Ordering::Relaxed);
        }
        result
    }

    /// Sends one command on the shared connection (see [`call`](Self::call)).
    pub(crate) async fn query<T: redis::FromRedisValue>(
        &self,
        what: &'static str,
        cmd: &redis::Cmd,
    ) -> Result<T, StoreError> {
        let mut conn = self.conn.clone();
        self.call(what, cmd.query_async(&mut conn)).await
    }

    /// Runs `cmd`, an [`evalsha`] of `script` (see [`with_script`](Self::with_script)).
    pub(crate) async fn eval<T: redis::FromRedisValue>(
        &self,
        what: &'static str,
        script: &Script,
        cmd: &redis::Cmd,
    ) -> Result<T, StoreError> {
        self.with_script(what, script, |mut conn| async move {
            cmd.query_async(&mut conn).await
        })
        .await
    }

    /// Runs the transaction `tx`, whose last command is an [`evalsha`] of
    /// `script`, and answers that command's reply (see
    /// [`with_script`](Self::with_script)). The other commands of `tx` are
    /// ignored and must be safe to repeat.
    pub(crate) async fn transact<T: redis::FromRedisValue>(
        &self,
        what: &'static str,
        script: &Script,
        tx: &mut redis::Pipeline,
    ) -> Result<T, StoreError> {
        tx.ignore_errors();
        let tx = &*tx;
        self.with_script(what, script, |mut conn| async move {
            let mut replies: Vec<redis::RedisResult<T>> = tx.query_async(&mut conn).await?;
            replies.pop().unwrap_or_else(|| {
                Err(RedisError::from((
                    ErrorKind::UnexpectedReturnType,
                    "a transaction answered nothing",
                )))
            })
        })
        .await
    }

    /// Runs `attempt`, which sends a script by its hash, on the shared
    /// connection (see [`call`](Self::call)); if Redis does not know the
    /// script (a restart, `SCRIPT FLUSH`), loads it and runs `attempt`
    /// once more.
    async fn with_script<T, F, Fut>(
        &self,
        what: &'static str,
        script: &Script,
        attempt: F,
    ) -> Result<T, StoreError>
    where
        F: Fn(ConnectionManager) -> Fut,
        Fut: Future<Output = Result<T, RedisError>>,
    {
        self.call(what, async {
            match attempt(self.conn.clone()).await {
                Err(e) if e.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                    script.load_async(&mut self.conn.clone()).await?;
                    attempt(self.conn.clone()).await
                }
                other => other,
            }
        })
        .await
    }

    /// [`call`](Self::call) with a deadline of the caller's choosing, for
    /// commands that wait on the server (blocking reads).
    pub(crate) async fn call_within<T, F>(
        &self,
        limit: Duration,
        what: &'static str,
        fut: F,
    ) -> Result<T, StoreError>
    where
        F: Future<Output = Result<T, RedisError>>,
    {
        with_deadline(limit, what, fut).await
    }

    /// A connection of its own, for commands that block (XREADGROUP BLOCK)
    /// and so must not hold up the shared multiplexed connection.
    pub(crate) fn dedicated(&self, block: Duration) -> Result<ConnectionManager, StoreError> {
        let cfg = self
            .config
            .manager_config(self.config.response_timeout + block);
        ConnectionManager::new_lazy_with_config(self.client.clone(), cfg).map_err(map_redis_error)
    }
}

/// `EVALSHA` of `script` with `keys` keys, sized for `args` arguments of
/// about `bytes` bytes in all; the keys and then the arguments are added to
/// it. Unlike a `ScriptInvocation`, which collects them and copies them into
/// its command, each argument (a whole session, for a write) is copied once.
pub(crate) fn evalsha(script: &Script, keys: usize, args: usize, bytes: usize) -> redis::Cmd {
    let mut cmd = redis::Cmd::with_capacity(3 + keys + args, 64 + bytes);
    cmd.arg("EVALSHA").arg(script.get_hash()).arg(keys);
    cmd
}

async fn with_deadline<T, F>(limit: Duration, what: &'static str, fut: F) -> Result<T, StoreError>
where
    F: Future<Output = Result<T, RedisError>>,
{
    match tokio::time::timeout(limit, fut).await {
        Ok(r) => r.map_err(map_redis_error),
        Err(_) => Err(StoreError::Unavailable(format!(
            "redis {what} timed out after {limit:?}"
        ))),
    }
}

/// Connection trouble becomes [`StoreError::Unavailable`] (retry later, HTTP
/// 503); anything Redis itself rejected becomes [`StoreError::Backend`].
pub(crate) fn map_redis_error(e: RedisError) -> StoreError {
    let unavailable = e.is_io_error()
        || e.is_timeout()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_cluster_error()
        || matches!(
            e.kind(),
            ErrorKind::Server(
                ServerErrorKind::BusyLoading
                    | ServerErrorKind::MasterDown
                    | ServerErrorKind::ReadOnly
                    | ServerErrorKind::TryAgain
            )
        );
    if unavailable {
        StoreError::Unavailable(e.to_string())
    } else {
        StoreError::Backend(e.to_string())
    }
}

/// A session write's script, checking the version and then writing the
/// session hash with `$write`; both forms then set its expiry, update the
/// index and point the run keys in `KEYS[4..]` (the session's running runs
/// and its latest run) at the session, all or nothing. `KEYS[1..3]`: the session, the index,
/// the scratch key; `ARGV[1..5]`: the expected version ("" = the session
/// must not exist), the new one, the TTL in ms ("0" = none), the index
/// score, the session id. Returns `{1, new_version}` or `{0, found}`
/// (`found` = "" when there is no session).
macro_rules! put_script {
    ($on_conflict:literal, $write:literal) => {
        concat!(
            "local cur = redis.call('HGET', KEYS[1], 'v')\n",
            "if (ARGV[1] == '' and cur) or (ARGV[1] ~= '' and cur ~= ARGV[1]) then\n",
            $on_conflict,
            "  return {0, cur or ''}\n",
            "end\n",
            $write,
            "if ARGV[3] == '0' then\n",
            "  redis.call('PERSIST', KEYS[1])\n",
            "else\n",
            "  redis.call('PEXPIRE', KEYS[1], ARGV[3])\n",
            "end\n",
            "redis.call('ZADD', KEYS[2], ARGV[4], ARGV[5])\n",
            "for i = 4, #KEYS do\n",
            "  if ARGV[3] == '0' then\n",
            "    redis.call('SET', KEYS[i], ARGV[5])\n",
            "  else\n",
            "    redis.call('SET', KEYS[i], ARGV[5], 'PX', ARGV[3])\n",
            "  end\n",
            "end\n",
            "return {1, ARGV[2]}\n",
        )
    };
}

/// The write of a small session, which the script receives as `ARGV[6]`
/// (with its summary as `ARGV[7]`).
static PUT_SCRIPT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(put_script!(
        "",
        "redis.call('HSET', KEYS[1], 'v', ARGV[2], 'data', ARGV[6], 'sum', ARGV[7])\n"
    ))
});

/// The write of a large session: the same transaction has staged the new
/// hash under the scratch key, and the script moves it into place (or
/// drops it on a conflict). Every string that enters Lua is hashed byte by
/// byte, about 1.5 ns per byte in Redis's single thread (70 µs for a 50 KB
/// session), while staging costs a few fixed microseconds (the
/// transaction, the scratch write, the rename), so sessions from
/// [`STAGE_FROM_BYTES`] on never pass through Lua.
static PUT_STAGED_SCRIPT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(put_script!(
        "  redis.call('DEL', KEYS[3])\n",
        "redis.call('RENAME', KEYS[3], KEYS[1])\n"
    ))
});

/// The size of session JSON from which a write stages it (see
/// [`PUT_STAGED_SCRIPT`]); measured break-even of both forms is around
/// 4–6 KB.
const STAGE_FROM_BYTES: usize = 8 * 1024;

/// How long a scratch key can outlive a write whose script never ran (it
/// is normally renamed or deleted in the same transaction).
const SCRATCH_TTL_MS: u64 = 60_000;

/// Deletes a session and its index entry together.
static DELETE_SCRIPT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local n = redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return n
",
    )
});

/// Removes index entries whose session key no longer exists. Checked inside
/// the script so a session re-created meanwhile keeps its entry.
static PRUNE_SCRIPT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local removed = 0
for i = 1, #ARGV do
  if redis.call('EXISTS', KEYS[i + 1]) == 0 then
    removed = removed + redis.call('ZREM', KEYS[1], ARGV[i])
  end
end
return removed
",
    )
});

/// A session serialized as it is stored at `version`, without copying it
/// to change its version field (a session is the largest thing a run writes).
struct AtVersion<'a> {
    session: &'a Session,
    version: u64,
}

impl Serialize for AtVersion<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // Destructured so that a new field of `Session` fails to compile here.
        let Session {
            id,
            messages,
            state,
            runs,
            metadata,
            created_at,
            updated_at,
            version: _,
        } = self.session;
        let mut s = serializer.serialize_struct("Session", 8)?;
        s.serialize_field("id", id)?;
        s.serialize_field("messages", messages)?;
        s.serialize_field("state", state)?;
        s.serialize_field("runs", runs)?;
        s.serialize_field("metadata", metadata)?;
        s.serialize_field("created_at", &Timestamp(created_at))?;
        s.serialize_field("updated_at", &Timestamp(updated_at))?;
        s.serialize_field("version", &self.version)?;
        s.end()
    }
}

/// How many times `list` re-reads a page after pruning expired entries.
const LIST_PASSES: usize = 4;

/// Sessions in Redis: one hash per session with a TTL, a sorted-set index,
/// conditional writes in a Lua script. Cheap to clone; clones share the
/// connection.
#[derive(Clone)]
pub struct RedisStore {
    link: RedisLink,
    /// Size of the last session written, to serialize the next one into a
    /// buffer that need not grow (a run's sessions are alike in size).
    last_size: Arc<AtomicUsize>,
    /// When the last index sweep started (Unix ms).
    last_sweep: Arc<AtomicI64>,
}

/// Index entries checked per Redis call by the background sweep.
const SWEEP_BATCH: usize = 500;

/// Largest buffer reserved up front for a session's JSON.
const MAX_SIZE_HINT: usize = 1 << 20;

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.link.config.prefix)
            .field("ttl", &self.link.config.ttl)
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// Connects and checks that Redis answers. Fails with
    /// [`StoreError::Unavailable`] if it does not, and with
    /// [`StoreError::Backend`] for a malformed URL or prefix.
    pub async fn connect(url: &str, config: RedisStoreConfig) -> Result<Self, StoreError> {
        let store = Self::connect_lazy(url, config)?;
        store.ping().await?;
        Ok(store)
    }

    /// Like [`connect`](Self::connect) but does not wait for Redis: the
    /// connection is made on first use, so a service can start before Redis
    /// does. Must be called within a Tokio runtime.
    pub fn connect_lazy(url: &str, config: RedisStoreConfig) -> Result<Self, StoreError> {
        if config.prefix.is_empty() || config.prefix.chars().any(char::is_whitespace) {
            return Err(StoreError::Backend(format!(
                "invalid redis key prefix {:?}: must be non-empty without whitespace",
                config.prefix
            )));
        }
        let client = Client::open(url)
            .map_err(|e| StoreError::Backend(format!("invalid redis url: {e}")))?;
        let manager = ConnectionManager::new_lazy_with_config(
            client.clone(),
            config.manager_config(config.response_timeout),
        )
        .map_err(map_redis_error)?;
        Ok(Self {
            link: RedisLink {
                client,
                conn: manager,
                config: Arc::new(config),
                unreachable: Arc::new(AtomicBool::new(false)),
            },
            last_size: Arc::new(AtomicUsize::new(0)),
            last_sweep: Arc::new(AtomicI64::new(chrono::Utc::now().timestamp_millis())),
        })
    }

    pub fn config(&self) -> &RedisStoreConfig {
        &self.link.config
    }

    pub(crate) fn link(&self) -> &RedisLink {
        &self.link
    }

    fn session_key(&self, id: &str) -> String {
        self.link.key(&format!("session:{id}"))
    }

    /// Where a write stages the new session hash before its script moves
    /// it into place (same hash slot as the session under a hash-tagged
    /// prefix).
    fn scratch_key(&self, id: &str) -> String {
        self.link.key(&format!("scratch:{id}"))
    }

    fn index_key(&self) -> String {
        self.link.key("sessions")
    }

    fn run_key(&self, run_id: &str) -> String {
        self.link.key(&format!("run:{run_id}"))
    }

    /// Checks up to `batch` of the least recently updated index entries and
    /// removes those whose session has expired; returns how many it removed.
    /// `list` prunes what it reads; this keeps the tail of the index short
    /// when nobody lists.
    pub async fn sweep_index(&self, batch: usize) -> Result<usize, StoreError> {
        if batch == 0 {
            return Ok(0);
        }
        let mut conn = self.link.conn.clone();
        let index = self.index_key();
        let ids: Vec<String> = self
            .link
            .call("sweep", conn.zrange(&index, 0, batch as isize - 1))
            .await?;
        self.prune(&ids).await
    }

    /// Removes the index entries of every session that has expired, and
    /// answers how many it removed. Without it (or listings that meet them)
    /// the index of a store that nobody lists would keep one entry per
    /// session ever written; writes start it in the background every
    /// [`RedisStoreConfig::sweep_interval`].
    ///
    /// Only entries not updated for a whole TTL can have expired, so it
    /// reads just those, `batch` at a time, and checks each before removing
    /// it; a store without a TTL has nothing to sweep.
    pub async fn sweep_expired(&self, batch: usize) -> Result<usize, StoreError> {
        let Some(ttl) = self.link.config.ttl else {
            return Ok(0);
        };
        let batch = batch.max(1);
        let cutoff = chrono::Utc::now().timestamp_millis() - ttl.as_millis() as i64;
        let index = self.index_key();
        let (mut skipped, mut removed) = (0, 0);
        loop {
            let mut conn = self.link.conn.clone();
            let ids: Vec<String> = self
                .link
                .call(
                    "sweep",
                    conn.zrangebyscore_limit(&index, "-inf", cutoff, skipped, batch as isize),
                )
                .await?;
            let gone = self.prune(&ids).await?;
            removed += gone;
            // Entries still alive (written with a longer TTL, or persisted)
            // stay in the range: step over them.
            skipped += (ids.len() - gone) as isize;
            if ids.len() < batch {
                return Ok(removed);
            }
        }
    }

    /// Starts [`sweep_expired`](Self::sweep_expired) in the background if
    /// the sweep interval has passed since the last one; `now_ms` is the
    /// caller's clock reading. Of several writers at that moment, one wins.
    fn sweep_if_due(&self, now_ms: i64) {
        let Some(every) = self.link.config.sweep_interval else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let last = self.last_sweep.load(Ordering::Relaxed);
        if now_ms.saturating_sub(last) < every.as_millis() as i64
            || self
                .last_sweep
                .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        let store = self.clone();
        runtime.spawn(async move {
            match store.sweep_expired(SWEEP_BATCH).await {
                Ok(0) => {}
                Ok(removed) => tracing::debug!(removed, "swept expired sessions from the index"),
                Err(e) => tracing::warn!(error = %e, "could not sweep the session index"),
            }
        });
    }

    async fn prune(&self, ids: &[String]) -> Result<usize, StoreError> {
        if ids.is_empty() {
            return Ok(0);
        }
        let mut conn = self.link.conn.clone();
        let mut inv = PRUNE_SCRIPT.key(self.index_key());
        for id in ids {
            inv.key(self.session_key(id));
        }
        for id in ids {
            inv.arg(id);
        }
        self.link
            .call("prune", inv.invoke_async::<usize>(&mut conn))
            .await
    }
}

fn corrupt(id: &str, what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("session {id}: {what}"))
}

#[async_trait]
impl SessionStore for RedisStore {
    fn is_durable(&self) -> bool {
        true
    }

    /// Every write points the session's running runs and its latest run at
    /// it, in the same script: one command per run start instead of two.
    fn indexes_running_runs(&self) -> bool {
        true
    }

    fn unreachable_hint(&self) -> bool {
        self.link.unreachable.load(Ordering::Relaxed)
    }

    async fn index_run(&self, run_id: &str, session_id: &str) -> Result<(), StoreError> {
        let mut conn = self.link.conn.clone();
        let key = self.run_key(run_id);
        let mut cmd = redis::cmd("SET");
        cmd.arg(&key).arg(session_id);
        if let Some(ttl) = self.link.config.ttl {
            cmd.arg("PX").arg(ttl.as_millis().max(1) as u64);
        }
        self.link
            .call("index_run", cmd.query_async::<()>(&mut conn))
            .await
    }

    async fn find_run(&self, run_id: &str) -> Result<Option<String>, StoreError> {
        let mut conn = self.link.conn.clone();
        let key = self.run_key(run_id);
        self.link.call("find_run", conn.get(&key)).await
    }

    async fn save_checkpoint(&self, run: &crate::run::RunResult) -> Result<(), StoreError> {
        let data = serde_json::to_string(run)
            .map_err(|e| StoreError::Backend(format!("cannot serialize a checkpoint: {e}")))?;
        let mut conn = self.link.conn.clone();
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.link.key(&format!("checkpoint:{}", run.run_id)))
            .arg(data);
        if let Some(ttl) = self.link.config.ttl {
            cmd.arg("PX").arg(ttl.as_millis().max(1) as u64);
        }
        self.link
            .call("save_checkpoint", cmd.query_async::<()>(&mut conn))
            .await
    }

    async fn load_checkpoint(
        &self,
        run_id: &str,
    ) -> Result<Option<crate::run::RunResult>, StoreError> {
        let mut conn = self.link.conn.clone();
        let key = self.link.key(&format!("checkpoint:{run_id}"));
        let data: Option<String> = self.link.call("load_checkpoint", conn.get(&key)).await?;
        data.map(|d| {
            serde_json::from_str(&d)
                .map_err(|e| StoreError::Corrupt(format!("checkpoint of run {run_id}: {e}")))
        })
        .transpose()
    }

    async fn clear_checkpoint(&self, run_id: &str) -> Result<(), StoreError> {
        let mut conn = self.link.conn.clone();
        let key = self.link.key(&format!("checkpoint:{run_id}"));
        self.link
            .call("clear_checkpoint", conn.del::<_, ()>(&key))
            .await
    }

    async fn get(&self, id: &str) -> Result<Option<Session>, StoreError> {
        let mut conn = self.link.conn.clone();
        let key = self.session_key(id);
        let (version, data): (Option<String>, Option<String>) = self
            .link
            .call("get", conn.hmget(&key, &["v", "data"]))
            .await?;
        let Some(data) = data else {
            return Ok(None);
        };
        let mut session: Session = serde_json::from_str(&data).map_err(|e| corrupt(id, e))?;
        if let Some(v) = version {
            session.version = v
                .parse()
                .map_err(|_| corrupt(id, format!("version {v:?} is not a number")))?;
        }
        Ok(Some(session))
    }

    async fn put(&self, session: &Session, expected: Option<u64>) -> Result<u64, StoreError> {
        let version = expected.unwrap_or(0) + 1;
        let hint = self.last_size.load(Ordering::Relaxed).min(MAX_SIZE_HINT);
        let mut data = Vec::with_capacity(hint.max(1024));
        serde_json::to_writer(&mut data, &AtVersion { session, version })
            .map_err(|e| StoreError::Backend(format!("cannot serialize session: {e}")))?;
        self.last_size
            .store(data.len() + data.len() / 8, Ordering::Relaxed);
        let summary = SessionSummary {
            version,
            ..session.summary()
        };
        let summary = serde_json::to_string(&summary)
            .map_err(|e| StoreError::Backend(format!("cannot serialize summary: {e}")))?;
        let ttl_ms = self
            .link
            .config
            .ttl
            .map_or(0, |t| t.as_millis().max(1) as u64);
        let score = session.updated_at.timestamp_millis();
        let scratch = self.scratch_key(&session.id);
        // The running runs, and the latest run even when it has ended (a
        // run without a start record is first written ended).
        let latest = session
            .runs
            .last()
            .filter(|r| r.status != RunStatus::Running);
        let running = session
            .runs
            .iter()
            .filter(|r| r.status == RunStatus::Running)
            .chain(latest);
        let keys = 3 + running.clone().count();
        let staged = data.len() >= STAGE_FROM_BYTES;
        let (script, inline) = if staged {
            (&*PUT_STAGED_SCRIPT, 0)
        } else {
            (&*PUT_SCRIPT, data.len() + summary.len())
        };
        let mut guard = evalsha(script, keys, 7, inline + 128 * keys);
        guard
            .arg(self.session_key(&session.id))
            .arg(self.index_key())
            .arg(&scratch);
        for run in running {
            guard.arg(self.run_key(&run.run_id));
        }
        guard
            .arg(expected.map(|v| v.to_string()).unwrap_or_default())
            .arg(version)
            .arg(ttl_ms)
            .arg(score)
            .arg(&session.id);
        let (ok, found): (i64, String) = if staged {
            let mut stage =
                redis::Cmd::with_capacity(8, 64 + scratch.len() + data.len() + summary.len());
            stage
                .arg("HSET")
                .arg(&scratch)
                .arg("v")
                .arg(version)
                .arg("data")
                .arg(data)
                .arg("sum")
                .arg(summary);
            let mut tx = redis::pipe();
            tx.atomic()
                .add_command(stage)
                .ignore()
                .cmd("PEXPIRE")
                .arg(&scratch)
                .arg(SCRATCH_TTL_MS)
                .ignore()
                .add_command(guard);
            self.link.transact("put", script, &mut tx).await?
        } else {
            guard.arg(data).arg(summary);
            self.link.eval("put", script, &guard).await?
        };
        if ok == 1 {
            self.sweep_if_due(score);
            return Ok(version);
        }
        Err(StoreError::Conflict {
            id: session.id.clone(),
            expected,
            found: found.parse().ok(),
        })
    }

    async fn delete(&self, id: &str) -> Result<bool, StoreError> {
        let mut conn = self.link.conn.clone();
        let mut inv = DELETE_SCRIPT.key(self.session_key(id));
        inv.key(self.index_key()).arg(id);
        let n: i64 = self
            .link
            .call("delete", inv.invoke_async(&mut conn))
            .await?;
        Ok(n > 0)
    }

    async fn list(&self, page: Page) -> Result<Vec<SessionSummary>, StoreError> {
        if page.limit == 0 {
            return Ok(Vec::new());
        }
        let index = self.index_key();
        let start = page.offset as isize;
        let stop = page.offset.saturating_add(page.limit - 1) as isize;
        let mut out = Vec::new();
        for pass in 0..LIST_PASSES {
            let mut conn = self.link.conn.clone();
            let ids: Vec<String> = self
                .link
                .call("list", conn.zrevrange(&index, start, stop))
                .await?;
            if ids.is_empty() {
                return Ok(Vec::new());
            }
            let mut pipe = redis::pipe();
            for id in &ids {
                pipe.hget(self.session_key(id), "sum");
            }
            let sums: Vec<Option<String>> =
                self.link.call("list", pipe.query_async(&mut conn)).await?;
            out.clear();
            let mut dead = Vec::new();
            for (id, sum) in ids.into_iter().zip(sums) {
                match sum {
                    Some(json) => {
                        out.push(serde_json::from_str(&json).map_err(|e| corrupt(&id, e))?)
                    }
                    None => dead.push(id),
                }
            }
            if dead.is_empty() {
                return Ok(out);
            }
            let removed = self.prune(&dead).await?;
            tracing::debug!(removed, pass, "pruned expired sessions from the index");
        }
        // The page kept shrinking under expiries; return what is live now.
        Ok(out)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let mut conn = self.link.conn.clone();
        let _: String = self
            .link
            .call("ping", redis::cmd("PING").query_async(&mut conn))
            .await?;
        Ok(())
    }

    fn kind(&self) -> &'static str {
        "redis"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Message, RunResult};

    #[test]
    fn a_session_at_a_version_serializes_like_the_session_with_that_version() {
        let mut session = Session::new("s1");
        session.messages.push(Message::user("hello"));
        session.runs.push(RunResult::default());
        session.metadata.insert("k".into(), 1.into());
        session.version = 3;
        let view = serde_json::to_value(AtVersion {
            session: &session,
            version: 4,
        })
        .unwrap();
        let mut copy = session.clone();
        copy.version = 4;
        assert_eq!(view, serde_json::to_value(&copy).unwrap());
        let back: Session = serde_json::from_value(view).unwrap();
        assert_eq!(back.version, 4);
    }
}
