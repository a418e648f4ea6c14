//! `GET /runs/{run_id}` (status, pending question, checkpoint and result of
//! any run), `POST /runs/{run_id}/input` (answer a waiting run),
//! `POST /runs/{run_id}/cancel` (cancel a run on whichever instance runs it)
//! and `GET /runs/{run_id}/events` (a queued run's events as Server-Sent
//! Events), served by any instance on the same Redis.

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
use orchestra_core::queue::{QueuedRun, QueuedRunStatus};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;

use crate::{
    error::{ApiError, ApiJson, ErrorBody},
    state::{AppState, RedisBackend},
};

fn backend(state: &AppState) -> Result<&RedisBackend, ApiError> {
    state
        .redis
        .as_ref()
        .ok_or_else(|| ApiError::redis_required("the run queue"))
}

/// A run's record in its session and its queue record, whichever exist.
async fn lookup(
    state: &AppState,
    run_id: &str,
) -> Result<(Option<orchestra_core::RunResult>, Option<QueuedRun>), ApiError> {
    let record = state.orch.get_run(run_id).await?;
    let queued = match &state.redis {
        Some(redis) => redis.queue.status(run_id).await?,
        None => None,
    };
    Ok((record, queued))
}

fn not_found(run_id: &str) -> ApiError {
    ApiError::not_found("run_not_found", format!("no run '{run_id}'"))
}

/// Status of a run: a run started by `POST /orchestrate` (waiting for input,
/// or interrupted and resumed) or a queued one.
///
/// `status` is the run's own (`running`, `waiting_for_input`, `completed`,
/// `failed`, `timed_out`, `cancelled`) once it has started, and the queue's
/// (`queued`, `retrying`, `dead`) before that or when it was dead-lettered;
/// `queue_status` is the queue's when the run went through the queue. `input`
/// is the question a waiting run asks; `checkpoint` where the run stands;
/// `result` the run record once it has one.
#[utoipa::path(
    get,
    path = "/runs/{run_id}",
    tag = "runs",
    params(("run_id" = String, Path, description = "A run id")),
    responses(
        (status = 200, description = "`run_id`, `session_id`, `status`, `queue_status`, `input`, `checkpoint`, `result` (a RunResult), and for queued runs `request`, `error`, `attempts`, `worker`, `submitted_at`, `updated_at`", body = Object),
        (status = 400, description = "Invalid run id (`invalid_run_id`)", body = ErrorBody),
        (status = 401, description = "Missing or wrong API key", body = ErrorBody),
        (status = 404, description = "No such run, or its record expired (`run_not_found`)", body = ErrorBody),
        (status = 503, description = "Redis unavailable (`store_unavailable`)", body = ErrorBody),
    )
)]
pub async fn get_run(
    State(state): State<AppState>,
    Path(run_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    orchestra_core::queue::validate_run_id(&run_id)?;
    let (record, queued) = lookup(&state, &run_id).await?;
    let mut body = match &queued {
        Some(run) => {
            serde_json::to_value(run).map_err(|e| ApiError::internal("cannot encode a run", &e))?
        }
        None => json!({"run_id": run_id}),
    };
    let Some(obj) = body.as_object_mut() else {
        return Err(ApiError::internal("cannot encode a run", &"not an object"));
    };
    if let Some(run) = &queued {
        obj.insert("queue_status".into(), json!(run.status.as_str()));
        if let Some(sid) = run.request.get("session_id") {
            obj.insert("session_id".into(), sid.clone());
        }
    }
    match (record, queued.as_ref().map(|q| q.status)) {
        (Some(record), queue) => {
            if queue != Some(QueuedRunStatus::Dead) {
                obj.insert("status".into(), json!(record.status.as_str()));
            }
            obj.insert("session_id".into(), json!(record.session_id));
            obj.insert("input".into(), json!(record.input));
            obj.insert("checkpoint".into(), json!(record.checkpoint));
            obj.insert("result".into(), json!(record));
        }
        (None, Some(_)) => {}
        (None, None) => return Err(not_found(&run_id)),
    }
    Ok(Json(body))
}

/// An answer to a waiting run's question.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InputBody {
    /// Any JSON the pending question's schema accepts.
    #[schema(value_type = Object)]
    pub answer: Value,
}

