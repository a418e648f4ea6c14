//! A run's event stream for JavaScript's async iterator.
//!
//! `next()` resolves to a JSON array of the events available now (at least
//! one), or null when the run's stream has ended, so a burst of events
//! crosses into JS in one hop. `cancel()` may be called while a `next()` is
//! pending; the stream then still ends with `run_cancelled`. Dropping the
//! object (garbage collection) cancels the run.
//!
//! JS agents are called through an unreferenced function, so nothing else
//! keeps the event loop alive while a run is in flight and no `next()` is
//! pending (for instance while the reader awaits something an agent will
//! do). The facade therefore keeps the Promise of `ended()` pending.

use std::sync::Arc;

use futures::{
    FutureExt, StreamExt,
    future::{BoxFuture, Shared},
};
use napi::{Env, bindgen_prelude::PromiseRaw};
use napi_derive::napi;
use orchestra_core::{OrchestrationEvent, RunStream};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use crate::error::binding_error;

/// Most events handed over per `next()` call.
const BATCH: usize = 256;

#[napi]
pub struct NativeRunStream {
    run_id: String,
    session_id: String,
    stream: Arc<Mutex<RunStream>>,
    stop: CancellationToken,
    ended: Ended,
}

/// Completes when a run (or a worker) has ended; cloned for each waiter.
pub(crate) type Ended = Shared<BoxFuture<'static, ()>>;

/// A Promise that resolves once `ended` completes. It holds no JS object,
/// unlike an async method's Promise, which holds its `this`.
pub(crate) fn ended_promise<'env>(
    env: &'env Env,
    ended: &Ended,
) -> napi::Result<PromiseRaw<'env, ()>> {
    let ended = ended.clone();
    env.spawn_future(async move {
        ended.await;
        Ok(())
    })
}

impl NativeRunStream {
    pub fn new(stream: RunStream) -> Self {
        Self {
            ended: stream.ended().boxed().shared(),
            run_id: stream.run_id().to_owned(),
            session_id: stream.session_id().to_owned(),
            stream: Arc::new(Mutex::new(stream)),
            stop: CancellationToken::new(),
        }
    }
}

#[napi]
impl NativeRunStream {
    #[napi(getter)]
    pub fn run_id(&self) -> String {
        self.run_id.clone()
    }

    #[napi(getter)]
    pub fn session_id(&self) -> String {
        self.session_id.clone()
    }

    /// The next events as a JSON array, or null at the end of the stream.
    #[napi]
    pub async fn next(&self) -> napi::Result<Option<String>> {
        let stream = self.stream.clone();
        let stop = self.stop.clone();
        let mut guard = stream.lock().await;
        if stop.is_cancelled() {
            guard.cancel();
        }
        let first = tokio::select! {
            ev = guard.next() => ev,
            () = stop.cancelled() => {
                guard.cancel();
                guard.next().await
            }
        };
        let Some(first) = first else {
            return Ok(None);
        };
        let mut batch: Vec<OrchestrationEvent> = vec![first];
        while batch.len() < BATCH {
            match guard.next().now_or_never() {
                Some(Some(ev)) => batch.push(ev),
                _ => break,
            }
        }
        serde_json::to_string(&batch)
            .map(Some)
            .map_err(|e| binding_error("internal_error", e))
    }

    /// Resolves once the run has ended, whether or not its events are read.
    /// Not an async method: those hold their object until they resolve, and
    /// an abandoned stream must stay collectable (which cancels its run).
    #[napi(ts_return_type = "Promise<void>")]
    pub fn ended<'env>(&self, env: &'env Env) -> napi::Result<PromiseRaw<'env, ()>> {
        ended_promise(env, &self.ended)
    }

    /// Cancels the run; the stream then ends with `run_cancelled`.
    #[napi]
    pub fn cancel(&self) {
        self.stop.cancel();
        if let Ok(guard) = self.stream.try_lock() {
            guard.cancel();
        }
    }
}
