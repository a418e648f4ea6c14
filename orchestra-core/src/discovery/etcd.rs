//! [`EtcdAgentRegistry`]: agent registrations in etcd (v3 API), each bound
//! to a lease, and [`EtcdAgentWatch`]: a live view of them kept current by
//! an etcd watch.
//!
//! # Key layout
//!
//! | key | value | lease |
//! |---|---|---|
//! | `{prefix}{name}` (prefix default `/orchestra/agents/`) | the [`AgentRegistration`] as JSON | the registering service's lease |
//!
//! A service grants itself a lease, writes its key with it and keeps the
//! lease alive ([`EtcdRegistration`] does all three). When the service stops
//! keeping it alive, etcd deletes the key when the lease expires and every
//! watcher sees the deletion at once: no one polls, and no one cleans up.
//!
//! The registry speaks etcd's JSON gateway (`/v3/kv/range`,
//! `/v3/lease/grant`, `/v3/watch`, …), which every etcd since 3.4 serves on
//! its client URLs. It shares the HTTP stack of the other agents and needs
//! no protobuf toolchain to build.
//!
//! ```no_run
//! use std::time::Duration;
//! use orchestra_core::discovery::{AgentRegistration, EtcdAgentRegistry, EtcdConfig, EtcdRegistration};
//! use tokio_util::sync::CancellationToken;
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let registry = EtcdAgentRegistry::new(EtcdConfig::new(["http://127.0.0.1:2379"]))?;
//! let me = AgentRegistration::new("search", "http", "http://10.0.0.7:9000/invoke");
//! let stop = CancellationToken::new();
//! let lease = EtcdRegistration::start(registry, me, Duration::from_secs(10), stop.clone()).await?;
//! // ... serve ...
//! stop.cancel();
//! lease.stopped().await; // lease revoked: the key is gone
//! # Ok(()) }
//! ```

use std::{
    collections::BTreeMap,
    sync::{
        Arc, RwLock,
        atomic::{AtomicI64, AtomicUsize, Ordering},
    },
    time::Duration,
};

use base64::{Engine as _, engine::general_purpose::STANDARD as B64};
use futures::StreamExt;
use serde_json::{Value, json};
use tokio::{sync::watch, task::JoinHandle};
use tokio_util::sync::CancellationToken;

use super::{
    AgentRegistration, DiscoveryError,
    renewal::{Renew, Renewal},
};
use crate::error::StoreError;

/// The key prefix registrations live under unless configured otherwise.
pub const DEFAULT_PREFIX: &str = "/orchestra/agents/";

/// Longest watch message accepted; a larger one means a broken peer.
const MAX_WATCH_MESSAGE: usize = 16 * 1024 * 1024;

/// Longest pause between attempts to reach etcd again.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// gRPC status codes etcd answers with.
const GRPC_NOT_FOUND: i64 = 5;
const GRPC_UNAVAILABLE: i64 = 14;

/// Where etcd is and which keys hold registrations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdConfig {
    /// Client URLs of the cluster's members (`http://host:2379`); calls go
    /// to the first that answers and stay there until it stops answering.
    pub endpoints: Vec<String>,
    /// Registrations are the keys `{prefix}{name}`.
    pub prefix: String,
    /// Limit on opening a connection to a member.
    pub connect_timeout: Duration,
    /// Limit on one request (not on the watch, which stays open).
    pub request_timeout: Duration,
}

impl EtcdConfig {
    pub fn new(endpoints: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Self {
            endpoints: endpoints.into_iter().map(Into::into).collect(),
            ..Self::default()
        }
    }

    #[must_use]
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    #[must_use]
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    #[must_use]
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }
}

impl Default for EtcdConfig {
    fn default() -> Self {
        Self {
            endpoints: vec!["http://127.0.0.1:2379".into()],
            prefix: DEFAULT_PREFIX.into(),
            connect_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(3),
        }
    }
}

