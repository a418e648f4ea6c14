//! `GET /metrics`: the Prometheus text exposition.

use std::time::Duration;

use axum::{extract::State, http::header, response::IntoResponse};

use crate::state::AppState;

/// Longest a scrape waits for the queue counts; on a slow or unreachable
/// Redis the gauges keep their last values rather than stall the scrape.
const QUEUE_STATS_WITHIN: Duration = Duration::from_secs(1);

/// Prometheus metrics (runs, agents, store, HTTP, run queue).
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain", body = String))
)]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    crate::policy::record_circuit_metrics(&state.orch);
    if let Some(redis) = &state.redis {
        match tokio::time::timeout(QUEUE_STATS_WITHIN, redis.queue.stats()).await {
            Ok(Ok(stats)) => crate::metrics::record_queue_stats(&stats),
            Ok(Err(e)) => tracing::debug!(error = %e, "queue stats unavailable"),
            Err(_) => tracing::debug!("queue stats timed out"),
        }
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
}