/// What `POST /runs/{run_id}/input` answers.
#[derive(Debug, Serialize, ToSchema)]
pub struct Resumed {
    pub run_id: String,
    pub session_id: String,
    /// `running`: the run goes on from its checkpoint.
    pub status: String,
    /// Where to follow the run until it ends or asks again.
    pub status_url: String,
    /// The continuation's events (Redis: queued, readable from any instance).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub events_url: Option<String>,
}

/// Answers a run waiting for input; the run resumes from its checkpoint.
///
/// The answer is checked against the question's JSON schema: a bad answer is
/// refused with 422 `invalid_answer` and the run keeps waiting. Only one
/// answer is taken (a second gets 409 `run_not_waiting`). With Redis the
/// rest of the run is queued, so any instance may run it (even days later,
/// after a redeploy); otherwise it goes on in this process.
#[utoipa::path(
    post,
    path = "/runs/{run_id}/input",
    tag = "runs",
    params(("run_id" = String, Path, description = "A run waiting for input")),
    request_body(content = InputBody, content_type = "application/json"),
    responses(
        (status = 202, description = "Answer taken; the run resumes", body = Resumed),
        (status = 400, description = "Invalid run id or malformed body", body = ErrorBody),
        (status = 401, description = "Missing or wrong API key", body = ErrorBody),
        (status = 404, description = "No such run (`run_not_found`)", body = ErrorBody),
        (status = 409, description = "The run is not waiting (`run_not_waiting`) or its question expired (`input_expired`)", body = ErrorBody),
        (status = 422, description = "The answer fails the question's schema (`invalid_answer`)", body = ErrorBody),
        (status = 503, description = "Redis unavailable (`store_unavailable`)", body = ErrorBody),
    )
)]
pub async fn answer_run(
    State(state): State<AppState>,
    Path(run_id): Path<String>,
    ApiJson(body): ApiJson<InputBody>,
) -> Result<Response, ApiError> {
    orchestra_core::queue::validate_run_id(&run_id)?;
    let claimed = state.orch.answer(&run_id, body.answer).await?;
    let events_url = crate::worker::continue_run(&state, &claimed).await?;
    let status_url = format!("/runs/{run_id}");
    let body = Resumed {
        run_id,
        session_id: claimed.session_id,
        status: "running".into(),
        status_url,
        events_url,
    };
    Ok((StatusCode::ACCEPTED, Json(body)).into_response())
}

/// Cancels a run wherever it runs.
///
/// A run in flight on this instance is cancelled at once; a run waiting for
/// input is recorded as cancelled; with Redis, the instance that runs it is
/// told through Redis pub/sub and cancels it at once (agent calls in flight
/// are aborted), and a queued run that has not started yet is cancelled
/// when a worker takes it. The run ends `cancelled` with a `run_cancelled`
/// event.
#[utoipa::path(
    post,
    path = "/runs/{run_id}/cancel",
    tag = "runs",
    params(("run_id" = String, Path, description = "A run id")),
    responses(
        (status = 202, description = "`run_id`, `status`: `cancelled` (done here) or `cancelling` (signalled to the instance running it)", body = Object),
        (status = 400, description = "Invalid run id", body = ErrorBody),
        (status = 401, description = "Missing or wrong API key", body = ErrorBody),
        (status = 404, description = "No such run (`run_not_found`)", body = ErrorBody),
        (status = 409, description = "The run has finished (`run_finished`)", body = ErrorBody),
        (status = 503, description = "Redis unavailable (`store_unavailable`)", body = ErrorBody),
    )
)]
pub async fn cancel_run(
    State(state): State<AppState>,
    Path(run_id): Path<String>,
) -> Result<Response, ApiError> {
    orchestra_core::queue::validate_run_id(&run_id)?;
    if state.orch.cancel(&run_id) {
        return Ok(accepted(run_id, "cancelled"));
    }
    // One lookup decides: only a run waiting for input is cancelled in its
    // record here; a finished one is refused; any other runs elsewhere.
    let (record, queued) = lookup(&state, &run_id).await?;
    let finished = match (&record, &queued) {
        (None, None) => return Err(not_found(&run_id)),
        (Some(r), _) if r.status == orchestra_core::RunStatus::WaitingForInput => {
            if state.orch.cancel_run(&run_id).await? {
                return Ok(accepted(run_id, "cancelled"));
            }
            // Answered meanwhile: it runs now, here or elsewhere.
            false
        }
        (Some(r), _) => r.status.is_finished(),
        (None, Some(q)) => q.status.is_final(),
    };
    if finished {
        return Err(run_finished(format!("run '{run_id}' has finished")));
    }
    let Some(redis) = &state.redis else {
        // Running, but not here: with the memory store that means a
        // process that died; nothing can run it any more.
        return Err(run_finished(format!(
            "run '{run_id}' is not running in this process"
        )));
    };
    crate::cancel::signal(redis, &run_id).await?;
    Ok(accepted(run_id, "cancelling"))
}