/// A lease granted by etcd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    pub id: i64,
    /// The TTL etcd granted (it raises TTLs below its minimum).
    pub ttl: Duration,
}

/// The registrations under the prefix at one revision of the store.
#[derive(Debug, Clone, PartialEq)]
pub struct EtcdListing {
    /// Sorted by name.
    pub agents: Vec<AgentRegistration>,
    /// The store revision the listing was read at; a watch from
    /// `revision + 1` misses no change.
    pub revision: i64,
}

/// Agent registrations in etcd. Cheap to clone.
#[derive(Clone)]
pub struct EtcdAgentRegistry {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    endpoints: Vec<String>,
    prefix: String,
    request_timeout: Duration,
    /// The member that answered last; tried first next time.
    preferred: AtomicUsize,
}

impl std::fmt::Debug for EtcdAgentRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdAgentRegistry")
            .field("endpoints", &self.inner.endpoints)
            .field("prefix", &self.inner.prefix)
            .finish_non_exhaustive()
    }
}

/// How one gateway call failed.
enum CallError {
    /// No member could be reached (or none had a leader).
    Unavailable(String),
    /// A member answered with an error.
    Etcd { code: i64, message: String },
}

impl From<CallError> for DiscoveryError {
    fn from(e: CallError) -> Self {
        match e {
            CallError::Unavailable(m) => StoreError::Unavailable(format!("etcd: {m}")).into(),
            CallError::Etcd { code, message } => {
                StoreError::Backend(format!("etcd answered code {code}: {message}")).into()
            }
        }
    }
}

fn int(v: &Value) -> Option<i64> {
    match v {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => n.as_i64(),
        _ => None,
    }
}

fn b64(bytes: &[u8]) -> String {
    B64.encode(bytes)
}

/// The end of the key range holding every key that starts with `prefix`
/// (etcd's convention: the prefix with its last byte incremented).
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // Every byte was 0xff: the range runs to the end of the keyspace.
    vec![0]
}

