//! Sessions: the conversation, shared state and run records that outlive a run.
//!
//! A [`SessionStore`] persists [`Session`]s with optimistic versioning: every
//! write names the version it read, and a write against a newer version fails
//! with [`StoreError::Conflict`]. [`update_session`] turns that into a
//! read-modify-write loop, so concurrent runs on one session never lose each
//! other's messages.
//!
//! ```
//! use orchestra_core::session::{MemoryStore, SessionStore, update_session};
//! use orchestra_core::Message;
//! # tokio_test_block_on(async {
//! let store = MemoryStore::new();
//! let s = update_session(&store, "s1", |s| { s.messages.push(Message::user("hi")); Ok(()) }).await?;
//! assert_eq!(s.version, 1);
//! assert_eq!(store.get("s1").await?.unwrap().messages.len(), 1);
//! # Ok::<_, orchestra_core::OrchestraError>(()) });
//! # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
//! #     tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f) }
//! ```

mod memory;
#[cfg(feature = "redis")]
mod redis;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub use memory::{MemoryStore, MemoryStoreConfig};
#[cfg(feature = "redis")]
pub(crate) use redis::RedisLink;
#[cfg(feature = "redis")]
pub use redis::{RedisStore, RedisStoreConfig};

use crate::{
    error::{OrchestraError, StoreError},
    message::Message,
    run::RunResult,
};

/// Longest accepted session id.
pub const MAX_SESSION_ID_LEN: usize = 128;

/// A conversation with its shared state and the runs that wrote it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Session {
    pub id: String,
    #[serde(default)]
    pub messages: Vec<Message>,
    /// Shared JSON state that agents read and patch.
    #[serde(default = "empty_object")]
    pub state: Value,
    /// Every run in this session, oldest first.
    #[serde(default)]
    pub runs: Vec<RunResult>,
    #[serde(default)]
    pub metadata: Map<String, Value>,
    #[serde(serialize_with = "crate::timestamp::serialize")]
    pub created_at: DateTime<Utc>,
    #[serde(serialize_with = "crate::timestamp::serialize")]
    pub updated_at: DateTime<Utc>,
    /// Incremented by the store on every write; 0 means never stored.
    #[serde(default)]
    pub version: u64,
}

fn empty_object() -> Value {
    Value::Object(Map::new())
}

impl Session {
    /// A fresh, never-stored session.
    pub fn new(id: impl Into<String>) -> Self {
        let now = Utc::now();
        Self {
            id: id.into(),
            messages: Vec::new(),
            state: empty_object(),
            runs: Vec::new(),
            metadata: Map::new(),
            created_at: now,
            updated_at: now,
            version: 0,
        }
    }

    /// The run record with this id.
    pub fn run(&self, run_id: &str) -> Option<&RunResult> {
        self.runs.iter().find(|r| r.run_id == run_id)
    }

    pub(crate) fn run_mut(&mut self, run_id: &str) -> Option<&mut RunResult> {
        self.runs.iter_mut().find(|r| r.run_id == run_id)
    }

    pub fn summary(&self) -> SessionSummary {
        SessionSummary {
            id: self.id.clone(),
            created_at: self.created_at,
            updated_at: self.updated_at,
            message_count: self.messages.len(),
            run_count: self.runs.len(),
            version: self.version,
        }
    }
}

/// A session in a listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SessionSummary {
    pub id: String,
    #[serde(serialize_with = "crate::timestamp::serialize")]
    pub created_at: DateTime<Utc>,
    #[serde(serialize_with = "crate::timestamp::serialize")]
    pub updated_at: DateTime<Utc>,
    pub message_count: usize,
    pub run_count: usize,
    pub version: u64,
}

/// Which slice of a listing to return (most recently updated first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Page {
    pub offset: usize,
    pub limit: usize,
}

impl Default for Page {
    fn default() -> Self {
        Self {
            offset: 0,
            limit: 50,
        }
    }
}

/// Where sessions live.
///
/// Implemented by [`MemoryStore`] (the embedded default) and the Redis store.
/// All methods may be called concurrently. `put` is the only write and must be
/// atomic: with `expected_version = Some(v)` it succeeds only if the stored
/// version is `v`; with `None` only if no session with that id exists. On
/// success the store saves the session with version `expected + 1` (or 1) and
/// returns that version.
#[async_trait]
pub trait SessionStore: Send + Sync {
    async fn get(&self, id: &str) -> Result<Option<Session>, StoreError>;
    async fn put(
        &self,
        session: &Session,
        expected_version: Option<u64>,
    ) -> Result<u64, StoreError>;
    /// Removes a session; `false` if there was none.
    async fn delete(&self, id: &str) -> Result<bool, StoreError>;
    async fn list(&self, page: Page) -> Result<Vec<SessionSummary>, StoreError>;
    /// Whether the store can serve requests now (for health checks).
    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
    /// A short name for health output and logs ("memory", "redis").
    fn kind(&self) -> &'static str;

