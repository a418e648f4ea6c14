//! Queue agents and workers (features `redis` / `nats`, on by default): an agent
//! answered by workers behind Redis Streams or NATS, and a JS function
//! served as such a worker (`serveAgent`). Options cross as snake_case JSON.

// The test build does not register exported functions with Node, which
// would leave `serveAgent` and its helpers unused there.
#![cfg_attr(test, allow(dead_code))]

use std::{sync::Mutex, time::Duration};

use futures::FutureExt;
use napi::{Env, bindgen_prelude::PromiseRaw};
use napi_derive::napi;
use orchestra_core::{
    agents::queue::{QueueAgent, QueueConfig, QueueTransport},
    worker::{Worker, WorkerHandle},
};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::{
    callback::{JsCallback, JsCallbackFn},
    components::JsAgent,
    error::binding_error,
    orchestrator::NativeOrchestrator,
};

/// `{prefix?, jetstream?, claim_idle_ms?, timeout_ms?, registry_url?, registry_prefix?}`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct QueueOptions {
    #[serde(default)]
    prefix: Option<String>,
    #[serde(default)]
    jetstream: bool,
    #[serde(default)]
    claim_idle_ms: Option<u64>,
    #[serde(default)]
    timeout_ms: Option<u64>,
    #[serde(default)]
    registry_url: Option<String>,
    #[serde(default)]
    registry_prefix: Option<String>,
}

impl QueueOptions {
    fn parse(json: Option<String>) -> napi::Result<Self> {
        match json {
            None => Ok(Self::default()),
            Some(j) => serde_json::from_str(&j).map_err(|e| {
                binding_error("invalid_request", format!("invalid request: options: {e}"))
            }),
        }
    }

    fn config(&self) -> QueueConfig {
        let mut config = QueueConfig::default().jetstream(self.jetstream);
        if let Some(prefix) = &self.prefix {
            config = config.prefix(prefix.clone());
        }
        if let Some(ms) = self.claim_idle_ms {
            config = config.claim_idle(Duration::from_millis(ms));
        }
        config
    }
}

async fn connect(transport: &str, options: &QueueOptions) -> napi::Result<QueueTransport> {
    QueueTransport::connect(transport, options.config())
        .await
        .map_err(|e| binding_error(e.code(), e))
}

#[napi]
impl NativeOrchestrator {
    /// Registers an agent answered by workers behind a queue; resolves once
    /// its transport is connected.
    #[napi]
    pub async fn add_queue_agent(
        &self,
        name: String,
        transport: String,
        description: String,
        options: Option<String>,
    ) -> napi::Result<()> {
        let options = QueueOptions::parse(options)?;
        let transport = connect(&transport, &options).await?;
        let mut b = QueueAgent::builder(name, transport).description(description);
        if let Some(ms) = options.timeout_ms {
            b = b.timeout(Duration::from_millis(ms));
        }
        let agent = b.build().map_err(|e| binding_error(e.code(), e))?;
        self.orchestrator().register(agent);
        Ok(())
    }
}

/// Serves a wrapped JS agent function on a queue; resolves once the worker
/// receives requests.
#[napi]
pub async fn serve_agent(
    name: String,
    description: String,
    callback: JsCallbackFn,
    transport: String,
    options: Option<String>,
) -> napi::Result<NativeWorker> {
    let options = QueueOptions::parse(options)?;
    let transport = connect(&transport, &options).await?;
    let agent = JsAgent::new(name, description, JsCallback::new(callback));
    let mut worker = Worker::new(agent, transport);
    if let Some(url) = &options.registry_url {
        worker = register(worker, url, options.registry_prefix.clone()).await?;
    }
    let stop = CancellationToken::new();
    let handle = worker
        .start(stop.clone())
        .await
        .map_err(|e| binding_error(e.code(), e))?;
    Ok(NativeWorker {
        id: handle.id().to_owned(),
        ended: handle.ended().boxed().shared(),
        stop,
        handle: Mutex::new(Some(handle)),
    })
}

#[cfg(feature = "redis")]
async fn register(worker: Worker, url: &str, prefix: Option<String>) -> napi::Result<Worker> {
    use orchestra_core::{RedisStore, RedisStoreConfig, discovery::RedisAgentRegistry};
    let store = RedisStore::connect(
        url,
        RedisStoreConfig::default().prefix(prefix.unwrap_or_else(|| "orchestra".into())),
    )
    .await
    .map_err(|e| binding_error(e.code(), e))?;
    Ok(worker.register(RedisAgentRegistry::new(&store, Duration::from_secs(15))))
}

#[cfg(not(feature = "redis"))]
async fn register(_: Worker, _: &str, _: Option<String>) -> napi::Result<Worker> {
    Err(binding_error(
        "invalid_request",
        "orchestra-sdk was built without Redis support (registryUrl)",
    ))
}

/// A running queue worker.
#[napi]
pub struct NativeWorker {
    id: String,
    stop: CancellationToken,
    ended: crate::stream::Ended,
    handle: Mutex<Option<WorkerHandle>>,
}

impl NativeWorker {
    fn take(&self) -> Option<WorkerHandle> {
        match self.handle.lock() {
            Ok(mut h) => h.take(),
            Err(p) => p.into_inner().take(),
        }
    }
}

#[napi]
impl NativeWorker {
    /// The worker's consumer name on the queue.
    #[napi(getter)]
    pub fn id(&self) -> String {
        self.id.clone()
    }

    #[napi(getter)]
    pub fn running(&self) -> bool {
        let h = match self.handle.lock() {
            Ok(h) => h,
            Err(p) => p.into_inner(),
        };
        h.as_ref().is_some_and(|h| !h.is_finished())
    }

    /// Stops taking requests; resolves once the request in flight is answered.
    #[napi]
    pub async fn stop(&self) -> napi::Result<()> {
        self.stop.cancel();
        self.wait().await
    }

    /// Resolves when the worker has stopped (with its error, to the waiter
    /// that joins it).
    #[napi]
    pub async fn wait(&self) -> napi::Result<()> {
        match self.take() {
            Some(h) => h.join().await.map_err(|e| binding_error(e.code(), e)),
            None => {
                self.ended.clone().await;
                Ok(())
            }
        }
    }

    /// Resolves once the worker has stopped, without taking it over (stop
    /// and abort still work). Not an async method, which would hold the
    /// object: the facade keeps this pending so that a worker keeps the
    /// process alive, as a listening server does.
    #[napi(ts_return_type = "Promise<void>")]
    pub fn ended<'env>(&self, env: &'env Env) -> napi::Result<PromiseRaw<'env, ()>> {
        crate::stream::ended_promise(env, &self.ended)
    }

    /// Ends the worker at once without answering the request in flight, as
    /// a crashed process would; another worker takes the request over.
    #[napi]
    pub fn abort(&self) {
        if let Some(h) = self.take() {
            h.abort();
        }
    }
}
