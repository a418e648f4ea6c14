//! `GET /sessions`, `GET /sessions/{session_id}`, `DELETE /sessions/{session_id}`.

use axum::{
    Json,
    extract::{Path, Query, State, rejection::QueryRejection},
    http::StatusCode,
};
use orchestra_core::session::Page;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::{
    error::{ApiError, ErrorBody},
    routes::openapi::{SessionSchema, SessionSummarySchema},
    state::AppState,
};

/// Largest page `GET /sessions` returns.
pub const MAX_PAGE: usize = 200;

/// Paging of `GET /sessions` (most recently updated first).
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Sessions to skip (default 0).
    #[serde(default)]
    pub offset: usize,
    /// Page size, 1 to 200 (default 50).
    #[serde(default = "default_limit")]
    pub limit: usize,
}

fn default_limit() -> usize {
    50
}

/// A page of sessions.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionList {
    #[schema(value_type = Vec<SessionSummarySchema>)]
    pub sessions: Vec<orchestra_core::session::SessionSummary>,
    pub offset: usize,
    pub limit: usize,
    /// Pass as `offset` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_offset: Option<usize>,
}

/// Lists sessions, most recently updated first.
#[utoipa::path(
    get,
    path = "/sessions",
    tag = "sessions",
    params(ListParams),
    responses(
        (status = 200, description = "A page of session summaries", body = SessionList),
        (status = 400, description = "Bad paging parameters", body = ErrorBody),
        (status = 401, description = "Missing or wrong API key", body = ErrorBody),
        (status = 503, description = "Session store unavailable", body = ErrorBody),
    )
)]
pub async fn list_sessions(
    State(state): State<AppState>,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Json<SessionList>, ApiError> {
    let Query(p) = params
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", e.body_text()))?;
    if p.limit == 0 || p.limit > MAX_PAGE {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            format!("limit must be between 1 and {MAX_PAGE}"),
        ));
    }
    let sessions = state
        .orch
        .list_sessions(Page {
            offset: p.offset,
            limit: p.limit,
        })
        .await?;
    let next_offset = (sessions.len() == p.limit).then_some(p.offset + p.limit);
    Ok(Json(SessionList {
        sessions,
        offset: p.offset,
        limit: p.limit,
        next_offset,
    }))
}

/// One session: its messages, shared state and runs.
#[utoipa::path(
    get,
    path = "/sessions/{session_id}",
    tag = "sessions",
    params(("session_id" = String, Path, description = "1-128 characters of A-Z a-z 0-9 - _ . :")),
    responses(
        (status = 200, description = "The session", body = SessionSchema),
        (status = 400, description = "Invalid session id", body = ErrorBody),
        (status = 401, description = "Missing or wrong API key", body = ErrorBody),
        (status = 404, description = "No such session (`session_not_found`)", body = ErrorBody),
        (status = 503, description = "Session store unavailable", body = ErrorBody),
    )
)]
pub async fn get_session(
    State(state): State<AppState>,
    Path(session_id): Path<String>,
) -> Result<Json<orchestra_core::Session>, ApiError> {
    match state.orch.get_session(&session_id).await? {
        Some(s) => Ok(Json(s)),
        None => Err(not_found(&session_id)),
    }
}

/// Deletes a session.
#[utoipa::path(
    delete,
    path = "/sessions/{session_id}",
    tag = "sessions",
    params(("session_id" = String, Path, description = "1-128 characters of A-Z a-z 0-9 - _ . :")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "Invalid session id", body = ErrorBody),
        (status = 401, description = "Missing or wrong API key", body = ErrorBody),
        (status = 404, description = "No such session (`session_not_found`)", body = ErrorBody),
        (status = 503, description = "Session store unavailable", body = ErrorBody),
    )
)]
pub async fn delete_session(
    State(state): State<AppState>,
    Path(session_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    if state.orch.delete_session(&session_id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(not_found(&session_id))
    }
}

fn not_found(id: &str) -> ApiError {
    ApiError::not_found("session_not_found", format!("no session '{id}'"))
}