impl EtcdAgentRegistry {
    /// A registry on these members; nothing is contacted until first use.
    pub fn new(config: EtcdConfig) -> Result<Self, DiscoveryError> {
        if config.endpoints.is_empty() {
            return Err(DiscoveryError::Config(
                "etcd needs at least one endpoint".into(),
            ));
        }
        let mut endpoints = Vec::with_capacity(config.endpoints.len());
        for e in &config.endpoints {
            let e = e.trim().trim_end_matches('/');
            if !(e.starts_with("http://") || e.starts_with("https://")) {
                return Err(DiscoveryError::Config(format!(
                    "etcd endpoint '{e}' must start with http:// or https://"
                )));
            }
            endpoints.push(e.to_owned());
        }
        if config.prefix.is_empty() {
            return Err(DiscoveryError::Config(
                "the etcd key prefix must not be empty".into(),
            ));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            // A watch is idle for long stretches: keep-alive probes notice a
            // member that vanished without closing the connection.
            .tcp_keepalive(Duration::from_secs(15))
            .build()
            .map_err(|e| DiscoveryError::Config(format!("etcd HTTP client: {e}")))?;
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                endpoints,
                prefix: config.prefix,
                request_timeout: config.request_timeout,
                preferred: AtomicUsize::new(0),
            }),
        })
    }

    pub fn prefix(&self) -> &str {
        &self.inner.prefix
    }

    /// The key of an agent's registration.
    pub fn key(&self, name: &str) -> String {
        format!("{}{name}", self.inner.prefix)
    }

    /// Sends `body` to `path` on the preferred member, moving on to the
    /// next member when one cannot be reached or has no leader.
    async fn send(
        &self,
        path: &str,
        body: &Value,
        timeout: Option<Duration>,
    ) -> Result<reqwest::Response, CallError> {
        let n = self.inner.endpoints.len();
        let start = self.inner.preferred.load(Ordering::Relaxed);
        let mut last = String::new();
        for i in 0..n {
            let idx = (start + i) % n;
            let url = format!("{}{path}", self.inner.endpoints[idx]);
            let mut req = self.inner.http.post(&url).json(body);
            if let Some(t) = timeout {
                req = req.timeout(t);
            }
            match req.send().await {
                Ok(resp) if resp.status().is_success() => {
                    self.inner.preferred.store(idx, Ordering::Relaxed);
                    return Ok(resp);
                }
                Ok(resp) => {
                    let status = resp.status();
                    let v: Value = resp.json().await.unwrap_or(Value::Null);
                    let code = int(&v["code"]).unwrap_or(-1);
                    let message = v["message"]
                        .as_str()
                        .or_else(|| v["error"].as_str())
                        .map_or_else(|| format!("HTTP {status}"), str::to_owned);
                    if code == GRPC_UNAVAILABLE || status.is_server_error() && code < 0 {
                        last = format!("{url}: {message}");
                        continue;
                    }
                    return Err(CallError::Etcd { code, message });
                }
                Err(e) => {
                    last = format!("{url}: {e}");
                }
            }
        }
        Err(CallError::Unavailable(last))
    }

    async fn call(&self, path: &str, body: Value) -> Result<Value, CallError> {
        let resp = self
            .send(path, &body, Some(self.inner.request_timeout))
            .await?;
        resp.json()
            .await
            .map_err(|e| CallError::Unavailable(format!("{path}: unreadable answer: {e}")))
    }

    /// Grants a lease of `ttl`, rounded up to whole seconds (etcd's unit).
    pub async fn grant(&self, ttl: Duration) -> Result<Lease, DiscoveryError> {
        let secs = ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0);
        let v = self
            .call("/v3/lease/grant", json!({ "TTL": secs.max(1).to_string() }))
            .await?;
        if let Some(e) = v["error"].as_str().filter(|e| !e.is_empty()) {
            return Err(StoreError::Backend(format!("etcd lease grant: {e}")).into());
        }
        let id = int(&v["ID"])
            .ok_or_else(|| StoreError::Backend("etcd lease grant: no lease id".into()))?;
        let granted = int(&v["TTL"]).and_then(|t| u64::try_from(t).ok());
        Ok(Lease {
            id,
            ttl: Duration::from_secs(granted.unwrap_or(secs).max(1)),
        })
    }

    /// Writes a registration, bound to `lease` when given (without one it
    /// stays until deregistered).
    pub async fn put(
        &self,
        registration: &AgentRegistration,
        lease: Option<i64>,
    ) -> Result<(), DiscoveryError> {
        registration.validate()?;
        let value = serde_json::to_vec(registration)
            .map_err(|e| DiscoveryError::InvalidRegistration(e.to_string()))?;
        let mut body = json!({
            "key": b64(self.key(&registration.name).as_bytes()),
            "value": b64(&value),
        });
        if let Some(id) = lease {
            body["lease"] = Value::String(id.to_string());
        }
        self.call("/v3/kv/put", body).await?;
        Ok(())
    }

    /// Grants a lease of `ttl` and writes the registration with it. Keep
    /// the lease alive ([`keep_alive`](Self::keep_alive), or let
    /// [`EtcdRegistration`] do it) or the registration goes when it expires.
    pub async fn register(
        &self,
        registration: &AgentRegistration,
        ttl: Duration,
    ) -> Result<Lease, DiscoveryError> {
        registration.validate()?;
        let lease = self.grant(ttl).await?;
        if let Err(e) = self.put(registration, Some(lease.id)).await {
            if let Err(revoke) = self.revoke(lease.id).await {
                tracing::debug!(error = %revoke, "could not revoke the unused lease; it expires by itself");
            }
            return Err(e);
        }
        Ok(lease)
    }

    /// Renews a lease for its full TTL. `None`: the lease no longer exists
    /// (it expired or was revoked), so its keys are gone.
    pub async fn keep_alive(&self, lease: i64) -> Result<Option<Duration>, DiscoveryError> {
        let v = self
            .call("/v3/lease/keepalive", json!({ "ID": lease.to_string() }))
            .await?;
        let ttl = int(&v["result"]["TTL"]).unwrap_or(0);
        Ok(u64::try_from(ttl)
            .ok()
            .filter(|t| *t > 0)
            .map(Duration::from_secs))
    }

    /// Revokes a lease, deleting its keys now; `false` if it did not exist.
    pub async fn revoke(&self, lease: i64) -> Result<bool, DiscoveryError> {
        match self
            .call("/v3/lease/revoke", json!({ "ID": lease.to_string() }))
            .await
        {
            Ok(_) => Ok(true),
            Err(CallError::Etcd {
                code: GRPC_NOT_FOUND,
                ..
            }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes a registration now, whatever its lease; `false` if there
    /// was none.
    pub async fn deregister(&self, name: &str) -> Result<bool, DiscoveryError> {
        let v = self
            .call(
                "/v3/kv/deleterange",
                json!({ "key": b64(self.key(name).as_bytes()) }),
            )
            .await?;
        Ok(int(&v["deleted"]).unwrap_or(0) > 0)
    }

    /// One registration.
    pub async fn get(&self, name: &str) -> Result<Option<AgentRegistration>, DiscoveryError> {
        let v = self
            .call(
                "/v3/kv/range",
                json!({ "key": b64(self.key(name).as_bytes()) }),
            )
            .await?;
        Ok(v["kvs"]
            .as_array()
            .and_then(|kvs| kvs.first())
            .and_then(|kv| self.parse_kv(kv))
            .map(|(_, r)| r))
    }

    /// Every registration under the prefix, with the revision it was read
    /// at. Entries that cannot be read are skipped (and logged) so one bad
    /// writer cannot hide every agent.
    pub async fn list(&self) -> Result<EtcdListing, DiscoveryError> {
        let prefix = self.inner.prefix.as_bytes();
        let v = self
            .call(
                "/v3/kv/range",
                json!({ "key": b64(prefix), "range_end": b64(&prefix_end(prefix)) }),
            )
            .await?;
        let revision = int(&v["header"]["revision"]).unwrap_or(0);
        let mut agents: Vec<AgentRegistration> = v["kvs"]
            .as_array()
            .map(|kvs| {
                kvs.iter()
                    .filter_map(|kv| self.parse_kv(kv))
                    .map(|(_, r)| r)
                    .collect()
            })
            .unwrap_or_default();
        agents.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(EtcdListing { agents, revision })
    }

    /// Whether a member answers a read.
    pub async fn ping(&self) -> Result<(), DiscoveryError> {
        let prefix = self.inner.prefix.as_bytes();
        self.call(
            "/v3/kv/range",
            json!({ "key": b64(prefix), "limit": "1", "keys_only": true }),
        )
        .await?;
        Ok(())
    }

    /// The agent name a key stands for, if the key is under the prefix.
    fn name_of(&self, kv: &Value) -> Option<String> {
        let key = B64.decode(kv["key"].as_str()?).ok()?;
        let key = String::from_utf8(key).ok()?;
        key.strip_prefix(self.inner.prefix.as_str())
            .map(str::to_owned)
    }

    /// A key/value pair as (name, registration); `None` (logged) when the
    /// value is not a valid registration of the agent its key names.
    fn parse_kv(&self, kv: &Value) -> Option<(String, AgentRegistration)> {
        let name = self.name_of(kv)?;
        let value = kv["value"]
            .as_str()
            .and_then(|v| B64.decode(v).ok())
            .unwrap_or_default();
        let parsed = serde_json::from_slice::<AgentRegistration>(&value)
            .map_err(|e| e.to_string())
            .and_then(|r| {
                if r.name != name {
                    return Err(format!("its key names '{name}' but its value '{}'", r.name));
                }
                r.validate().map_err(|e| e.to_string())?;
                Ok(r)
            });
        match parsed {
            Ok(r) => Some((name, r)),
            Err(e) => {
                tracing::warn!(agent = %name, error = %e, "skipping unreadable agent registration in etcd");
                None
            }
        }
    }

    /// Opens a watch on the prefix from `start_revision`.
    async fn open_watch(&self, start_revision: i64) -> Result<reqwest::Response, CallError> {
        let prefix = self.inner.prefix.as_bytes();
        let body = json!({ "create_request": {
            "key": b64(prefix),
            "range_end": b64(&prefix_end(prefix)),
            "start_revision": start_revision.to_string(),
        }});
        self.send("/v3/watch", &body, None).await
    }
}

/// How a watch stream ended without an error.
enum WatchEnd {
    /// etcd cancelled it (its start revision was compacted away) or closed
    /// the stream: list again and watch from there.
    Resync,
}

/// The registrations as last seen, shared by the watch task and readers.
struct Shared {
    /// `None` until the first listing.
    agents: RwLock<Option<BTreeMap<String, AgentRegistration>>>,
    /// Bumped on every change of `agents`.
    version: watch::Sender<u64>,
}

impl Shared {
    fn bump(&self) {
        self.version.send_modify(|v| *v = v.wrapping_add(1));
    }

    fn replace(&self, agents: Vec<AgentRegistration>) {
        let next: BTreeMap<String, AgentRegistration> =
            agents.into_iter().map(|a| (a.name.clone(), a)).collect();
        let changed = {
            let mut current = self.agents.write().unwrap_or_else(|p| p.into_inner());
            let changed = current.as_ref() != Some(&next);
            *current = Some(next);
            changed
        };
        if changed {
            self.bump();
        }
    }

    /// Applies one batch of watch events; whether anything changed.
    fn apply(&self, registry: &EtcdAgentRegistry, events: &[Value]) -> bool {
        let mut guard = self.agents.write().unwrap_or_else(|p| p.into_inner());
        let agents = guard.get_or_insert_with(BTreeMap::new);
        let mut changed = false;
        for event in events {
            let kv = &event["kv"];
            let Some(name) = registry.name_of(kv) else {
                continue;
            };
            let deleted = event["type"].as_str() == Some("DELETE");
            let now = if deleted {
                None
            } else {
                // A value that no longer reads as a registration hides the
                // agent rather than keeping a stale one.
                registry.parse_kv(kv).map(|(_, r)| r)
            };
            match now {
                Some(r) if agents.get(&name) != Some(&r) => {
                    agents.insert(name, r);
                    changed = true;
                }
                Some(_) => {}
                None => changed |= agents.remove(&name).is_some(),
            }
        }
        changed
    }
}

/// A live view of the registrations under a prefix: one listing, then an
/// etcd watch that applies every put and delete (including those of an
/// expired lease) as it happens. When the watch breaks it lists again and
/// watches on; meanwhile the last view is kept.
///
/// The watch runs as long as this handle: dropping it stops it.
pub struct EtcdAgentWatch {
    shared: Arc<Shared>,
    cancel: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for EtcdAgentWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdAgentWatch")
            .field("agents", &self.agents().map(|a| a.len()))
            .finish_non_exhaustive()
    }
}

impl EtcdAgentWatch {
    /// Starts watching in a background task (on the current Tokio runtime).
    pub fn start(registry: EtcdAgentRegistry) -> Self {
        let (version, _) = watch::channel(0);
        let shared = Arc::new(Shared {
            agents: RwLock::new(None),
            version,
        });
        let cancel = CancellationToken::new();
        let task = tokio::spawn(run_watch(registry, shared.clone(), cancel.clone()));
        Self {
            shared,
            cancel,
            task: Some(task),
        }
    }

    /// The registrations as last seen, by name; `None` before the first
    /// listing succeeded.
    pub fn agents(&self) -> Option<Vec<AgentRegistration>> {
        let agents = self.shared.agents.read().unwrap_or_else(|p| p.into_inner());
        agents.as_ref().map(|a| a.values().cloned().collect())
    }

    /// A receiver whose value changes whenever the registrations do
    /// (`changed().await` wakes on the next change).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.shared.version.subscribe()
    }
}

