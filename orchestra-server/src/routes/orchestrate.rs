//! `POST /orchestrate` (run to the end, JSON result) and
//! `POST /orchestrate/stream` (the same run as Server-Sent Events).
//!
//! The plain route runs on the request's own task and watches the run's
//! events only for metrics; the SSE route drives the core's event stream and
//! forwards each event unchanged. Dropping either (client gone, request
//! timeout) cancels the run; the session then records it as cancelled. When
//! the server's drain timeout passes during shutdown, runs still in flight
//! are cancelled, so streams still end with a terminal event.
//!
//! `POST /orchestrate` with `"mode": "async"` (or `Prefer: respond-async`)
//! checks the request, puts it on the Redis run queue and answers 202 with
//! the run and session ids; see [`runs`](crate::routes::runs).

use std::{convert::Infallible, time::Duration};

use axum::{
    Json,
    extract::State,
    http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header},
    response::{
        IntoResponse, Response,
        sse::{Event, KeepAlive, Sse},
    },
};
use futures::{Stream, StreamExt};
use orchestra_core::{OrchestrationEvent, RunRequest, RunResult, RunStream};
use serde::Serialize;
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use utoipa::ToSchema;

use crate::{
    error::{ApiError, ApiJson, ErrorBody, parse_value},
    metrics::{InFlight, observe},
    routes::openapi::{OrchestrateRequestSchema, OrchestrationEventSchema, RunResultSchema},
    state::AppState,
};

static RUN_ID: HeaderName = HeaderName::from_static("x-orchestra-run-id");
static SESSION_ID: HeaderName = HeaderName::from_static("x-orchestra-session-id");

/// How a client wants `POST /orchestrate` answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Run now and answer with the result.
    Sync,
    /// Queue the run and answer 202 at once.
    Async,
}

/// The answer to an async submission.
#[derive(Debug, Serialize, ToSchema)]
pub struct Accepted {
    pub run_id: String,
    pub session_id: String,
    /// "queued".
    pub status: String,
    /// `GET` this for the status and result.
    pub status_url: String,
    /// `GET` this for the events as Server-Sent Events.
    pub events_url: String,
}

/// Splits `mode` off the body (a RunRequest has no such field) and reads
/// `Prefer: respond-async`; the body's `mode` wins over the header.
pub fn parse_request(mut body: Value, headers: &HeaderMap) -> Result<(RunRequest, Mode), ApiError> {
    let mode = match body.as_object_mut().and_then(|o| o.remove("mode")) {
        None => None,
        Some(Value::String(m)) if m == "sync" => Some(Mode::Sync),
        Some(Value::String(m)) if m == "async" => Some(Mode::Async),
        Some(other) => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_request",
                format!("invalid request: mode: expected \"sync\" or \"async\", got {other}"),
            ));
        }
    };
    let prefers_async = headers
        .get_all(header::HeaderName::from_static("prefer"))
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim().eq_ignore_ascii_case("respond-async"));
    let mode = mode.unwrap_or(if prefers_async {
        Mode::Async
    } else {
        Mode::Sync
    });
    Ok((parse_value(body)?, mode))
}

/// A run that could not read or write its session because the store is
/// unreachable: the request is answered 503 rather than 200 with a failed run.
pub fn store_unavailable(result: &RunResult) -> bool {
    result
        .error
        .as_ref()
        .is_some_and(|e| e.code == "store_unavailable")
}

fn unavailable() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "store_unavailable",
        "the session store cannot be reached",
    )
}

/// Names the session of a run without a session id here, and tells the
/// store, so that it can create the session without reading it first.
/// Returns the name, to be taken back if the request is refused.
fn name_session(state: &AppState, request: &mut RunRequest) -> Option<String> {
    let fresh = state.fresh_sessions.as_ref()?;
    if request.session_id.is_some() {
        return None;
    }
    let id = uuid::Uuid::new_v4().to_string();
    fresh.mark(&id);
    request.session_id = Some(id.clone());
    Some(id)
}

/// The refusal of a request whose session [`name_session`] named.
fn refused(state: &AppState, named: Option<String>, e: orchestra_core::OrchestraError) -> ApiError {
    if let (Some(fresh), Some(id)) = (&state.fresh_sessions, named) {
        fresh.unmark(&id);
    }
    ApiError::from(e)
}

