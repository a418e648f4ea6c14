//! `POST /orchestrate` (run to the end, JSON result) and
//! `POST /orchestrate/stream` (the same run as Server-Sent Events).
//!
//! Both drive the core's event stream: the plain route folds it into the
//! final result, the SSE route forwards each event unchanged. Dropping either
//! (client gone, request timeout) drops the stream, which cancels the run; the
//! session then records it as cancelled. When the server's drain timeout
//! passes during shutdown, runs still in flight are cancelled the same way,
//! so streams still end with a terminal event.

use std::{convert::Infallible, time::Duration};

use axum::{
    Json,
    extract::State,
    http::{HeaderMap, HeaderName, HeaderValue},
    response::{
        IntoResponse, Response,
        sse::{Event, KeepAlive, Sse},
    },
};
use futures::{Stream, StreamExt};
use orchestra_core::{EventKind, RunRequest, RunResult, RunStream};
use tokio_util::sync::CancellationToken;

use crate::{
    error::{ApiError, ApiJson, ErrorBody},
    metrics::{InFlight, observe},
    routes::openapi::{OrchestrationEventSchema, RunRequestSchema, RunResultSchema},
    state::AppState,
};

static RUN_ID: HeaderName = HeaderName::from_static("x-orchestra-run-id");
static SESSION_ID: HeaderName = HeaderName::from_static("x-orchestra-session-id");

/// Runs a pattern to the end.
///
/// A run that fails, times out or is cancelled still answers 200: its
/// `status` and `error` say what happened. Non-2xx answers mean the request
/// itself was refused and nothing ran.
#[utoipa::path(
    post,
    path = "/orchestrate",
    tag = "orchestrate",
    request_body(content = RunRequestSchema, content_type = "application/json"),
    responses(
        (status = 200, description = "The run's result (any status)", body = RunResultSchema),
        (status = 400, description = "Malformed JSON, unknown pattern or agent, bad options or session id", body = ErrorBody),
        (status = 401, description = "Missing or wrong API key", body = ErrorBody),
        (status = 413, description = "Body over the limit", body = ErrorBody),
        (status = 415, description = "Not application/json", body = ErrorBody),
        (status = 422, description = "Body of the wrong shape (types, missing or unknown fields)", body = ErrorBody),
    )
)]
pub async fn orchestrate(
    State(state): State<AppState>,
    ApiJson(request): ApiJson<RunRequest>,
) -> Result<Response, ApiError> {
    let mut stream = state.orch.stream(request)?;
    let _in_flight = InFlight::run();
    let headers = id_headers(&stream);
    let mut result: Option<RunResult> = None;
    let mut cancelled = false;
    loop {
        let event = tokio::select! {
            ev = stream.next() => ev,
            () = state.drain_expired.cancelled(), if !cancelled => {
                cancelled = true;
                stream.cancel();
                continue;
            }
        };
        let Some(event) = event else { break };
        observe(&event);
        if let EventKind::RunCompleted { result: r }
        | EventKind::RunFailed { result: r, .. }
        | EventKind::RunCancelled { result: r, .. } = event.kind
        {
            result = Some(*r);
        }
    }
    match result {
        Some(r) => Ok((headers, Json(r)).into_response()),
        None => Err(ApiError::internal(
            "run stream ended without a result",
            &"no terminal event",
        )),
    }
}

/// Runs a pattern and streams its events.
///
/// One SSE event per orchestration event: `event:` is the event type, `id:`
/// its `seq`, `data:` the event's JSON exactly as the core serializes it.
/// The last event is `run_completed`, `run_failed` or `run_cancelled` and
/// carries the result. Closing the connection cancels the run.
#[utoipa::path(
    post,
    path = "/orchestrate/stream",
    tag = "orchestrate",
    request_body(content = RunRequestSchema, content_type = "application/json"),
    responses(
        (status = 200, description = "A text/event-stream of orchestration events; each `data:` is one event", content_type = "text/event-stream", body = OrchestrationEventSchema),
        (status = 400, description = "Malformed JSON, unknown pattern or agent, bad options or session id", body = ErrorBody),
        (status = 401, description = "Missing or wrong API key", body = ErrorBody),
        (status = 413, description = "Body over the limit", body = ErrorBody),
        (status = 415, description = "Not application/json", body = ErrorBody),
        (status = 422, description = "Body of the wrong shape", body = ErrorBody),
    )
)]
pub async fn orchestrate_stream(
    State(state): State<AppState>,
    ApiJson(request): ApiJson<RunRequest>,
) -> Result<Response, ApiError> {
    let stream = state.orch.stream(request)?;
    let mut headers = id_headers(&stream);
    // Proxies such as nginx buffer responses unless told not to.
    headers.insert(
        HeaderName::from_static("x-accel-buffering"),
        HeaderValue::from_static("no"),
    );
    let events = sse_events(stream, state.drain_expired.clone());
    let keep_alive = KeepAlive::new()
        .interval(Duration::from_secs(state.config.sse_keep_alive_secs.max(1)))
        .text("keep-alive");
    Ok((headers, Sse::new(events).keep_alive(keep_alive)).into_response())
}

fn id_headers(stream: &RunStream) -> HeaderMap {
    let mut h = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(stream.run_id()) {
        h.insert(RUN_ID.clone(), v);
    }
    if let Ok(v) = HeaderValue::from_str(stream.session_id()) {
        h.insert(SESSION_ID.clone(), v);
    }
    h
}

struct Forward {
    stream: RunStream,
    drain: CancellationToken,
    cancelled: bool,
    _in_flight: InFlight,
}

/// The run's events as SSE events. Owning the [`RunStream`] here ties the
/// run's life to the response body: when the client disconnects, the body is
/// dropped, the stream with it, and the run is cancelled.
fn sse_events(
    stream: RunStream,
    drain: CancellationToken,
) -> impl Stream<Item = Result<Event, Infallible>> + Send {
    let state = Forward {
        stream,
        drain,
        cancelled: false,
        _in_flight: InFlight::stream(),
    };
    futures::stream::unfold(state, |mut s| async move {
        loop {
            let event = tokio::select! {
                ev = s.stream.next() => ev,
                () = s.drain.cancelled(), if !s.cancelled => {
                    s.cancelled = true;
                    s.stream.cancel();
                    continue;
                }
            };
            let event = event?;
            observe(&event);
            let sse = match serde_json::to_string(&event) {
                Ok(json) => Event::default()
                    .event(event.type_name())
                    .id(event.seq.to_string())
                    .data(json),
                Err(e) => {
                    tracing::error!(error = %e, "could not serialize an event");
                    continue;
                }
            };
            return Some((Ok(sse), s));
        }
    })
}
