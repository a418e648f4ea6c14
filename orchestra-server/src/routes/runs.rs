//! `GET /runs/{run_id}` (status and result of a queued run) and
//! `GET /runs/{run_id}/events` (its events as Server-Sent Events), served by
//! any instance on the same Redis.

use std::{convert::Infallible, time::Duration};

use axum::{
    Json,
    extract::{Path, State},
    http::{HeaderMap, HeaderName, HeaderValue, StatusCode},
    response::{
        IntoResponse, Response,
        sse::{Event, KeepAlive, Sse},
    },
};
use futures::{Stream, StreamExt};
use serde_json::Value;

use crate::{
    error::{ApiError, ErrorBody},
    state::{AppState, RedisBackend},
};

fn backend(state: &AppState) -> Result<&RedisBackend, ApiError> {
    state
        .redis
        .as_ref()
        .ok_or_else(|| ApiError::redis_required("the run queue"))
}

fn not_found(run_id: &str) -> ApiError {
    ApiError::not_found("run_not_found", format!("no queued run '{run_id}'"))
}

/// Status and result of a queued run.
///
/// `status` is the queue's: `queued`, `running`, `retrying` (an attempt
/// failed; it is delivered again), `completed` (it has a `result`; the run
/// itself may have failed: see `result.status`) or `dead` (moved to the
/// dead-letter stream after repeated failures; `error` says why).
#[utoipa::path(
    get,
    path = "/runs/{run_id}",
    tag = "runs",
    params(("run_id" = String, Path, description = "The id answered by an async POST /orchestrate")),
    responses(
        (status = 200, description = "`run_id`, `session_id`, `status`, `request`, `result` (a RunResult, once completed), `error`, `attempts`, `worker`, `submitted_at`, `updated_at`", body = Object),
        (status = 400, description = "Invalid run id (`invalid_run_id`)", body = ErrorBody),
        (status = 401, description = "Missing or wrong API key", body = ErrorBody),
        (status = 404, description = "No such run, or its record expired (`run_not_found`)", body = ErrorBody),
        (status = 409, description = "The server uses the memory store (`redis_required`)", body = ErrorBody),
        (status = 503, description = "Redis unavailable (`store_unavailable`)", body = ErrorBody),
    )
)]
pub async fn get_run(
    State(state): State<AppState>,
    Path(run_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let redis = backend(&state)?;
    let run = redis
        .queue
        .status(&run_id)
        .await?
        .ok_or_else(|| not_found(&run_id))?;
    let session_id = run.request.get("session_id").cloned();
    let mut body =
        serde_json::to_value(&run).map_err(|e| ApiError::internal("cannot encode a run", &e))?;
    if let (Some(obj), Some(sid)) = (body.as_object_mut(), session_id) {
        obj.insert("session_id".into(), sid);
    }
    Ok(Json(body))
}

/// The run's events as Server-Sent Events, from the first (or after
/// `Last-Event-ID`) until its terminal event.
///
/// `id:` is the event's position in the run's stream (resume by sending it
/// back as `Last-Event-ID`), `event:` its type, `data:` the event JSON. A
/// run retried after a worker died streams the new attempt's events after
/// the old one's; only the final attempt ends with `run_completed` or
/// `run_failed`, after which the stream closes.
#[utoipa::path(
    get,
    path = "/runs/{run_id}/events",
    tag = "runs",
    params(
        ("run_id" = String, Path, description = "The id answered by an async POST /orchestrate"),
        ("Last-Event-ID" = Option<u64>, Header, description = "Resume after this event"),
    ),
    responses(
        (status = 200, description = "A text/event-stream of orchestration events", content_type = "text/event-stream", body = String),
        (status = 400, description = "Invalid run id or Last-Event-ID", body = ErrorBody),
        (status = 401, description = "Missing or wrong API key", body = ErrorBody),
        (status = 404, description = "No such run (`run_not_found`)", body = ErrorBody),
        (status = 409, description = "The server uses the memory store (`redis_required`)", body = ErrorBody),
        (status = 503, description = "Redis unavailable (`store_unavailable`)", body = ErrorBody),
    )
)]
pub async fn run_events(
    State(state): State<AppState>,
    Path(run_id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let redis = backend(&state)?;
    let after = match headers.get("last-event-id") {
        None => 0,
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_last_event_id",
                    "Last-Event-ID must be an event id sent by this stream",
                )
            })?,
    };
    if redis.queue.status(&run_id).await?.is_none() {
        return Err(not_found(&run_id));
    }
    let events = sse_events(redis.queue.events(&run_id, after), run_id);
    let keep_alive = KeepAlive::new()
        .interval(Duration::from_secs(state.config.sse_keep_alive_secs.max(1)))
        .text("keep-alive");
    let mut h = HeaderMap::new();
    h.insert(
        HeaderName::from_static("x-accel-buffering"),
        HeaderValue::from_static("no"),
    );
    Ok((h, Sse::new(events).keep_alive(keep_alive)).into_response())
}

fn sse_events(
    events: orchestra_core::queue::RunEventStream,
    run_id: String,
) -> impl Stream<Item = Result<Event, Infallible>> + Send {
    events
        .take_while(move |item| {
            let go_on = match item {
                Ok(_) => true,
                Err(e) => {
                    // The client reconnects with Last-Event-ID and resumes.
                    tracing::warn!(run_id = %run_id, error = %e, "run event stream interrupted");
                    false
                }
            };
            futures::future::ready(go_on)
        })
        .filter_map(|item| {
            futures::future::ready(item.ok().map(|ev| {
                let kind = ev
                    .data
                    .get("type")
                    .and_then(Value::as_str)
                    .unwrap_or("event")
                    .to_owned();
                Ok(Event::default()
                    .event(kind)
                    .id(ev.seq.to_string())
                    .data(ev.data.to_string()))
            }))
        })
}
