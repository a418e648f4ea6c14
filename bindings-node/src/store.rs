//! Session stores for JavaScript: `MemoryStore` and (with the core's `redis`
//! feature) `RedisStore`.

use std::{sync::Arc, time::Duration};

use napi_derive::napi;
use orchestra_core::{
    SessionStore,
    session::{MemoryStore, MemoryStoreConfig},
};

/// A session store handle that an orchestrator can be built on.
#[napi]
pub struct NativeStore {
    store: Arc<dyn SessionStore>,
}

impl NativeStore {
    pub fn store(&self) -> Arc<dyn SessionStore> {
        self.store.clone()
    }
}

#[napi]
impl NativeStore {
    /// An in-memory store; `ttl_ms` of 0 keeps sessions until evicted.
    #[napi(factory)]
    pub fn memory(ttl_ms: Option<f64>, max_sessions: Option<u32>) -> Self {
        let mut config = MemoryStoreConfig::default();
        if let Some(ms) = ttl_ms {
            config.ttl = (ms > 0.0).then(|| Duration::from_millis(ms as u64));
        }
        if let Some(n) = max_sessions {
            config.max_sessions = n as usize;
        }
        Self {
            store: Arc::new(MemoryStore::with_config(config)),
        }
    }

    /// "memory" or "redis".
    #[napi(getter)]
    pub fn kind(&self) -> String {
        self.store.kind().to_owned()
    }
}