    /// Whether sessions outlive this process (runs are then checkpointed
    /// after every step by default, so they can resume after a crash).
    fn is_durable(&self) -> bool {
        false
    }

    /// Remembers that `run_id` lives in `session_id`, so a run can be found
    /// by its id alone ([`find_run`](Self::find_run)).
    async fn index_run(&self, _run_id: &str, _session_id: &str) -> Result<(), StoreError> {
        Ok(())
    }

    /// Whether the store's last call found its backend unreachable: a hint
    /// that the next one will fail too. A run that could skip its start
    /// record ([`RunRequest::fresh_session`](crate::RunRequest::fresh_session))
    /// makes it anyway when this is set, so that during an outage it fails
    /// before any agent is called.
    fn unreachable_hint(&self) -> bool {
        false
    }

    /// Whether every write also does [`index_run`](Self::index_run) for
    /// the session's running runs and its latest run, so a run need not
    /// call it (neither at its start nor, without a start record, at its
    /// end).
    fn indexes_running_runs(&self) -> bool {
        false
    }

    /// The session that holds `run_id`, if known.
    async fn find_run(&self, _run_id: &str) -> Result<Option<String>, StoreError> {
        Ok(None)
    }

    /// Whether [`update`](Self::update) calls its `change` exactly once
    /// (a store that changes sessions in place, with no conflict to retry):
    /// a caller may then move what it adds into the session instead of
    /// copying it for a retry that cannot come.
    fn updates_in_place(&self) -> bool {
        false
    }

    /// Writes the checkpoint of a run in progress: its record with the steps
    /// so far. The default writes it into the run's record in its session;
    /// stores where sessions are shared by many writers keep checkpoints
    /// apart, so that checkpoints never contend with other runs' writes.
    async fn save_checkpoint(&self, run: &RunResult) -> Result<(), StoreError> {
        let mut change = |s: &mut Session| {
            if let Some(r) = s.run_mut(&run.run_id)
                && r.status == crate::run::RunStatus::Running
            {
                *r = run.clone();
            }
        };
        self.update(&run.session_id, &mut change).await.map(|_| ())
    }

    /// The latest checkpoint kept apart by [`save_checkpoint`](Self::save_checkpoint), if any.
    async fn load_checkpoint(&self, _run_id: &str) -> Result<Option<RunResult>, StoreError> {
        Ok(None)
    }

    /// Drops a run's separate checkpoint once its record is final.
    async fn clear_checkpoint(&self, _run_id: &str) -> Result<(), StoreError> {
        Ok(())
    }

    /// Applies `change` to the session (a new one if absent) atomically and
    /// returns the new version. `change` may run more than once and must only
    /// touch the session it is given.
    ///
    /// The default is an optimistic read-modify-write loop over `get` and
    /// `put`; stores that can change a session in place override it.
    async fn update(
        &self,
        id: &str,
        change: &mut (dyn for<'s> FnMut(&'s mut Session) + Send),
    ) -> Result<u64, StoreError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let current = self.get(id).await?;
            let expected = current.as_ref().map(|s| s.version);
            let mut session = current.unwrap_or_else(|| Session::new(id));
            change(&mut session);
            session.updated_at = Utc::now();
            match self.put(&session, expected).await {
                Err(StoreError::Conflict { .. }) if attempt < MAX_UPDATE_ATTEMPTS => {
                    conflict_backoff(id, attempt).await;
                }
                other => return other,
            }
        }
    }
}

