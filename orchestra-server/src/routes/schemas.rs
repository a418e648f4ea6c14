//! `GET /schemas/events.json`: the JSON Schema of every orchestration event,
//! straight from the core, so SSE consumers can validate what they receive.

use std::sync::OnceLock;

use axum::Json;
use serde_json::Value;

/// The JSON Schema of every event type (versioned by `schema_version`).
#[utoipa::path(
    get,
    path = "/schemas/events.json",
    tag = "patterns",
    responses((status = 200, description = "JSON Schema of OrchestrationEvent (all types)", body = Object))
)]
pub async fn events_schema() -> Json<Value> {
    static SCHEMA: OnceLock<Value> = OnceLock::new();
    Json(
        SCHEMA
            .get_or_init(orchestra_core::event::event_schema)
            .clone(),
    )
}