/// Starts a streamed run. Runs tied to a request end with it, so per-step
/// checkpoints would buy nothing; queued runs (the worker) are checkpointed.
fn start(state: &AppState, mut request: RunRequest) -> Result<RunStream, ApiError> {
    let named = name_session(state, &mut request);
    state
        .orch
        .stream_attached(request)
        .map_err(|e| refused(state, named, e))
}

/// Checks a request, puts it on the run queue and answers 202.
async fn submit_async(state: &AppState, mut request: RunRequest) -> Result<Response, ApiError> {
    let Some(redis) = &state.redis else {
        return Err(ApiError::redis_required("\"mode\": \"async\""));
    };
    let run_id = request
        .run_id
        .clone()
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    orchestra_core::queue::validate_run_id(&run_id)?;
    let session_id = request
        .session_id
        .clone()
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    request.run_id = Some(run_id.clone());
    request.session_id = Some(session_id.clone());
    state.orch.validate(&request)?;
    redis.queue.submit_with_id(&run_id, &request).await?;
    crate::metrics::queue_enqueued();
    tracing::info!(%run_id, %session_id, "run queued");
    let status_url = format!("/runs/{run_id}");
    let mut headers = HeaderMap::new();
    for (name, value) in [
        (&RUN_ID, run_id.as_str()),
        (&SESSION_ID, session_id.as_str()),
        (&header::LOCATION, status_url.as_str()),
    ] {
        if let Ok(v) = HeaderValue::from_str(value) {
            headers.insert(name.clone(), v);
        }
    }
    let body = Accepted {
        events_url: format!("{status_url}/events"),
        status_url,
        run_id,
        session_id,
        status: "queued".into(),
    };
    Ok((StatusCode::ACCEPTED, headers, Json(body)).into_response())
}

/// Runs a pattern to the end, or queues it (`"mode": "async"`).
///
/// A run that fails, times out or is cancelled still answers 200: its
/// `status` and `error` say what happened. Non-2xx answers mean the request
/// itself was refused and nothing ran, with one exception: 503
/// `store_unavailable` when the session store could not be reached (the run
/// could not be recorded; nothing was half-written).
///
/// With `"mode": "async"` in the body or `Prefer: respond-async` (Redis
/// store only) the request is checked, queued, and answered 202 with its
/// run and session ids; `GET /runs/{run_id}` and `GET /runs/{run_id}/events`
/// follow it from any instance.
#[utoipa::path(
    post,
    path = "/orchestrate",
    tag = "orchestrate",
    request_body(content = OrchestrateRequestSchema, content_type = "application/json"),
    params(("Prefer" = Option<String>, Header, description = "`respond-async` queues the run (as `\"mode\": \"async\"`)")),
    responses(
        (status = 200, description = "The run's result (any status)", body = RunResultSchema),
        (status = 202, description = "Queued (`\"mode\": \"async\"`)", body = Accepted),
        (status = 400, description = "Malformed JSON, unknown pattern or agent, bad options, session or run id", body = ErrorBody),
        (status = 401, description = "Missing or wrong API key", body = ErrorBody),
        (status = 409, description = "`duplicate_run` (the run id was used before) or `redis_required` (async mode on the memory store)", body = ErrorBody),
        (status = 413, description = "Body over the limit", body = ErrorBody),
        (status = 415, description = "Not application/json", body = ErrorBody),
        (status = 422, description = "Body of the wrong shape (types, missing or unknown fields)", body = ErrorBody),
        (status = 503, description = "The session store cannot be reached (`store_unavailable`)", body = ErrorBody),
    )
)]
pub async fn orchestrate(
    State(state): State<AppState>,
    request_headers: HeaderMap,
    ApiJson(body): ApiJson<Value>,
) -> Result<Response, ApiError> {
    let (mut request, mode) = parse_request(body, &request_headers)?;
    if mode == Mode::Async {
        return submit_async(&state, request).await;
    }
    // A run without a session or run id gets a new session, and only this
    // answer will name it and the run: nobody can look for either before
    // the run ends, so the run skips its start record and writes its
    // session once, at the end (streamed runs name both in their first
    // event, queued runs in the 202, so they keep it).
    request.fresh_session = request.session_id.is_none() && request.run_id.is_none();
    let named = name_session(&state, &mut request);
    let _in_flight = InFlight::run();
    // On this task: if the client goes away, this future is dropped and the
    // run is recorded as cancelled.
    let cancel = CancellationToken::new();
    let run = state
        .orch
        .run_attached(request, cancel.clone(), OBSERVER.clone());
    tokio::pin!(run);
    let outcome = tokio::select! {
        r = &mut run => r,
        () = state.drain_expired.cancelled() => {
            cancel.cancel();
            run.await
        }
    };
    let result = outcome.map_err(|e| refused(&state, named, e))?;
    if store_unavailable(&result) {
        return Err(unavailable());
    }
    Ok((ids(&result.run_id, &result.session_id), Json(result)).into_response())
}

