//! Per-call policies: retries with backoff, fallback chains, and limits.
//!
//! Options arrive as JSON next to the pattern's own options:
//!
//! ```
//! use orchestra_core::RunOptions;
//! let o: RunOptions = serde_json::from_value(serde_json::json!({
//!     "timeout_ms": 30000,
//!     "retry": {"max_retries": 2, "initial_backoff_ms": 100},
//!     "fallbacks": {"writer": ["backup_writer"]}
//! })).unwrap();
//! assert_eq!(o.retry.unwrap().max_retries, 2);
//! ```

use std::{collections::HashMap, time::Duration};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::error::AgentError;

/// Retries of one agent call on retryable errors (timeouts, rate limits, 5xx,
/// transport errors), with exponential backoff and full jitter.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RetryPolicy {
    /// Extra attempts after the first; 0 disables retries.
    pub max_retries: u32,
    /// Backoff cap for the first retry, doubled each time.
    pub initial_backoff_ms: u64,
    /// Upper bound on any single backoff.
    pub max_backoff_ms: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 0,
            initial_backoff_ms: 200,
            max_backoff_ms: 10_000,
        }
    }
}

impl RetryPolicy {
    /// The wait before retry number `retry` (1-based): a uniformly random
    /// delay up to the exponential cap ("full jitter"), but never shorter than
    /// a rate limit's `Retry-After`.
    pub fn backoff(&self, retry: u32, error: &AgentError) -> Duration {
        let cap = self
            .initial_backoff_ms
            .saturating_mul(1u64 << retry.saturating_sub(1).min(32))
            .min(self.max_backoff_ms);
        let jittered = Duration::from_millis(fastrand::u64(0..=cap));
        match error {
            AgentError::RateLimited {
                retry_after: Some(after),
            } => jittered.max(*after),
            _ => jittered,
        }
    }
}

/// Limits and policies common to every pattern (the non-pattern keys of `options`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RunOptions {
    /// Total time for the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Time for each agent call (each attempt).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_timeout_ms: Option<u64>,
    /// Most agent calls in the run, across all steps, retries excluded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_iterations: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryPolicy>,
    /// For each agent, the agents to try in order when it fails for good.
    #[serde(default, skip_serializing_if = "HashMap::is_empty")]
    pub fallbacks: HashMap<String, Vec<String>>,
}

impl RunOptions {
    /// The option keys that belong to every pattern; all other keys go to the pattern.
    pub const KEYS: &'static [&'static str] = &[
        "timeout_ms",
        "agent_timeout_ms",
        "max_iterations",
        "retry",
        "fallbacks",
    ];
}

/// Defaults applied when a request leaves a limit out.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    pub timeout: Duration,
    pub agent_timeout: Option<Duration>,
    pub max_iterations: u32,
    pub retry: RetryPolicy,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(300),
            agent_timeout: None,
            max_iterations: 100,
            retry: RetryPolicy::default(),
        }
    }
}

impl Limits {
    /// These defaults, overridden by a request's options.
    pub fn merged(&self, o: &RunOptions) -> Self {
        Self {
            timeout: o.timeout_ms.map_or(self.timeout, Duration::from_millis),
            agent_timeout: o
                .agent_timeout_ms
                .map(Duration::from_millis)
                .or(self.agent_timeout),
            max_iterations: o.max_iterations.unwrap_or(self.max_iterations),
            retry: o.retry.unwrap_or(self.retry),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_stays_under_the_exponential_cap() {
        let p = RetryPolicy {
            max_retries: 5,
            initial_backoff_ms: 100,
            max_backoff_ms: 1000,
        };
        let e = AgentError::retryable("x");
        for _ in 0..100 {
            assert!(p.backoff(1, &e) <= Duration::from_millis(100));
            assert!(p.backoff(3, &e) <= Duration::from_millis(400));
            assert!(p.backoff(30, &e) <= Duration::from_millis(1000));
        }
    }

    #[test]
    fn backoff_honours_retry_after() {
        let p = RetryPolicy::default();
        let e = AgentError::RateLimited {
            retry_after: Some(Duration::from_secs(3)),
        };
        assert!(p.backoff(1, &e) >= Duration::from_secs(3));
    }

    #[test]
    fn the_key_list_matches_the_fields() {
        let schema = schemars::schema_for!(RunOptions);
        let props = schema.get("properties").unwrap().as_object().unwrap();
        let mut keys: Vec<_> = props.keys().map(String::as_str).collect();
        keys.sort_unstable();
        let mut expected = RunOptions::KEYS.to_vec();
        expected.sort_unstable();
        assert_eq!(keys, expected);
    }
}
