//! [`RedisAgentRegistry`]: agent registrations in Redis with a heartbeat TTL.
//!
//! # Key layout
//!
//! | key | type | holds |
//! |---|---|---|
//! | `{prefix}:agents:{name}` | string | the [`RegisteredAgent`] as JSON, `PX` = heartbeat TTL |
//! | `{prefix}:agents` | sorted set | member = agent name, score = expiry in Unix ms (Redis clock) |
//!
//! A service registers and then re-registers every TTL/3 ([`Heartbeat`]).
//! If it stops, its key expires and `list` drops it. Scores come from the
//! Redis server's clock, so instances with skewed clocks agree on who is
//! alive. Any process can register on behalf of a service by writing the
//! same two keys (the JSON shape is [`RegisteredAgent`]).
//!
//! ```no_run
//! use std::time::Duration;
//! use orchestra_core::{RedisStore, RedisStoreConfig};
//! use orchestra_core::discovery::{AgentRegistration, Heartbeat, RedisAgentRegistry};
//! use tokio_util::sync::CancellationToken;
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let store = RedisStore::connect("redis://127.0.0.1:6379", RedisStoreConfig::default()).await?;
//! let registry = RedisAgentRegistry::new(&store, Duration::from_secs(15));
//! let me = AgentRegistration::new("search", "http", "http://10.0.0.7:9000/invoke");
//! let stop = CancellationToken::new();
//! let beat = Heartbeat::start(registry.clone(), me, stop.clone()).await?;
//! // ... serve ...
//! stop.cancel();
//! beat.stopped().await; // deregistered
//! # Ok(()) }
//! ```

use std::{sync::LazyLock, time::Duration};

use chrono::Utc;
use redis::Script;
use tokio_util::sync::CancellationToken;

use super::{
    AgentRegistration, DiscoveryError, RegisteredAgent,
    renewal::{Renew, Renewal},
};
use crate::session::{RedisLink, RedisStore};

/// Writes the registration with its TTL and indexes it by expiry, using the
/// Redis clock.
static REGISTER_SCRIPT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[2]), ARGV[3])
return now
",
    )
});

/// Drops expired index entries and returns the live names.
static LIVE_SCRIPT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
return redis.call('ZRANGE', KEYS[1], 0, -1)
",
    )
});

static DEREGISTER_SCRIPT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local n = redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return n
",
    )
});

/// Shortest heartbeat TTL accepted: below it the heartbeat interval would
/// be shorter than a Redis round trip under load.
const MIN_TTL: Duration = Duration::from_millis(300);

/// Agent registrations in Redis. Cheap to clone; shares the store's
/// connection and key prefix.
#[derive(Clone)]
pub struct RedisAgentRegistry {
    link: RedisLink,
    ttl: Duration,
}

