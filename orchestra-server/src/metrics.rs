//! Prometheus metrics. Run and agent metrics are derived from each run's
//! events (streamed, or handed to an observer for plain runs), so the core
//! needs no metrics of its own; store latency comes from [`MeteredStore`], a
//! wrapper around the session store.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `orchestra_runs_total` | counter | pattern, status |
//! | `orchestra_run_duration_seconds` | histogram | pattern, status |
//! | `orchestra_run_tokens_total` | counter | pattern, kind (prompt, completion) |
//! | `orchestra_agent_call_duration_seconds` | histogram | agent |
//! | `orchestra_agent_errors_total` | counter | agent, code |
//! | `orchestra_policy_decisions_total` | counter | agent, kind (retry, fallback, circuit_*) |
//! | `orchestra_circuit_state` | gauge (0 closed, 1 open, 2 half-open) | agent |
//! | `orchestra_active_runs` | gauge | |
//! | `orchestra_active_streams` | gauge | |
//! | `orchestra_store_operation_duration_seconds` | histogram | store, op, outcome |
//! | `orchestra_http_requests_total` | counter | method, route, status |
//! | `orchestra_http_request_duration_seconds` | histogram | method, route |
//! | `orchestra_queue_depth` | gauge (read at scrape) | |
//! | `orchestra_queue_pending` | gauge (read at scrape) | |
//! | `orchestra_queue_dead_letters` | gauge (read at scrape) | |
//! | `orchestra_queue_runs_enqueued_total` | counter | |
//! | `orchestra_queue_runs_completed_total` | counter | status |
//! | `orchestra_queue_attempts_failed_total` | counter | |
//!
//! The queue gauges describe the shared queue (every instance reports the
//! same values); the queue counters count what this instance did.

use std::{
    collections::HashMap,
    hash::Hash,
    sync::{Mutex, OnceLock},
    time::Instant,
};

use async_trait::async_trait;
use axum::{
    extract::{MatchedPath, Request},
    middleware::Next,
    response::Response,
};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use orchestra_core::{
    EventKind, OrchestrationEvent, RunResult, StoreError,
    session::{Page, Session, SessionStore, SessionSummary},
};

const DURATION_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 120.0, 300.0,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process-wide Prometheus recorder. Installed once; if the embedding
/// program installed another recorder first, metrics go there and this
/// handle renders an empty page.
pub fn prometheus() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let builder = || {
                PrometheusBuilder::new()
                    .set_buckets_for_metric(
                        Matcher::Suffix("duration_seconds".into()),
                        DURATION_BUCKETS,
                    )
                    .unwrap_or_else(|_| PrometheusBuilder::new())
            };
            match builder().install_recorder() {
                Ok(handle) => {
                    describe();
                    crate::policy::describe();
                    handle
                }
                Err(e) => {
                    tracing::warn!(error = %e, "a metrics recorder is already installed; /metrics will be empty");
                    builder().build_recorder().handle()
                }
            }
        })
        .clone()
}

fn describe() {
    metrics::describe_counter!(
        "orchestra_runs_total",
        "Runs finished, by pattern and status."
    );
    metrics::describe_counter!(
        "orchestra_run_tokens_total",
        "Model tokens of finished runs (agents, LLM managers and planners), by pattern and kind."
    );
    metrics::describe_histogram!(
        "orchestra_run_duration_seconds",
        metrics::Unit::Seconds,
        "Run duration, by pattern and status."
    );
    metrics::describe_histogram!(
        "orchestra_agent_call_duration_seconds",
        metrics::Unit::Seconds,
        "Duration of successful agent calls, by agent."
    );
    metrics::describe_counter!(
        "orchestra_agent_errors_total",
        "Failed agent call attempts, by agent and error code."
    );
    metrics::describe_gauge!("orchestra_active_runs", "Runs in flight.");
    metrics::describe_gauge!("orchestra_active_streams", "Open SSE streams.");
    metrics::describe_histogram!(
        "orchestra_store_operation_duration_seconds",
        metrics::Unit::Seconds,
        "Session store operation latency, by operation and outcome."
    );
    metrics::describe_counter!(
        "orchestra_http_requests_total",
        "HTTP requests, by method, route and status."
    );
    metrics::describe_histogram!(
        "orchestra_http_request_duration_seconds",
        metrics::Unit::Seconds,
        "HTTP request latency until the response head, by method and route."
    );
    metrics::describe_gauge!(
        "orchestra_queue_depth",
        "Runs in the shared run queue: waiting for a worker or being executed."
    );
    metrics::describe_gauge!(
        "orchestra_queue_pending",
        "Queued runs delivered to a worker and not finished yet."
    );
    metrics::describe_gauge!(
        "orchestra_queue_dead_letters",
        "Runs in the dead-letter stream."
    );
    metrics::describe_counter!(
        "orchestra_queue_runs_enqueued_total",
        "Runs this instance put on the run queue."
    );
    metrics::describe_counter!(
        "orchestra_queue_runs_completed_total",
        "Queued runs this instance's workers finished, by the run's status."
    );
    metrics::describe_counter!(
        "orchestra_queue_attempts_failed_total",
        "Attempts at a queued run that failed on this instance (retried later or dead-lettered)."
    );
}

