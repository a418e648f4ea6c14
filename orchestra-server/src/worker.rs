//! Queue workers: every instance with the Redis store runs `queue.workers`
//! of them. Each takes one queued run at a time from the shared consumer
//! group and executes it with [`Orchestrator::stream`], appending every
//! event to the run's event stream (readable from any instance through
//! `GET /runs/{run_id}/events`) and recording the final result.
//!
//! Delivery is at-least-once (see docs/deployment.md): a worker that dies
//! mid-run has its run taken over by another after `queue.claim_idle_ms`.
//! The retry keeps the queue's run id. Before it runs, the worker looks the
//! run up in its session: a run that a previous attempt finished is not run
//! again (its recorded result is used); a run that an attempt left unfinished
//! is resumed from its checkpoint, so its completed steps do not run again.
//! Answered runs continue as queued jobs `{run_id}.resume-{n}`.
//!
//! A run that ends (completed, failed, timed out) is a result. Only
//! infrastructure failures make an attempt fail and be retried: the session
//! store or the event stream unreachable, or the worker stopped.
//!
//! [`Orchestrator::stream`]: orchestra_core::Orchestrator::stream

use chrono::Utc;
use futures::StreamExt;
use orchestra_core::{
    EVENT_SCHEMA_VERSION, EventKind, OrchestraError, OrchestrationEvent, RunRequest, RunResult,
    RunStatus,
    queue::{JobError, RunJob},
};
use serde_json::Value;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::{
    metrics::{InFlight, observe},
    routes::orchestrate::store_unavailable,
    state::AppState,
};

/// Starts the configured number of workers; they stop taking runs when
/// `stop` fires and finish the run in hand unless the server's drain
/// timeout passes first (the run is then left for another instance).
pub fn spawn_workers(state: &AppState, stop: &CancellationToken) -> Vec<JoinHandle<()>> {
    let Some(redis) = &state.redis else {
        return Vec::new();
    };
    let count = state.config.queue.workers;
    if count > 0 {
        tracing::info!(workers = count, "starting queue workers");
    }
    (0..count)
        .map(|_| {
            let queue = redis.queue.clone();
            let state = state.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let handler = move |job: RunJob| {
                    let state = state.clone();
                    async move {
                        let outcome = execute(state, job).await;
                        crate::metrics::queue_attempt(&outcome);
                        outcome
                    }
                };
                if let Err(e) = queue.run_worker(handler, stop).await {
                    tracing::error!(error = %e, "queue worker stopped with an error");
                }
            })
        })
        .collect()
}

/// Executes one delivery of a queued run, or of the continuation of a run
/// that was answered (`{"resume_run_id": ...}`).
pub async fn execute(state: AppState, job: RunJob) -> Result<Value, JobError> {
    if let Some(run_id) = job.request.get("resume_run_id").and_then(Value::as_str) {
        let run_id = run_id.to_owned();
        return continue_queued(state, job, run_id).await;
    }
    let mut request: RunRequest = serde_json::from_value(job.request.clone())
        .map_err(|e| format!("the queued request cannot be read: {e}"))?;
    request.run_id = Some(job.run_id.clone());
    let session_id = request
        .session_id
        .clone()
        .ok_or("the queued request has no session id")?;
    if job.attempt > 1 {
        match earlier_attempt(&state, &session_id, &job.run_id).await? {
            Earlier::Finished(done) => {
                tracing::info!(run_id = %job.run_id, "an earlier attempt finished this run; using its result");
                job.events.append(&terminal(&done)).await?;
                return Ok(serde_json::to_value(&done)?);
            }
            Earlier::Interrupted => {
                // Go on from the checkpoint: completed steps are not run again.
                tracing::info!(run_id = %job.run_id, "resuming a run its earlier attempt left unfinished");
                let stream = state.orch.resume(&job.run_id, None).await?;
                return drive(&state, &job, stream).await;
            }
            Earlier::None => {}
        }
    }
    let (pattern, task) = (request.pattern.clone(), request.task.clone());
    let refused = match &state.redis {
        Some(redis) if crate::cancel::requested(redis, &job.run_id).await => {
            Some(OrchestraError::Cancelled)
        }
        _ => None,
    };
    let stream = match refused.map_or_else(|| state.orch.stream(request), Err) {
        Ok(s) => s,
        // Valid when queued, not any more (an agent went away), or cancelled
        // before it started: a final answer.
        Err(e) if e.is_invalid_request() || matches!(e, OrchestraError::Cancelled) => {
            let now = Utc::now();
            let result = RunResult {
                run_id: job.run_id.clone(),
                session_id,
                pattern,
                task,
                status: if matches!(e, OrchestraError::Cancelled) {
                    RunStatus::Cancelled
                } else {
                    RunStatus::Failed
                },
                error: Some(e.info()),
                started_at: now,
                finished_at: Some(now),
                ..RunResult::default()
            };
            job.events.append(&terminal(&result)).await?;
            return Ok(serde_json::to_value(&result)?);
        }
        Err(e) => return Err(e.into()),
    };
    drive(&state, &job, stream).await
}