/// Sync runs' events only feed the metrics.
static OBSERVER: std::sync::LazyLock<orchestra_core::EventObserver> =
    std::sync::LazyLock::new(|| std::sync::Arc::new(observe));

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
    request_body(content = OrchestrateRequestSchema, content_type = "application/json"),
    responses(
        (status = 200, description = "A text/event-stream of orchestration events; each `data:` is one event", content_type = "text/event-stream", body = OrchestrationEventSchema),
        (status = 400, description = "Malformed JSON, unknown pattern or agent, bad options or session id", body = ErrorBody),
        (status = 401, description = "Missing or wrong API key", body = ErrorBody),
        (status = 413, description = "Body over the limit", body = ErrorBody),
        (status = 415, description = "Not application/json", body = ErrorBody),
        (status = 422, description = "Body of the wrong shape", body = ErrorBody),
        (status = 503, description = "The session store cannot be reached (`store_unavailable`)", body = ErrorBody),
    )
)]
pub async fn orchestrate_stream(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<Value>,
) -> Result<Response, ApiError> {
    let (request, mode) = parse_request(body, &HeaderMap::new())?;
    if mode == Mode::Async {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "async runs are submitted with POST /orchestrate and followed with GET /runs/{run_id}/events",
        ));
    }
    let mut stream = start(&state, request)?;
    // The first event says whether the run could record its start: a run
    // that could not reach the store is a 503, not a stream.
    let first = stream.next().await;
    if let Some(r) = first.as_ref().and_then(|e| e.kind.result())
        && store_unavailable(r)
    {
        observe_first(first.as_ref());
        return Err(unavailable());
    }
    let mut headers = ids(stream.run_id(), stream.session_id());
    // Proxies such as nginx buffer responses unless told not to.
    headers.insert(
        HeaderName::from_static("x-accel-buffering"),
        HeaderValue::from_static("no"),
    );
    let events = sse_events(stream, first, state.drain_expired.clone());
    let keep_alive = KeepAlive::new()
        .interval(Duration::from_secs(state.config.sse_keep_alive_secs.max(1)))
        .text("keep-alive");
    Ok((headers, Sse::new(events).keep_alive(keep_alive)).into_response())
}

fn ids(run_id: &str, session_id: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(run_id) {
        h.insert(RUN_ID.clone(), v);
    }
    if let Ok(v) = HeaderValue::from_str(session_id) {
        h.insert(SESSION_ID.clone(), v);
    }
    h
}

fn observe_first(event: Option<&OrchestrationEvent>) {
    if let Some(e) = event {
        observe(e);
    }
}

struct Forward {
    stream: RunStream,
    first: Option<OrchestrationEvent>,
    drain: CancellationToken,
    cancelled: bool,
    _in_flight: InFlight,
}

/// The run's events as SSE events. Owning the [`RunStream`] here ties the
/// run's life to the response body: when the client disconnects, the body is
/// dropped, the stream with it, and the run is cancelled.
fn sse_events(
    stream: RunStream,
    first: Option<OrchestrationEvent>,
    drain: CancellationToken,
) -> impl Stream<Item = Result<Event, Infallible>> + Send {
    let state = Forward {
        stream,
        first,
        drain,
        cancelled: false,
        _in_flight: InFlight::stream(),
    };
    futures::stream::unfold(state, |mut s| async move {
        loop {
            let event = match s.first.take() {
                Some(first) => Some(first),
                None => tokio::select! {
                    ev = s.stream.next() => ev,
                    () = s.drain.cancelled(), if !s.cancelled => {
                        s.cancelled = true;
                        s.stream.cancel();
                        continue;
                    }
                },
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