impl std::fmt::Debug for RedisAgentRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisAgentRegistry")
            .field("prefix", &self.link.config.prefix)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl RedisAgentRegistry {
    /// A registry on the store's Redis and prefix; registrations live for
    /// `ttl` after their last heartbeat (at least 300 ms).
    pub fn new(store: &RedisStore, ttl: Duration) -> Self {
        Self {
            link: store.link().clone(),
            ttl: ttl.max(MIN_TTL),
        }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    fn agent_key(&self, name: &str) -> String {
        self.link.key(&format!("agents:{name}"))
    }

    fn index_key(&self) -> String {
        self.link.key("agents")
    }

    /// Registers (or refreshes) an agent for one TTL.
    pub async fn register(&self, registration: &AgentRegistration) -> Result<(), DiscoveryError> {
        registration.validate()?;
        let entry = RegisteredAgent {
            registration: registration.clone(),
            last_heartbeat: Utc::now(),
        };
        let json = serde_json::to_string(&entry)
            .map_err(|e| DiscoveryError::InvalidRegistration(e.to_string()))?;
        let mut conn = self.link.conn.clone();
        let mut inv = REGISTER_SCRIPT.key(self.agent_key(&registration.name));
        inv.key(self.index_key())
            .arg(json)
            .arg(self.ttl.as_millis() as u64)
            .arg(&registration.name);
        let _: i64 = self
            .link
            .call("register", inv.invoke_async(&mut conn))
            .await?;
        Ok(())
    }

    /// The same as [`register`](Self::register): a heartbeat is a re-registration.
    pub async fn heartbeat(&self, registration: &AgentRegistration) -> Result<(), DiscoveryError> {
        self.register(registration).await
    }

    /// Removes a registration now; `false` if there was none.
    pub async fn deregister(&self, name: &str) -> Result<bool, DiscoveryError> {
        let mut conn = self.link.conn.clone();
        let mut inv = DEREGISTER_SCRIPT.key(self.agent_key(name));
        inv.key(self.index_key()).arg(name);
        let n: i64 = self
            .link
            .call("deregister", inv.invoke_async(&mut conn))
            .await?;
        Ok(n > 0)
    }

    /// One live registration.
    pub async fn get(&self, name: &str) -> Result<Option<RegisteredAgent>, DiscoveryError> {
        let mut conn = self.link.conn.clone();
        let json: Option<String> = self
            .link
            .call(
                "get agent",
                redis::cmd("GET")
                    .arg(self.agent_key(name))
                    .query_async(&mut conn),
            )
            .await?;
        Ok(json.and_then(|j| parse_entry(name, &j)))
    }

    /// Every live registration, by name. Entries that cannot be read are
    /// skipped (and logged) so one bad writer cannot hide every agent.
    pub async fn list(&self) -> Result<Vec<RegisteredAgent>, DiscoveryError> {
        let mut conn = self.link.conn.clone();
        let names: Vec<String> = self
            .link
            .call(
                "list agents",
                LIVE_SCRIPT.key(self.index_key()).invoke_async(&mut conn),
            )
            .await?;
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for name in &names {
            pipe.get(self.agent_key(name));
        }
        let values: Vec<Option<String>> = self
            .link
            .call("list agents", pipe.query_async(&mut conn))
            .await?;
        let mut live: Vec<RegisteredAgent> = names
            .iter()
            .zip(values)
            .filter_map(|(name, json)| json.and_then(|j| parse_entry(name, &j)))
            .collect();
        live.sort_by(|a, b| a.registration.name.cmp(&b.registration.name));
        Ok(live)
    }
}

fn parse_entry(name: &str, json: &str) -> Option<RegisteredAgent> {
    match serde_json::from_str(json) {
        Ok(entry) => Some(entry),
        Err(e) => {
            tracing::warn!(agent = name, error = %e, "skipping unreadable agent registration");
            None
        }
    }
}

/// Keeps a registration alive: re-registers every TTL/3 until its token is
/// cancelled, then deregisters. A failed beat is logged and retried on the
/// next tick, so a short Redis outage does not end the heartbeat.
///
/// The beating lives as long as this handle: dropping it stops the beats
/// without deregistering, exactly as a crashed process would, and the entry
/// expires after its TTL.
pub struct Heartbeat {
    renewal: Renewal,
}

/// One agent's beats in one registry.
struct Beats {
    registry: RedisAgentRegistry,
    registration: AgentRegistration,
}

impl Renew for Beats {
    async fn renew(&mut self) {
        if let Err(e) = self.registry.heartbeat(&self.registration).await {
            tracing::warn!(agent = %self.registration.name, error = %e, "heartbeat failed");
        }
    }

    async fn leave(self) {
        match self.registry.deregister(&self.registration.name).await {
            Ok(_) => tracing::debug!(agent = %self.registration.name, "deregistered"),
            Err(e) => tracing::warn!(
                agent = %self.registration.name,
                error = %e,
                "deregistration failed; the entry expires after its TTL"
            ),
        }
    }
}

impl Heartbeat {
    /// Registers once (so a bad registration or an unreachable Redis is
    /// reported here) and then keeps beating in a background task.
    pub async fn start(
        registry: RedisAgentRegistry,
        registration: AgentRegistration,
        cancel: CancellationToken,
    ) -> Result<Self, DiscoveryError> {
        registry.register(&registration).await?;
        let interval = registry.ttl / 3;
        let beats = Beats {
            registry,
            registration,
        };
        Ok(Self {
            renewal: Renewal::spawn(beats, interval, cancel),
        })
    }

    /// Waits until the heartbeat has stopped (after its token was cancelled)
    /// and the registration was removed.
    pub async fn stopped(self) {
        self.renewal.stopped("heartbeat").await;
    }

    /// Whether the background task has ended.
    pub fn is_finished(&self) -> bool {
        self.renewal.is_finished()
    }
}

impl std::fmt::Debug for Heartbeat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Heartbeat")
            .field("finished", &self.is_finished())
            .finish()
    }
}
