//! [`MemoryStore`]: the embedded, in-process session store.
//!
//! Bounded on two axes so a long-lived process never grows without limit:
//! sessions expire after a TTL of inactivity, and past `max_sessions` the
//! least recently used session is evicted.

use std::{num::NonZeroUsize, sync::Mutex, time::Duration};

use async_trait::async_trait;
use lru::LruCache;
use tokio::time::Instant;

use super::{Page, Session, SessionStore, SessionSummary};
use crate::error::StoreError;

/// Limits for a [`MemoryStore`].
#[derive(Debug, Clone, Copy)]
pub struct MemoryStoreConfig {
    /// Idle time after which a session is dropped; `None` keeps sessions until evicted.
    pub ttl: Option<Duration>,
    /// Most sessions kept; the least recently used goes first.
    pub max_sessions: usize,
}

impl Default for MemoryStoreConfig {
    fn default() -> Self {
        Self {
            ttl: Some(Duration::from_secs(24 * 3600)),
            max_sessions: 10_000,
        }
    }
}

struct Entry {
    session: Session,
    expires_at: Option<Instant>,
}

/// In-process sessions with TTL and LRU eviction.
pub struct MemoryStore {
    ttl: Option<Duration>,
    entries: Mutex<LruCache<String, Entry>>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    /// A store with the default limits (24 h TTL, 10 000 sessions).
    pub fn new() -> Self {
        Self::with_config(MemoryStoreConfig::default())
    }

    pub fn with_config(config: MemoryStoreConfig) -> Self {
        let cap = NonZeroUsize::new(config.max_sessions).unwrap_or(NonZeroUsize::MIN);
        Self {
            ttl: config.ttl,
            entries: Mutex::new(LruCache::new(cap)),
        }
    }

    /// Number of live sessions.
    pub fn len(&self) -> usize {
        let now = Instant::now();
        self.lock().iter().filter(|(_, e)| !expired(e, now)).count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LruCache<String, Entry>> {
        // A panic while holding the lock cannot leave an entry half-written
        // (entries are replaced whole), so a poisoned lock is still usable.
        match self.entries.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }
}

fn expired(e: &Entry, now: Instant) -> bool {
    e.expires_at.is_some_and(|t| t <= now)
}

#[async_trait]
impl SessionStore for MemoryStore {
    async fn find_run(&self, run_id: &str) -> Result<Option<String>, StoreError> {
        // Only resuming looks runs up by id; a scan is fine in memory.
        let now = Instant::now();
        Ok(self
            .lock()
            .iter()
            .filter(|(_, e)| !expired(e, now))
            .find(|(_, e)| e.session.runs.iter().any(|r| r.run_id == run_id))
            .map(|(id, _)| id.clone()))
    }

    async fn get(&self, id: &str) -> Result<Option<Session>, StoreError> {
        let now = Instant::now();
        let mut entries = self.lock();
        match entries.get(id) {
            Some(e) if expired(e, now) => {
                entries.pop(id);
                Ok(None)
            }
            Some(e) => Ok(Some(e.session.clone())),
            None => Ok(None),
        }
    }

    async fn put(&self, session: &Session, expected: Option<u64>) -> Result<u64, StoreError> {
        let now = Instant::now();
        let mut entries = self.lock();
        let found = entries
            .peek(&session.id)
            .filter(|e| !expired(e, now))
            .map(|e| e.session.version);
        if found != expected {
            return Err(StoreError::Conflict {
                id: session.id.clone(),
                expected,
                found,
            });
        }
        let version = expected.unwrap_or(0) + 1;
        let mut stored = session.clone();
        stored.version = version;
        entries.put(
            session.id.clone(),
            Entry {
                session: stored,
                expires_at: self.ttl.map(|t| now + t),
            },
        );
        Ok(version)
    }

    async fn delete(&self, id: &str) -> Result<bool, StoreError> {
        let now = Instant::now();
        Ok(self.lock().pop(id).is_some_and(|e| !expired(&e, now)))
    }

