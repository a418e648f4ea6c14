//! `GET /metrics`: the Prometheus text exposition.

use axum::{extract::State, http::header, response::IntoResponse};

use crate::state::AppState;

/// Prometheus metrics (runs, agents, store, HTTP).
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain", body = String))
)]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    crate::policy::record_circuit_metrics(&state.orch);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
}
