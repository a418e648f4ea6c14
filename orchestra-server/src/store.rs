//! [`WriteThroughStore`]: fewer round trips to a remote session store.
//!
//! A run changes its session twice, at its start and at its end, each time
//! with [`SessionStore::update`], whose default reads the session and writes
//! it back conditionally. Against Redis each of those is a round trip, and
//! the read at the end returns (and parses) the whole session. This wrapper
//! saves two of the four:
//!
//! - **After its own write** of a session with a run in flight (a run's
//!   start) it keeps the session for a few seconds; an `update` within that
//!   window (the run's end) starts from the kept copy instead of reading
//!   it. A session at rest is not kept: its next write is usually far off.
//!   The write is still conditional on the version, so if another
//!   instance wrote in between, it fails with a conflict, the copy is
//!   dropped, and the update reads and retries as usual. Correctness never
//!   depends on the copy: it is only a guess that saves a read.
//! - **Sessions the server has just named** (a request without `session_id`
//!   gets a fresh UUID, see [`FreshSessions`]) are created with a write that
//!   succeeds only if no such session exists, without reading first.
//!
//! `get` always reads the store (another instance may have written), and
//! refreshes the kept copy of a session with a run in flight.
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! use orchestra_core::{MemoryStore, SessionStore};
//! use orchestra_server::store::{FreshSessions, WriteThroughStore};
//! let fresh = FreshSessions::default();
//! let store = WriteThroughStore::new(MemoryStore::new(), fresh.clone());
//! fresh.mark("s1");
//! // Created without a read, with a run in flight; then changed from the
//! // kept copy, without a read.
//! let v1 = store.update("s1", &mut |s| { s.runs.push(Default::default()); }).await.unwrap();
//! let v2 = store.update("s1", &mut |s| { s.metadata.insert("b".into(), 2.into()); }).await.unwrap();
//! assert_eq!((v1, v2), (1, 2));
//! let stored = store.get("s1").await.unwrap().unwrap();
//! assert_eq!((stored.runs.len(), stored.metadata.len()), (1, 1));
//! # });
//! ```

use std::{
    borrow::Cow,
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use async_trait::async_trait;
use chrono::Utc;
use orchestra_core::{
    RunStatus, StoreError,
    session::{Page, Session, SessionStore, SessionSummary},
};

/// How long a kept copy is used; runs longer than this read their session
/// again at the end, which costs nothing next to their length.
const FRESH_FOR: Duration = Duration::from_secs(10);
/// Most copies kept; older ones are dropped first when it is reached.
const MAX_KEPT: usize = 4096;
/// Most ids remembered as just named (a request that never reached its
/// first write leaves one behind until this bound clears them).
const MAX_FRESH: usize = 16_384;
/// Conditional-write retries after conflicts, as in the core's default.
const MAX_ATTEMPTS: u32 = 64;

/// Session ids the server generated and that no one else can know yet.
#[derive(Clone, Default)]
pub struct FreshSessions(Arc<Mutex<HashSet<String>>>);

impl FreshSessions {
    /// Remembers that `id` was just generated and has never been written.
    pub fn mark(&self, id: &str) {
        let mut ids = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if ids.len() >= MAX_FRESH {
            ids.clear();
        }
        ids.insert(id.to_owned());
    }

    /// Forgets `id` (its request was refused before anything was written).
    pub fn unmark(&self, id: &str) {
        self.take(id);
    }

    fn take(&self, id: &str) -> bool {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).remove(id)
    }
}

struct Kept {
    session: Session,
    at: Instant,
}

/// A session store wrapper that saves reads; see the module docs.
pub struct WriteThroughStore<S> {
    inner: S,
    fresh: FreshSessions,
    kept: Mutex<HashMap<String, Kept>>,
}

impl<S: SessionStore> WriteThroughStore<S> {
    pub fn new(inner: S, fresh: FreshSessions) -> Self {
        Self {
            inner,
            fresh,
            kept: Mutex::new(HashMap::new()),
        }
    }