/// Sets the queue gauges from a fresh reading.
pub fn record_queue_stats(stats: &orchestra_core::queue::QueueStats) {
    metrics::gauge!("orchestra_queue_depth").set(stats.depth as f64);
    metrics::gauge!("orchestra_queue_pending").set(stats.pending as f64);
    metrics::gauge!("orchestra_queue_dead_letters").set(stats.dead_letters as f64);
}

/// Counts a run put on the queue.
pub fn queue_enqueued() {
    metrics::counter!("orchestra_queue_runs_enqueued_total").increment(1);
}

/// Counts how one attempt at a queued run ended: a result (labelled by the
/// run's status) or an error.
pub fn queue_attempt<E>(outcome: &Result<serde_json::Value, E>) {
    match outcome {
        Ok(result) => {
            let status = result["status"].as_str().unwrap_or("unknown").to_owned();
            metrics::counter!("orchestra_queue_runs_completed_total", "status" => status)
                .increment(1);
        }
        Err(_) => metrics::counter!("orchestra_queue_attempts_failed_total").increment(1),
    }
}

/// Records what one event says about agents and runs.
pub fn observe(event: &OrchestrationEvent) {
    match &event.kind {
        EventKind::AgentCompleted {
            agent, duration_ms, ..
        } => {
            static CALLS: Handles<String, metrics::Histogram> = Handles::new();
            CALLS
                .get(agent, || metrics::histogram!("orchestra_agent_call_duration_seconds", "agent" => agent.clone()))
                .record(*duration_ms as f64 / 1000.0);
        }
        EventKind::AgentFailed { agent, error, .. } => {
            metrics::counter!(
                "orchestra_agent_errors_total",
                "agent" => agent.clone(),
                "code" => error.code.clone()
            )
            .increment(1);
        }
        EventKind::Retry { agent, .. }
        | EventKind::Fallback { from: agent, .. }
        | EventKind::CircuitOpened { agent, .. }
        | EventKind::CircuitHalfOpen { agent, .. }
        | EventKind::CircuitClosed { agent, .. } => {
            metrics::counter!(
                "orchestra_policy_decisions_total",
                "agent" => agent.clone(),
                "kind" => event.type_name()
            )
            .increment(1);
        }
        kind => {
            if let Some(result) = kind.result() {
                observe_run(result);
            }
        }
    }
}

fn observe_run(r: &RunResult) {
    let status = r.status.as_str();
    metrics::counter!("orchestra_runs_total", "pattern" => r.pattern.clone(), "status" => status)
        .increment(1);
    metrics::histogram!(
        "orchestra_run_duration_seconds",
        "pattern" => r.pattern.clone(),
        "status" => status
    )
    .record(r.duration_ms as f64 / 1000.0);
    for (kind, tokens) in [
        ("prompt", r.usage.prompt_tokens),
        ("completion", r.usage.completion_tokens),
    ] {
        if tokens > 0 {
            metrics::counter!(
                "orchestra_run_tokens_total",
                "pattern" => r.pattern.clone(),
                "kind" => kind
            )
            .increment(tokens);
        }
    }
}

/// Counts a run (and, for streams, an open stream) while it lives.
pub struct InFlight {
    stream: bool,
}

impl InFlight {
    pub fn run() -> Self {
        metrics::gauge!("orchestra_active_runs").increment(1.0);
        Self { stream: false }
    }

    pub fn stream() -> Self {
        metrics::gauge!("orchestra_active_runs").increment(1.0);
        metrics::gauge!("orchestra_active_streams").increment(1.0);
        Self { stream: true }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        metrics::gauge!("orchestra_active_runs").decrement(1.0);
        if self.stream {
            metrics::gauge!("orchestra_active_streams").decrement(1.0);
        }
    }
}

/// Request counts and latency by matched route (not raw path, so session ids
/// do not explode the label space).
pub async fn http_metrics(req: Request, next: Next) -> Response {
    static HTTP: Handles<
        (axum::http::Method, String, u16),
        (metrics::Histogram, metrics::Counter),
    > = Handles::new();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = req.method().clone();
    let start = Instant::now();
    let response = next.run(req).await;
    let elapsed = start.elapsed().as_secs_f64();
    let status = response.status().as_u16();
    let key = (method, route, status);
    let (duration, count) = HTTP.get(&key, || {
        let (method, route, status) = &key;
        (
            metrics::histogram!(
                "orchestra_http_request_duration_seconds",
                "method" => method.as_str().to_owned(),
                "route" => route.clone()
            ),
            metrics::counter!(
                "orchestra_http_requests_total",
                "method" => method.as_str().to_owned(),
                "route" => route.clone(),
                "status" => status.to_string()
            ),
        )
    });
    duration.record(elapsed);
    count.increment(1);
    response
}

