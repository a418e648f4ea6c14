//! The run queue: runs submitted by any instance, executed by workers on any
//! instance, their status and events readable from any instance.
//!
//! [`RedisRunQueue`] keeps the queue on a Redis Stream read by a consumer
//! group. Delivery is at-least-once: a worker that dies mid-run has its entry
//! reclaimed by another after [`RunQueueConfig::claim_idle`], and a run that
//! keeps failing goes to a dead-letter stream after
//! [`RunQueueConfig::max_deliveries`] deliveries. A run that completed is
//! never executed again: completion is recorded with `SET NX` before the
//! entry is acknowledged, and checked before a delivery is executed.
//!
//! The Redis implementation is behind the `redis` feature; the types here
//! (statuses, records, errors) are shared with code that only reads them.
//!
//! ```
//! use orchestra_core::queue::{QueuedRunStatus, validate_run_id};
//! assert!(validate_run_id("0192f0c1-7d3a-7b2e-9f00-1234567890ab").is_ok());
//! assert!(QueuedRunStatus::Completed.is_final());
//! ```

#[cfg(any(feature = "redis", feature = "nats"))]
pub(crate) mod pacing;
#[cfg(feature = "redis")]
mod redis;
#[cfg(feature = "redis")]
pub(crate) mod stream_group;

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

#[cfg(feature = "redis")]
pub use redis::{
    DeadLetter, EventWriter, QueueStats, RedisRunQueue, RunEventStream, RunJob, RunQueueConfig,
};

use crate::error::StoreError;

/// What a handler returns when a run fails; the message is kept in the run
/// record and the dead-letter entry.
pub type JobError = Box<dyn std::error::Error + Send + Sync>;

/// Where a queued run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum QueuedRunStatus {
    /// Waiting for a worker.
    Queued,
    /// A worker is executing it.
    Running,
    /// The last attempt failed; it is delivered again after the claim timeout.
    Retrying,
    /// Finished with a result; final.
    Completed,
    /// Failed on every allowed delivery and moved to the dead-letter stream; final.
    Dead,
}

impl QueuedRunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Retrying => "retrying",
            Self::Completed => "completed",
            Self::Dead => "dead",
        }
    }

    /// True for `completed` and `dead`.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Completed | Self::Dead)
    }

    /// The status named by [`as_str`](Self::as_str).
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "queued" => Self::Queued,
            "running" => Self::Running,
            "retrying" => Self::Retrying,
            "completed" => Self::Completed,
            "dead" => Self::Dead,
            _ => return None,
        })
    }
}

/// The status record of a queued run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct QueuedRun {
    pub run_id: String,
    pub status: QueuedRunStatus,
    /// The request as submitted.
    pub request: Value,
    /// The handler's result, once completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    /// The last failure, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Deliveries so far (1 on the first execution).
    pub attempts: u32,
    /// The consumer that ran it last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<String>,
    pub submitted_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// One event of a run as stored: its position in the run's event stream
/// (use it as the SSE id / `Last-Event-ID`) and the JSON the worker appended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RunEvent {
    pub seq: u64,
    pub data: Value,
}

/// A failure of the run queue.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum QueueError {
    /// Run ids are 1–128 characters of `A-Z a-z 0-9 - _ .`.
    #[error("invalid run id: {0}")]
    InvalidRunId(String),
    /// A run with this id was already submitted.
    #[error("run {0} already exists")]
    DuplicateRun(String),
    /// No run with this id (never submitted, or its record expired).
    #[error("unknown run {0}")]
    UnknownRun(String),
    /// A request, result or event could not be (de)serialized.
    #[error("cannot encode or decode queue data: {0}")]
    Encoding(String),
    /// Redis failed (unreachable Redis is `Unavailable`).
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl QueueError {
    /// A stable snake_case code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidRunId(_) => "invalid_run_id",
            Self::DuplicateRun(_) => "duplicate_run",
            Self::UnknownRun(_) => "unknown_run",
            Self::Encoding(_) => "queue_encoding",
            Self::Store(e) => e.code(),
        }
    }
}

/// Checks a caller-supplied run id. `:` is excluded because the id becomes
/// part of Redis keys that have suffixes of their own.
pub fn validate_run_id(id: &str) -> Result<(), QueueError> {
    if id.is_empty() || id.len() > 128 {
        return Err(QueueError::InvalidRunId(
            "must have 1 to 128 characters".into(),
        ));
    }
    if let Some(c) = id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(QueueError::InvalidRunId(format!(
            "character {c:?} is not allowed (use A-Z, a-z, 0-9, '-', '_', '.')"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_are_checked() {
        assert!(validate_run_id("0192f0c1-7d3a-7b2e-9f00-1234567890ab").is_ok());
        for bad in ["", "a:b", "sp ace", &"x".repeat(129)] {
            assert_eq!(validate_run_id(bad).unwrap_err().code(), "invalid_run_id");
        }
    }

    #[test]
    fn statuses_round_trip() {
        for s in [
            QueuedRunStatus::Queued,
            QueuedRunStatus::Running,
            QueuedRunStatus::Retrying,
            QueuedRunStatus::Completed,
            QueuedRunStatus::Dead,
        ] {
            assert_eq!(QueuedRunStatus::parse(s.as_str()), Some(s));
        }
        assert!(QueuedRunStatus::Dead.is_final());
        assert!(!QueuedRunStatus::Retrying.is_final());
    }
}