    /// Keeps `session` at `version` if a run of it is in flight: only then
    /// is it written again soon (that run's end); a copy of a session at
    /// rest would mostly sit in memory until it is dropped.
    fn keep(&self, session: Cow<'_, Session>, version: u64) {
        if !session.runs.iter().any(|r| r.status == RunStatus::Running) {
            return;
        }
        let mut session = session.into_owned();
        session.version = version;
        let mut kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        if kept.len() >= MAX_KEPT && !kept.contains_key(&session.id) {
            kept.retain(|_, k| k.at.elapsed() < FRESH_FOR);
            if kept.len() >= MAX_KEPT {
                kept.clear();
            }
        }
        kept.insert(
            session.id.clone(),
            Kept {
                session,
                at: Instant::now(),
            },
        );
    }

    /// Takes the kept copy out (no clone of the whole session): a write
    /// from it puts the new state back; a concurrent update of the same
    /// session finds none and reads the store, as it would without a copy.
    fn take_kept(&self, id: &str) -> Option<Session> {
        let mut kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        kept.remove(id)
            .filter(|k| k.at.elapsed() < FRESH_FOR)
            .map(|k| k.session)
    }

    fn forget(&self, id: &str) {
        self.kept
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
    }

    /// One conditional write of `change` applied to `base`; `Ok(None)` on a
    /// version conflict.
    async fn try_write(
        &self,
        mut session: Session,
        expected: Option<u64>,
        change: &mut (dyn for<'s> FnMut(&'s mut Session) + Send),
    ) -> Result<Option<u64>, StoreError> {
        change(&mut session);
        session.updated_at = Utc::now();
        match self.inner.put(&session, expected).await {
            Ok(version) => {
                self.keep(Cow::Owned(session), version);
                Ok(Some(version))
            }
            Err(StoreError::Conflict { .. }) => {
                self.forget(&session.id);
                Ok(None)
            }
            Err(e) => {
                self.forget(&session.id);
                Err(e)
            }
        }
    }
}

#[async_trait]
impl<S: SessionStore> SessionStore for WriteThroughStore<S> {
    async fn get(&self, id: &str) -> Result<Option<Session>, StoreError> {
        let found = self.inner.get(id).await?;
        match &found {
            Some(s) => self.keep(Cow::Borrowed(s), s.version),
            None => self.forget(id),
        }
        Ok(found)
    }

    async fn put(&self, session: &Session, expected: Option<u64>) -> Result<u64, StoreError> {
        match self.inner.put(session, expected).await {
            Ok(version) => {
                self.keep(Cow::Borrowed(session), version);
                Ok(version)
            }
            Err(e) => {
                self.forget(&session.id);
                Err(e)
            }
        }
    }

    async fn delete(&self, id: &str) -> Result<bool, StoreError> {
        self.forget(id);
        self.inner.delete(id).await
    }

    async fn list(&self, page: Page) -> Result<Vec<SessionSummary>, StoreError> {
        self.inner.list(page).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }

