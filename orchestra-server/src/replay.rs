//! `orchestra-server replay <record.json>`: replays a recorded run offline.
//!
//! The file holds a run record (a `RunResult`, as `POST /orchestrate`
//! returns it or as found in a session's `runs`) or a whole session (as
//! `GET /sessions/{id}` returns it; `--run <run_id>` picks the run, and may
//! be left out when the session has a single run). The run is replayed with
//! [`Orchestrator::replay`] on an orchestrator without agents: every agent
//! step is answered from the record, so no agent (and no network) is needed.
//! Each event is written to stdout as one JSON line, exactly as the REST
//! stream's `data:` lines carry it.

use std::{
    io::{self, Write},
    path::Path,
};

use futures::StreamExt;
use orchestra_core::{Orchestrator, RunResult, RunStatus};
use serde_json::Value;

/// Why a replay could not be done or did not match its record.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The file could not be read, is not JSON, or holds no usable run.
    #[error("{0}")]
    Input(String),
    /// The replay could not start (e.g. the record's request is not valid).
    #[error("cannot replay run {run_id}: {message}")]
    Start { run_id: String, message: String },
    /// The replay ended differently from the record.
    #[error("{0}")]
    Mismatch(String),
    /// Writing the events failed.
    #[error("cannot write the events: {0}")]
    Output(#[from] io::Error),
}

/// The run to replay from `path`: a run record, or a session and `run`.
pub fn load_record(path: &Path, run: Option<&str>) -> Result<RunResult, ReplayError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ReplayError::Input(format!("cannot read {}: {e}", path.display())))?;
    let value: Value = serde_json::from_str(&text)
        .map_err(|e| ReplayError::Input(format!("{} is not JSON: {e}", path.display())))?;
    record_from_json(value, run).map_err(|m| ReplayError::Input(format!("{}: {m}", path.display())))
}

/// A run record from JSON that holds one, or a session that holds it.
pub fn record_from_json(value: Value, run: Option<&str>) -> Result<RunResult, String> {
    let record = match value.get("runs") {
        Some(Value::Array(runs)) => {
            let chosen = match run {
                Some(id) => runs
                    .iter()
                    .find(|r| r.get("run_id").and_then(Value::as_str) == Some(id))
                    .ok_or_else(|| format!("the session has no run {id}"))?,
                None => match runs.as_slice() {
                    [only] => only,
                    [] => return Err("the session has no runs".to_owned()),
                    _ => {
                        let ids: Vec<&str> = runs
                            .iter()
                            .filter_map(|r| r.get("run_id").and_then(Value::as_str))
                            .collect();
                        return Err(format!(
                            "the session has {} runs; choose one with --run ({})",
                            runs.len(),
                            ids.join(", ")
                        ));
                    }
                },
            };
            chosen.clone()
        }
        _ => {
            if let (Some(id), Some(found)) = (run, value.get("run_id").and_then(Value::as_str))
                && id != found
            {
                return Err(format!("the record is run {found}, not {id}"));
            }
            value
        }
    };
    let record: RunResult = serde_json::from_value(record)
        .map_err(|e| format!("not a run record or a session: {e}"))?;
    orchestra_core::orchestrator::migrate_record(record).map_err(|e| e.to_string())
}

/// Replays `record`, writing every event as a JSON line to `out`; Ok when
/// the replay ends with the record's status.
pub async fn replay(record: &RunResult, out: &mut impl Write) -> Result<(), ReplayError> {
    let orch = Orchestrator::new();
    let mut stream = orch.replay(record).map_err(|e| ReplayError::Start {
        run_id: record.run_id.clone(),
        message: e.to_string(),
    })?;
    let mut last: Option<RunResult> = None;
    while let Some(event) = stream.next().await {
        let line = serde_json::to_string(&event).map_err(io::Error::other)?;
        writeln!(out, "{line}")?;
        if let Some(r) = event.kind.result() {
            last = Some(r.clone());
        }
    }
    out.flush()?;
    let Some(result) = last else {
        return Err(ReplayError::Mismatch(format!(
            "the replay of run {} ended without a result",
            record.run_id
        )));
    };
    if result.status == record.status {
        return Ok(());
    }
    let why = result
        .error
        .as_ref()
        .map(|e| format!(" ({}: {})", e.code, e.message))
        .unwrap_or_default();
    Err(ReplayError::Mismatch(format!(
        "the replay of run {} ended {}{why}; the record says {}",
        record.run_id,
        status_name(result.status),
        status_name(record.status)
    )))
}

fn status_name(status: RunStatus) -> String {
    serde_json::to_value(status)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("{status:?}"))
}
