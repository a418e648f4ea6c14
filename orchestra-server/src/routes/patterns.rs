//! `GET /patterns`: the five patterns with descriptions and options schemas,
//! straight from the core's catalog so they never drift from the code.

use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

/// One pattern.
#[derive(Debug, Serialize, ToSchema)]
pub struct PatternListing {
    /// "sequential", "concurrent", "handoff", "group_chat" or "dynamic".
    pub name: String,
    pub description: String,
    /// JSON Schema of the pattern's `options`, common run options included.
    #[schema(value_type = Object)]
    pub options_schema: serde_json::Value,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PatternList {
    pub patterns: Vec<PatternListing>,
}

/// Lists the patterns.
#[utoipa::path(
    get,
    path = "/patterns",
    tag = "patterns",
    responses((status = 200, description = "The five patterns", body = PatternList))
)]
pub async fn list_patterns() -> Json<PatternList> {
    let patterns = orchestra_core::pattern::catalog()
        .into_iter()
        .map(|p| PatternListing {
            name: p.name.to_owned(),
            description: p.description.to_owned(),
            options_schema: p.options_schema,
        })
        .collect();
    Json(PatternList { patterns })
}