    async fn list(&self, page: Page) -> Result<Vec<SessionSummary>, StoreError> {
        let now = Instant::now();
        let mut all: Vec<SessionSummary> = self
            .lock()
            .iter()
            .filter(|(_, e)| !expired(e, now))
            .map(|(_, e)| e.session.summary())
            .collect();
        all.sort_by(|a, b| {
            b.updated_at
                .cmp(&a.updated_at)
                .then_with(|| a.id.cmp(&b.id))
        });
        Ok(all.into_iter().skip(page.offset).take(page.limit).collect())
    }

    fn kind(&self) -> &'static str {
        "memory"
    }

    fn updates_in_place(&self) -> bool {
        true
    }

    /// Changes the session in place under the lock: no copies, no conflicts.
    async fn update(
        &self,
        id: &str,
        change: &mut (dyn for<'s> FnMut(&'s mut Session) + Send),
    ) -> Result<u64, StoreError> {
        let now = Instant::now();
        let expires_at = self.ttl.map(|t| now + t);
        let mut entries = self.lock();
        // One lookup for a live session; an expired one is dropped and started afresh.
        let stale = match entries.get_mut(id) {
            Some(e) if !expired(e, now) => {
                change(&mut e.session);
                e.session.version += 1;
                e.session.updated_at = chrono::Utc::now();
                e.expires_at = expires_at;
                return Ok(e.session.version);
            }
            Some(_) => entries.pop(id),
            None => None,
        };
        let mut session = Session::new(id);
        change(&mut session);
        session.version = 1;
        let evicted = entries.push(
            id.to_owned(),
            Entry {
                session,
                expires_at,
            },
        );
        // Free the evicted and expired sessions after releasing the lock.
        drop(entries);
        drop(evicted);
        drop(stale);
        Ok(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn create(store: &MemoryStore, id: &str) {
        store.put(&Session::new(id), None).await.unwrap();
    }

    #[tokio::test]
    async fn a_stale_version_is_rejected() {
        let store = MemoryStore::new();
        create(&store, "a").await;
        let s = store.get("a").await.unwrap().unwrap();
        assert_eq!(store.put(&s, Some(1)).await.unwrap(), 2);
        let err = store.put(&s, Some(1)).await.unwrap_err();
        assert!(matches!(err, StoreError::Conflict { found: Some(2), .. }));
        assert!(matches!(
            store.put(&s, None).await.unwrap_err(),
            StoreError::Conflict { .. }
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn sessions_expire_after_the_ttl() {
        let store = MemoryStore::with_config(MemoryStoreConfig {
            ttl: Some(Duration::from_secs(60)),
            max_sessions: 10,
        });
        create(&store, "a").await;
        tokio::time::advance(Duration::from_secs(59)).await;
        assert!(store.get("a").await.unwrap().is_some());
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(store.get("a").await.unwrap().is_none());
        assert!(store.is_empty());
        // An expired id can be created afresh.
        create(&store, "a").await;
    }

    #[tokio::test]
    async fn the_least_recently_used_session_is_evicted() {
        let store = MemoryStore::with_config(MemoryStoreConfig {
            ttl: None,
            max_sessions: 2,
        });
        create(&store, "a").await;
        create(&store, "b").await;
        store.get("a").await.unwrap(); // a is now more recent than b
        create(&store, "c").await;
        assert!(store.get("b").await.unwrap().is_none());
        assert!(store.get("a").await.unwrap().is_some());
        assert_eq!(store.len(), 2);
    }

    #[tokio::test]
    async fn listing_is_newest_first_and_paged() {
        let store = MemoryStore::new();
        for id in ["a", "b", "c"] {
            create(&store, id).await;
        }
        let mut s = store.get("a").await.unwrap().unwrap();
        s.updated_at = chrono::Utc::now() + chrono::Duration::seconds(5);
        store.put(&s, Some(1)).await.unwrap();
        let page = store
            .list(Page {
                offset: 0,
                limit: 2,
            })
            .await
            .unwrap();
        assert_eq!(page.len(), 2);
        assert_eq!(page[0].id, "a");
        let rest = store
            .list(Page {
                offset: 2,
                limit: 10,
            })
            .await
            .unwrap();
        assert_eq!(rest.len(), 1);
        assert!(store.delete("a").await.unwrap());
        assert!(!store.delete("a").await.unwrap());
    }
}