    fn kind(&self) -> &'static str {
        self.inner.kind()
    }

    fn is_durable(&self) -> bool {
        self.inner.is_durable()
    }

    fn indexes_running_runs(&self) -> bool {
        self.inner.indexes_running_runs()
    }

    fn unreachable_hint(&self) -> bool {
        self.inner.unreachable_hint()
    }

    async fn index_run(&self, run_id: &str, session_id: &str) -> Result<(), StoreError> {
        self.inner.index_run(run_id, session_id).await
    }

    async fn find_run(&self, run_id: &str) -> Result<Option<String>, StoreError> {
        self.inner.find_run(run_id).await
    }

    async fn save_checkpoint(&self, run: &orchestra_core::RunResult) -> Result<(), StoreError> {
        self.inner.save_checkpoint(run).await
    }

    async fn load_checkpoint(
        &self,
        run_id: &str,
    ) -> Result<Option<orchestra_core::RunResult>, StoreError> {
        self.inner.load_checkpoint(run_id).await
    }

    async fn clear_checkpoint(&self, run_id: &str) -> Result<(), StoreError> {
        self.inner.clear_checkpoint(run_id).await
    }

    async fn update(
        &self,
        id: &str,
        change: &mut (dyn for<'s> FnMut(&'s mut Session) + Send),
    ) -> Result<u64, StoreError> {
        // A guess first: a session the server just named, or our own last write.
        let guess = if self.fresh.take(id) {
            Some((Session::new(id), None))
        } else {
            self.take_kept(id).map(|s| {
                let v = s.version;
                (s, Some(v))
            })
        };
        if let Some((base, expected)) = guess
            && let Some(version) = self.try_write(base, expected, change).await?
        {
            return Ok(version);
        }
        // Read, change, write conditionally; re-read after a conflict.
        for attempt in 1..=MAX_ATTEMPTS {
            let current = self.inner.get(id).await?;
            let expected = current.as_ref().map(|s| s.version);
            let base = current.unwrap_or_else(|| Session::new(id));
            if let Some(version) = self.try_write(base, expected, change).await? {
                return Ok(version);
            }
            tracing::debug!(session_id = id, attempt, "session write conflict; retrying");
            if attempt > 3 {
                let ms = u64::from(attempt).min(50);
                tokio::time::sleep(Duration::from_millis(ms)).await;
            } else {
                tokio::task::yield_now().await;
            }
        }
        Err(StoreError::Conflict {
            id: id.to_owned(),
            expected: None,
            found: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use orchestra_core::MemoryStore;

    /// A change that leaves a run in flight, as a run's start does.
    fn add(key: &'static str) -> impl FnMut(&mut Session) + Send {
        move |s: &mut Session| {
            s.metadata.insert(key.into(), true.into());
            if s.runs.is_empty() {
                s.runs.push(orchestra_core::RunResult::default());
            }
        }
    }

    fn kept<S>(store: &WriteThroughStore<S>) -> usize {
        store.kept.lock().unwrap().len()
    }

    #[tokio::test]
    async fn only_a_session_with_a_run_in_flight_is_kept() {
        let shared = Arc::new(MemoryStore::new());
        let a = WriteThroughStore::new(shared.clone(), FreshSessions::default());
        a.update("s", &mut add("start")).await.unwrap();
        assert_eq!(kept(&a), 1);
        // The run ends: the next write of the session is far off.
        a.update("s", &mut |s: &mut Session| {
            s.runs[0].status = RunStatus::Completed;
        })
        .await
        .unwrap();
        assert_eq!(kept(&a), 0);
        let s = shared.get("s").await.unwrap().unwrap();
        assert_eq!((s.version, s.runs[0].status), (2, RunStatus::Completed));
    }

    #[tokio::test]
    async fn a_stale_copy_costs_a_retry_and_never_a_lost_write() {
        let shared = Arc::new(MemoryStore::new());
        let a = WriteThroughStore::new(shared.clone(), FreshSessions::default());
        let b = WriteThroughStore::new(shared.clone(), FreshSessions::default());
        a.update("s", &mut add("a1")).await.unwrap();
        assert_eq!(kept(&a), 1);
        // b writes behind a's back; a's kept copy is now stale.
        b.update("s", &mut add("b1")).await.unwrap();
        let v = a.update("s", &mut add("a2")).await.unwrap();
        assert_eq!(v, 3);
        let s = shared.get("s").await.unwrap().unwrap();
        assert_eq!(s.metadata.len(), 3, "{:?}", s.metadata);
    }

    #[tokio::test]
    async fn a_fresh_id_that_exists_after_all_falls_back_to_a_read() {
        let shared = Arc::new(MemoryStore::new());
        let fresh = FreshSessions::default();
        let a = WriteThroughStore::new(shared.clone(), fresh.clone());
        shared.update("s", &mut add("first")).await.unwrap();
        fresh.mark("s");
        assert_eq!(a.update("s", &mut add("second")).await.unwrap(), 2);
        assert_eq!(shared.get("s").await.unwrap().unwrap().metadata.len(), 2);
    }

    #[tokio::test]
    async fn a_deleted_session_is_not_resurrected_from_the_copy() {
        let shared = Arc::new(MemoryStore::new());
        let a = WriteThroughStore::new(shared.clone(), FreshSessions::default());
        a.update("s", &mut add("x")).await.unwrap();
        assert_eq!(kept(&a), 1);
        shared.delete("s").await.unwrap();
        // The copy says version 1; the store has none: the conditional write fails, a re-read starts anew.
        assert_eq!(a.update("s", &mut add("y")).await.unwrap(), 1);
        let s = shared.get("s").await.unwrap().unwrap();
        assert_eq!(s.metadata.len(), 1);
    }
}
