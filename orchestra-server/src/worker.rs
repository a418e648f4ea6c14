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
//! again (its recorded result is used); the record of an attempt that died
//! is replaced.
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

/// Executes one delivery of a queued run.
pub async fn execute(state: AppState, job: RunJob) -> Result<Value, JobError> {
    let mut request: RunRequest = serde_json::from_value(job.request.clone())
        .map_err(|e| format!("the queued request cannot be read: {e}"))?;
    request.run_id = Some(job.run_id.clone());
    let session_id = request
        .session_id
        .clone()
        .ok_or("the queued request has no session id")?;
    if job.attempt > 1
        && let Some(done) = earlier_attempt(&state, &session_id, &job.run_id).await?
    {
        tracing::info!(run_id = %job.run_id, "an earlier attempt finished this run; using its result");
        job.events.append(&terminal(&done)).await?;
        return Ok(serde_json::to_value(&done)?);
    }
    let (pattern, task) = (request.pattern.clone(), request.task.clone());
    let mut stream = match state.orch.stream(request) {
        Ok(s) => s,
        // Valid when queued, not any more (an agent went away): a final answer.
        Err(e) if e.is_invalid_request() => {
            let now = Utc::now();
            let result = RunResult {
                run_id: job.run_id.clone(),
                session_id,
                pattern,
                task,
                status: RunStatus::Failed,
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

/// What an earlier attempt left in the session: its result if it finished
/// the run; otherwise its record is removed so this attempt can record its own.
async fn earlier_attempt(
    state: &AppState,
    session_id: &str,
    run_id: &str,
) -> Result<Option<RunResult>, JobError> {
    let store = state.orch.store();
    let Some(session) = store.get(session_id).await? else {
        return Ok(None);
    };
    match session.run(run_id) {
        None => Ok(None),
        Some(r)
            if matches!(
                r.status,
                RunStatus::Completed | RunStatus::Failed | RunStatus::TimedOut
            ) && !store_unavailable(r) =>
        {
            Ok(Some(r.clone()))
        }
        Some(_) => {
            store
                .update(session_id, &mut |s| s.runs.retain(|r| r.run_id != run_id))
                .await
                .map_err(OrchestraError::from)?;
            Ok(None)
        }
    }
}

/// The terminal event of a result produced outside a live run.
fn terminal(result: &RunResult) -> OrchestrationEvent {
    let boxed = Box::new(result.clone());
    let kind = match (result.status, &result.error) {
        (RunStatus::Completed, _) => EventKind::RunCompleted { result: boxed },
        (_, Some(error)) => EventKind::RunFailed {
            error: error.clone(),
            result: boxed,
        },
        (_, None) => EventKind::RunFailed {
            error: OrchestraError::Cancelled.info(),
            result: boxed,
        },
    };
    OrchestrationEvent {
        schema_version: EVENT_SCHEMA_VERSION,
        run_id: result.run_id.clone(),
        session_id: result.session_id.clone(),
        seq: 0,
        timestamp: Utc::now(),
        kind,
    }
}