impl Drop for EtcdAgentWatch {
    fn drop(&mut self) {
        self.cancel.cancel();
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Sleeps `d` unless cancelled first; `false` when cancelled.
async fn pause(d: Duration, cancel: &CancellationToken) -> bool {
    tokio::select! {
        () = cancel.cancelled() => false,
        () = tokio::time::sleep(d) => true,
    }
}

async fn run_watch(registry: EtcdAgentRegistry, shared: Arc<Shared>, cancel: CancellationToken) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let listing = tokio::select! {
            () = cancel.cancelled() => return,
            r = registry.list() => r,
        };
        let revision = match listing {
            Ok(l) => {
                shared.replace(l.agents);
                l.revision
            }
            Err(e) => {
                tracing::warn!(error = %e, "etcd listing failed; retrying");
                if !pause(backoff, &cancel).await {
                    return;
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        let watched = tokio::select! {
            () = cancel.cancelled() => return,
            r = watch_from(&registry, &shared, revision + 1) => r,
        };
        match watched {
            Ok(WatchEnd::Resync) => {
                tracing::debug!("etcd watch ended; listing again");
                backoff = Duration::from_millis(100);
            }
            Err(e) => {
                tracing::warn!(error = %e, "etcd watch failed; reconnecting");
                if !pause(backoff, &cancel).await {
                    return;
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// Follows one watch stream (newline-delimited JSON messages) until it
/// ends, applying its events to `shared`.
async fn watch_from(
    registry: &EtcdAgentRegistry,
    shared: &Shared,
    start_revision: i64,
) -> Result<WatchEnd, DiscoveryError> {
    let resp = registry.open_watch(start_revision).await?;
    let mut body = resp.bytes_stream();
    let mut buf: Vec<u8> = Vec::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| StoreError::Unavailable(format!("etcd watch: {e}")))?;
        buf.extend_from_slice(&chunk);
        while let Some(end) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=end).collect();
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let msg: Value = serde_json::from_slice(&line)
                .map_err(|e| StoreError::Backend(format!("etcd watch: unreadable message: {e}")))?;
            if let Some(err) = msg.get("error") {
                return Err(StoreError::Backend(format!("etcd watch: {err}")).into());
            }
            let result = &msg["result"];
            if result["canceled"].as_bool() == Some(true) {
                tracing::debug!(
                    reason = %result["cancel_reason"],
                    compact_revision = %result["compact_revision"],
                    "etcd cancelled the watch"
                );
                return Ok(WatchEnd::Resync);
            }
            if let Some(events) = result["events"].as_array()
                && shared.apply(registry, events)
            {
                shared.bump();
            }
        }
        if buf.len() > MAX_WATCH_MESSAGE {
            return Err(StoreError::Backend("etcd watch: message too large".into()).into());
        }
    }
    Ok(WatchEnd::Resync)
}

/// Keeps a registration in etcd alive: grants a lease, writes the
/// registration with it and renews the lease every TTL/3 until its token is
/// cancelled, then revokes the lease (the key goes at once). If the lease
/// was lost (etcd unreachable for longer than the TTL), it registers again
/// with a new one. A failed renewal is logged and retried on the next tick.
///
/// The renewing lives as long as this handle: dropping it stops renewals
/// without revoking, exactly as a crashed process would, and the key goes
/// when the lease expires.
pub struct EtcdRegistration {
    renewal: Renewal,
    lease: Arc<AtomicI64>,
    ttl: Duration,
}

/// One registration's lease renewals; `lease` is shared with the handle,
/// which reports the current lease.
struct LeaseRenewal {
    registry: EtcdAgentRegistry,
    registration: AgentRegistration,
    ttl: Duration,
    lease: Arc<AtomicI64>,
}

impl Renew for LeaseRenewal {
    async fn renew(&mut self) {
        let name = &self.registration.name;
        let id = self.lease.load(Ordering::Relaxed);
        match self.registry.keep_alive(id).await {
            Ok(Some(_)) => {}
            Ok(None) => match self.registry.register(&self.registration, self.ttl).await {
                Ok(l) => {
                    tracing::info!(agent = %name, "lease was lost; registered again");
                    self.lease.store(l.id, Ordering::Relaxed);
                }
                Err(e) => tracing::warn!(agent = %name, error = %e, "registering again failed"),
            },
            Err(e) => tracing::warn!(agent = %name, error = %e, "lease renewal failed"),
        }
    }

    async fn leave(self) {
        match self
            .registry
            .revoke(self.lease.load(Ordering::Relaxed))
            .await
        {
            Ok(_) => tracing::debug!(agent = %self.registration.name, "lease revoked"),
            Err(e) => tracing::warn!(
                agent = %self.registration.name,
                error = %e,
                "lease revocation failed; the key goes when the lease expires"
            ),
        }
    }
}

impl EtcdRegistration {
    /// Registers once (so a bad registration or an unreachable etcd is
    /// reported here) and then keeps the lease alive in a background task.
    pub async fn start(
        registry: EtcdAgentRegistry,
        registration: AgentRegistration,
        ttl: Duration,
        cancel: CancellationToken,
    ) -> Result<Self, DiscoveryError> {
        let first = registry.register(&registration, ttl).await?;
        let lease = Arc::new(AtomicI64::new(first.id));
        let interval = (first.ttl / 3).max(Duration::from_millis(100));
        let renewals = LeaseRenewal {
            registry,
            registration,
            ttl,
            lease: lease.clone(),
        };
        Ok(Self {
            renewal: Renewal::spawn(renewals, interval, cancel),
            lease,
            ttl: first.ttl,
        })
    }

    /// The lease currently holding the registration.
    pub fn lease_id(&self) -> i64 {
        self.lease.load(Ordering::Relaxed)
    }

    /// The TTL etcd granted.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Waits until the renewals have stopped (after the token was
    /// cancelled) and the lease was revoked.
    pub async fn stopped(self) {
        self.renewal.stopped("lease renewal").await;
    }

    /// Whether the background task has ended.
    pub fn is_finished(&self) -> bool {
        self.renewal.is_finished()
    }
}

impl std::fmt::Debug for EtcdRegistration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdRegistration")
            .field("lease", &self.lease_id())
            .field("finished", &self.is_finished())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prefix_range_ends_after_every_key_under_the_prefix() {
        assert_eq!(prefix_end(b"/orchestra/agents/"), b"/orchestra/agents0");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff\xff"), vec![0]);
    }

    #[test]
    fn endpoints_must_be_http_urls() {
        let e = EtcdAgentRegistry::new(EtcdConfig::new(["127.0.0.1:2379"])).unwrap_err();
        assert!(e.to_string().contains("http://"), "{e}");
        assert!(EtcdAgentRegistry::new(EtcdConfig::new(Vec::<String>::new())).is_err());
        let r = EtcdAgentRegistry::new(EtcdConfig::new(["http://127.0.0.1:2379/"])).unwrap();
        assert_eq!(r.key("search"), "/orchestra/agents/search");
    }

    #[test]
    fn gateway_integers_are_strings_or_numbers() {
        assert_eq!(int(&json!("42")), Some(42));
        assert_eq!(int(&json!(42)), Some(42));
        assert_eq!(int(&json!(null)), None);
    }
}