/// Metric handles by label values, so a hot path records through a lookup
/// instead of building and registering a labelled key every time. Bounded:
/// it starts over past [`Handles::MAX`] entries (unusual label values such
/// as many agent names only cost a re-registration).
struct Handles<K, H>(OnceLock<Mutex<HashMap<K, H>>>);

impl<K: Eq + Hash + Clone, H: Clone> Handles<K, H> {
    const MAX: usize = 4096;

    const fn new() -> Self {
        Self(OnceLock::new())
    }

    fn get<Q>(&self, key: &Q, make: impl FnOnce() -> H) -> H
    where
        K: std::borrow::Borrow<Q>,
        Q: Eq + Hash + ToOwned<Owned = K> + ?Sized,
    {
        let mut map = self
            .0
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(h) = map.get(key) {
            return h.clone();
        }
        if map.len() >= Self::MAX {
            map.clear();
        }
        let h = make();
        map.insert(key.to_owned(), h.clone());
        h
    }
}

/// A session store that times every operation.
pub struct MeteredStore<S> {
    inner: S,
}

impl<S: SessionStore> MeteredStore<S> {
    pub fn new(inner: S) -> Self {
        Self { inner }
    }

    fn record<T>(&self, op: &'static str, start: Instant, r: &Result<T, StoreError>) {
        let outcome = match r {
            Ok(_) => "ok",
            Err(e) => e.code(),
        };
        static OPS: Handles<(&'static str, &'static str, &'static str), metrics::Histogram> =
            Handles::new();
        let key = (self.inner.kind(), op, outcome);
        OPS.get(&key, || {
            metrics::histogram!(
                "orchestra_store_operation_duration_seconds",
                "store" => key.0,
                "op" => key.1,
                "outcome" => key.2
            )
        })
        .record(start.elapsed().as_secs_f64());
    }
}

#[async_trait]
impl<S: SessionStore> SessionStore for MeteredStore<S> {
    async fn get(&self, id: &str) -> Result<Option<Session>, StoreError> {
        let start = Instant::now();
        let r = self.inner.get(id).await;
        self.record("get", start, &r);
        r
    }

    async fn put(&self, session: &Session, expected: Option<u64>) -> Result<u64, StoreError> {
        let start = Instant::now();
        let r = self.inner.put(session, expected).await;
        self.record("put", start, &r);
        r
    }

    async fn delete(&self, id: &str) -> Result<bool, StoreError> {
        let start = Instant::now();
        let r = self.inner.delete(id).await;
        self.record("delete", start, &r);
        r
    }

    async fn list(&self, page: Page) -> Result<Vec<SessionSummary>, StoreError> {
        let start = Instant::now();
        let r = self.inner.list(page).await;
        self.record("list", start, &r);
        r
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let start = Instant::now();
        let r = self.inner.ping().await;
        self.record("ping", start, &r);
        r
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

    fn updates_in_place(&self) -> bool {
        self.inner.updates_in_place()
    }

    async fn index_run(&self, run_id: &str, session_id: &str) -> Result<(), StoreError> {
        let start = Instant::now();
        let r = self.inner.index_run(run_id, session_id).await;
        self.record("index_run", start, &r);
        r
    }

    async fn find_run(&self, run_id: &str) -> Result<Option<String>, StoreError> {
        let start = Instant::now();
        let r = self.inner.find_run(run_id).await;
        self.record("find_run", start, &r);
        r
    }

    async fn save_checkpoint(&self, run: &orchestra_core::RunResult) -> Result<(), StoreError> {
        let start = Instant::now();
        let r = self.inner.save_checkpoint(run).await;
        self.record("save_checkpoint", start, &r);
        r
    }

    async fn load_checkpoint(
        &self,
        run_id: &str,
    ) -> Result<Option<orchestra_core::RunResult>, StoreError> {
        let start = Instant::now();
        let r = self.inner.load_checkpoint(run_id).await;
        self.record("load_checkpoint", start, &r);
        r
    }

    async fn clear_checkpoint(&self, run_id: &str) -> Result<(), StoreError> {
        let start = Instant::now();
        let r = self.inner.clear_checkpoint(run_id).await;
        self.record("clear_checkpoint", start, &r);
        r
    }

    /// Forwarded, so a store that changes sessions in place (the memory
    /// store) keeps doing so instead of falling back to a read and a write.
    async fn update(
        &self,
        id: &str,
        change: &mut (dyn for<'s> FnMut(&'s mut Session) + Send),
    ) -> Result<u64, StoreError> {
        let start = Instant::now();
        let r = self.inner.update(id, change).await;
        self.record("update", start, &r);
        r
    }
}