/// Runs the continuation of an answered (or interrupted) run from its checkpoint.
async fn continue_queued(state: AppState, job: RunJob, run_id: String) -> Result<Value, JobError> {
    let stream = match state.orch.resume(&run_id, None).await {
        Ok(stream) => stream,
        // An earlier delivery of this continuation finished the run.
        Err(OrchestraError::RunState { .. }) => {
            let done = state
                .orch
                .get_run(&run_id)
                .await?
                .ok_or("the resumed run's record is gone")?;
            job.events.append(&terminal(&done)).await?;
            return Ok(serde_json::to_value(&done)?);
        }
        Err(e) => return Err(e.into()),
    };
    if let Some(redis) = &state.redis
        && crate::cancel::requested(redis, &run_id).await
    {
        stream.cancel();
    }
    drive(&state, &job, stream).await
}

/// Goes on with a run whose answer was just taken: on the run queue when
/// there is one (any instance runs it, and a crash mid-way is recovered),
/// in this process otherwise. Returns where the continuation's events can
/// be read, if anywhere.
pub async fn continue_run(
    state: &AppState,
    claimed: &RunResult,
) -> Result<Option<String>, crate::error::ApiError> {
    if let Some(redis) = &state.redis {
        let n = claimed.checkpoint.as_ref().map_or(0, |c| c.resumes);
        let job_id = format!("{}.resume-{n}", claimed.run_id);
        let body = serde_json::json!({
            "resume_run_id": claimed.run_id,
            "session_id": claimed.session_id,
        });
        match redis.queue.submit_with_id(&job_id, &body).await {
            Ok(()) => {
                crate::metrics::queue_enqueued();
                return Ok(Some(format!("/runs/{job_id}/events")));
            }
            Err(e) => {
                tracing::warn!(run_id = %claimed.run_id, error = %e, "cannot queue the continuation; running it here");
            }
        }
    }
    let stream = state.orch.resume(&claimed.run_id, None).await?;
    let state = state.clone();
    tokio::spawn(async move {
        let _in_flight = InFlight::run();
        let mut stream = stream;
        loop {
            tokio::select! {
                ev = stream.next() => match ev {
                    Some(ev) => observe(&ev),
                    None => break,
                },
                () = state.drain_expired.cancelled() => stream.cancel(),
            }
        }
    });
    Ok(None)
}

/// Streams a run's events into the job's event stream and answers its result.
async fn drive(
    state: &AppState,
    job: &RunJob,
    mut stream: orchestra_core::RunStream,
) -> Result<Value, JobError> {
    let _in_flight = InFlight::run();
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
        if let Some(r) = event.kind.result() {
            // A run cut short by this instance's shutdown or by the store is
            // retried: its stream gets no terminal event from this attempt.
            if cancelled || store_unavailable(r) {
                result = Some(r.clone());
                continue;
            }
            result = Some(r.clone());
        }
        if let Err(e) = job.events.append(&event).await {
            tracing::warn!(run_id = %job.run_id, error = %e, "cannot write the run's events; stopping this attempt");
            stream.cancel();
            return Err(e.into());
        }
    }
    let result = result.ok_or("the run ended without a result")?;
    if cancelled {
        return Err("the worker was stopped before the run finished".into());
    }
    if store_unavailable(&result) {
        return Err("the session store is unavailable".into());
    }
    Ok(serde_json::to_value(&result)?)
}

/// What an earlier attempt of a queued run left in its session.
enum Earlier {
    /// Nothing: run it from the start.
    None,
    /// It ended (or paused for input): that is the result.
    Finished(Box<RunResult>),
    /// It died mid-run: resume it from its checkpoint.
    Interrupted,
}

async fn earlier_attempt(
    state: &AppState,
    session_id: &str,
    run_id: &str,
) -> Result<Earlier, JobError> {
    let store = state.orch.store();
    let Some(session) = store.get(session_id).await? else {
        return Ok(Earlier::None);
    };
    Ok(match session.run(run_id) {
        None => Earlier::None,
        Some(r) if r.status == RunStatus::Running => Earlier::Interrupted,
        Some(r) if store_unavailable(r) => {
            // That attempt could not record its end: run it again from the start.
            store
                .update(session_id, &mut |s| s.runs.retain(|r| r.run_id != run_id))
                .await
                .map_err(OrchestraError::from)?;
            Earlier::None
        }
        Some(r) => Earlier::Finished(Box::new(r.clone())),
    })
}

/// The terminal event of a result produced outside a live run.
fn terminal(result: &RunResult) -> OrchestrationEvent {
    let kind = EventKind::terminal(result);
    OrchestrationEvent {
        schema_version: EVENT_SCHEMA_VERSION,
        run_id: result.run_id.clone(),
        session_id: result.session_id.clone(),
        seq: 0,
        timestamp: Utc::now(),
        kind,
    }
}