/// 202 with `{"run_id", "status"}`: what the cancel and stop routes answer.
fn accepted(run_id: String, status: &str) -> Response {
    let body = json!({"run_id": run_id, "status": status});
    (StatusCode::ACCEPTED, Json(body)).into_response()
}

fn run_finished(message: String) -> ApiError {
    ApiError::new(StatusCode::CONFLICT, "run_finished", message)
}

/// Why a run is asked to stop.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StopBody {
    /// Shown in the result's `termination` as `stopped: <reason>` (default "api").
    #[serde(default)]
    pub reason: Option<String>,
}

/// Stops a run cleanly, wherever it runs: unlike cancel, the run completes
/// with what it has at its next step boundary, and its `termination` says
/// `stopped: <reason>` (the termination algebra's external stop).
#[utoipa::path(
    post,
    path = "/runs/{run_id}/stop",
    tag = "runs",
    params(("run_id" = String, Path, description = "A running run")),
    request_body(content = StopBody, content_type = "application/json"),
    responses(
        (status = 202, description = "`run_id`, `status`: `stopping`", body = Object),
        (status = 400, description = "Invalid run id or body", body = ErrorBody),
        (status = 401, description = "Missing or wrong API key", body = ErrorBody),
        (status = 404, description = "No such run (`run_not_found`)", body = ErrorBody),
        (status = 409, description = "The run is not running (`run_not_running`)", body = ErrorBody),
        (status = 503, description = "Redis unavailable (`store_unavailable`)", body = ErrorBody),
    )
)]
pub async fn stop_run(
    State(state): State<AppState>,
    Path(run_id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    orchestra_core::queue::validate_run_id(&run_id)?;
    // The body is optional: none, or `{"reason": "…"}`.
    let body: StopBody = match body.iter().all(u8::is_ascii_whitespace) {
        true => StopBody::default(),
        false => serde_json::from_slice(&body).map_err(|e| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_request",
                format!("body: {e}"),
            )
        })?,
    };
    let reason = body
        .reason
        .filter(|r| !r.trim().is_empty())
        .unwrap_or_else(|| "api".to_owned());
    if state.orch.stop(&run_id, reason.clone()) {
        return Ok(accepted(run_id, "stopping"));
    }
    let record = state
        .orch
        .get_run(&run_id)
        .await?
        .ok_or_else(|| not_found(&run_id))?;
    match (&state.redis, record.status) {
        (Some(redis), orchestra_core::RunStatus::Running) => {
            crate::cancel::signal_stop(redis, &run_id, &reason).await?;
            Ok(accepted(run_id, "stopping"))
        }
        (_, status) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "run_not_running",
            format!("run '{run_id}' is {} here, not running", status.as_str()),
        )),
    }
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
