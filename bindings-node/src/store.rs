//! Session stores for JavaScript: `MemoryStore` and (with this crate's
//! `redis` feature, on by default) `RedisStore`.

use std::{sync::Arc, time::Duration};

use napi_derive::napi;
use orchestra_core::{
    SessionStore,
    session::{MemoryStore, MemoryStoreConfig},
};

use crate::error::NapiExt;

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

    /// Resolves when the store answers.
    #[napi]
    pub async fn ping(&self) -> napi::Result<()> {
        self.store.ping().await.napi()
    }

    /// "memory" or "redis".
    #[napi(getter)]
    pub fn kind(&self) -> String {
        self.store.kind().to_owned()
    }
}

#[cfg(feature = "redis")]
mod redis {
    use std::{sync::Arc, time::Duration};

    use napi::bindgen_prelude::within_runtime_if_available;
    use napi_derive::napi;
    use orchestra_core::session::{RedisStore, RedisStoreConfig};

    use super::NativeStore;
    use crate::error::NapiExt;

    #[napi]
    impl NativeStore {
        /// A Redis store; connects on first use. Times are in milliseconds;
        /// `ttl_ms` of 0 keeps sessions until deleted.
        #[napi(factory)]
        pub fn redis(
            url: String,
            prefix: Option<String>,
            ttl_ms: Option<f64>,
            connect_timeout_ms: Option<f64>,
            response_timeout_ms: Option<f64>,
        ) -> napi::Result<Self> {
            let millis = |ms: f64| Duration::from_millis(ms.max(0.0) as u64);
            let mut config = RedisStoreConfig::default();
            if let Some(p) = prefix {
                config = config.prefix(p);
            }
            if let Some(ms) = ttl_ms {
                config = config.ttl((ms > 0.0).then(|| millis(ms)));
            }
            if let Some(ms) = connect_timeout_ms {
                config = config.connect_timeout(millis(ms));
            }
            if let Some(ms) = response_timeout_ms {
                config = config.response_timeout(millis(ms));
            }
            let store =
                within_runtime_if_available(|| RedisStore::connect_lazy(&url, config)).napi()?;
            Ok(Self {
                store: Arc::new(store),
            })
        }
    }
}
