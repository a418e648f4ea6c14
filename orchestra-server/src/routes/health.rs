//! `GET /health`: readiness of the service and each dependency.
//! 200 when ready; 503 when the session store fails its ping, a critical
//! agent's probe fails, or the server is shutting down.

use std::time::{Duration, Instant};

use axum::{Json, extract::State, http::StatusCode};
use serde::Serialize;
use utoipa::ToSchema;

use crate::{discovery::AgentListing, routes::agents::listings, state::AppState};

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// "ready", "unavailable" or "draining".
    pub status: String,
    pub version: String,
    pub store: StoreHealth,
    pub agents: Vec<AgentListing>,
    /// Runs in flight in this process.
    pub active_runs: usize,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StoreHealth {
    /// "memory", "redis", ...
    pub kind: String,
    /// "ok" or "down".
    pub status: String,
    pub latency_ms: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Readiness and dependencies.
#[utoipa::path(
    get,
    path = "/health",
    tag = "operations",
    responses(
        (status = 200, description = "Ready", body = Health),
        (status = 503, description = "A dependency is down or the server is draining", body = Health),
    )
)]
pub async fn health(State(state): State<AppState>) -> (StatusCode, Json<Health>) {
    let store = state.orch.store().clone();
    let start = Instant::now();
    let ping = tokio::time::timeout(Duration::from_secs(2), store.ping()).await;
    let latency_ms = start.elapsed().as_secs_f64() * 1000.0;
    let error = match ping {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e.code().to_owned()),
        Err(_) => Some("ping timed out".to_owned()),
    };
    let agents = listings(&state).await;
    let critical_down = agents.iter().any(|a| a.critical && a.health == "down");
    let status = if state.shutting_down.is_cancelled() {
        "draining"
    } else if error.is_some() || critical_down {
        "unavailable"
    } else {
        "ready"
    };
    let code = if status == "ready" {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = Health {
        status: status.into(),
        version: env!("CARGO_PKG_VERSION").into(),
        store: StoreHealth {
            kind: store.kind().into(),
            status: if error.is_none() { "ok" } else { "down" }.into(),
            latency_ms,
            error,
        },
        agents,
        active_runs: state.orch.active_runs(),
    };
    (code, Json(body))
}