#[async_trait]
impl<T: SessionStore + ?Sized> SessionStore for std::sync::Arc<T> {
    async fn get(&self, id: &str) -> Result<Option<Session>, StoreError> {
        (**self).get(id).await
    }
    async fn put(&self, s: &Session, expected: Option<u64>) -> Result<u64, StoreError> {
        (**self).put(s, expected).await
    }
    async fn delete(&self, id: &str) -> Result<bool, StoreError> {
        (**self).delete(id).await
    }
    async fn list(&self, page: Page) -> Result<Vec<SessionSummary>, StoreError> {
        (**self).list(page).await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        (**self).ping().await
    }
    fn kind(&self) -> &'static str {
        (**self).kind()
    }
    fn is_durable(&self) -> bool {
        (**self).is_durable()
    }
    async fn index_run(&self, run_id: &str, session_id: &str) -> Result<(), StoreError> {
        (**self).index_run(run_id, session_id).await
    }
    fn indexes_running_runs(&self) -> bool {
        (**self).indexes_running_runs()
    }
    fn unreachable_hint(&self) -> bool {
        (**self).unreachable_hint()
    }
    fn updates_in_place(&self) -> bool {
        (**self).updates_in_place()
    }
    async fn find_run(&self, run_id: &str) -> Result<Option<String>, StoreError> {
        (**self).find_run(run_id).await
    }
    async fn save_checkpoint(&self, run: &RunResult) -> Result<(), StoreError> {
        (**self).save_checkpoint(run).await
    }
    async fn load_checkpoint(&self, run_id: &str) -> Result<Option<RunResult>, StoreError> {
        (**self).load_checkpoint(run_id).await
    }
    async fn clear_checkpoint(&self, run_id: &str) -> Result<(), StoreError> {
        (**self).clear_checkpoint(run_id).await
    }
    async fn update(
        &self,
        id: &str,
        change: &mut (dyn for<'s> FnMut(&'s mut Session) + Send),
    ) -> Result<u64, StoreError> {
        (**self).update(id, change).await
    }
}

/// How many times [`update_session`] re-reads after a version conflict.
const MAX_UPDATE_ATTEMPTS: u32 = 64;

/// Reads the session (or starts a new one), applies `f`, and writes it back
/// conditionally, retrying on conflict. `f` may run several times, so it must
/// only change the session it is given.
pub async fn update_session<S, F>(store: &S, id: &str, mut f: F) -> Result<Session, OrchestraError>
where
    S: SessionStore + ?Sized,
    F: FnMut(&mut Session) -> Result<(), OrchestraError> + Send,
{
    let mut attempt = 0;
    loop {
        attempt += 1;
        let current = store.get(id).await?;
        let expected = current.as_ref().map(|s| s.version);
        let mut session = current.unwrap_or_else(|| Session::new(id));
        f(&mut session)?;
        session.updated_at = Utc::now();
        match store.put(&session, expected).await {
            Ok(version) => {
                session.version = version;
                return Ok(session);
            }
            Err(StoreError::Conflict { .. }) if attempt < MAX_UPDATE_ATTEMPTS => {
                conflict_backoff(id, attempt).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Waits before re-reading after a lost write: first just let the winner
/// finish, then, under heavy contention, spread the retries out.
async fn conflict_backoff(id: &str, attempt: u32) {
    tracing::debug!(session_id = id, attempt, "session write conflict; retrying");
    if attempt <= 3 {
        tokio::task::yield_now().await;
    } else {
        let cap = u64::from(attempt).min(50);
        tokio::time::sleep(std::time::Duration::from_millis(fastrand::u64(1..=cap))).await;
    }
}

/// Checks a caller-supplied session id: 1–128 characters of `A-Z a-z 0-9 - _ . :`.
pub fn validate_session_id(id: &str) -> Result<(), OrchestraError> {
    let reason = if id.is_empty() {
        "must not be empty".to_owned()
    } else if id.len() > MAX_SESSION_ID_LEN {
        format!("longer than {MAX_SESSION_ID_LEN} characters")
    } else if let Some(c) = id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':')))
    {
        format!("character {c:?} is not allowed (use A-Z, a-z, 0-9, '-', '_', '.', ':')")
    } else {
        return Ok(());
    };
    Err(OrchestraError::InvalidSessionId { reason })
}

/// Applies a JSON merge patch (RFC 7396) to `target`.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch_map) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = empty_object();
    }
    if let Value::Object(target_map) = target {
        for (k, v) in patch_map {
            if v.is_null() {
                target_map.remove(k);
            } else {
                merge_patch(target_map.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn session_ids_are_checked() {
        assert!(validate_session_id("user-42:chat.1_a").is_ok());
        for bad in ["", "has space", "slash/x", &"x".repeat(129)] {
            let e = validate_session_id(bad).unwrap_err();
            assert_eq!(e.code(), "invalid_session_id", "{bad:?}");
        }
    }

    #[test]
    fn merge_patch_follows_rfc_7396() {
        let mut v = json!({"a": 1, "b": {"c": 2, "d": 3}});
        merge_patch(&mut v, &json!({"a": null, "b": {"c": 5}, "e": [1]}));
        assert_eq!(v, json!({"b": {"c": 5, "d": 3}, "e": [1]}));
    }
}
