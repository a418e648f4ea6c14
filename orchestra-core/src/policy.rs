//! Per-call policies: retries with backoff, fallback chains, circuit
//! breakers, per-agent concurrency limits (bulkheads), and limits.
//!
//! Policies are layered, most specific last:
//! 1. the orchestrator's defaults ([`Limits`], from `OrchestratorBuilder::limits`
//!    or the server's `[policy]` section);
//! 2. per agent ([`AgentPolicy`], `Orchestrator::set_agent_policy` or
//!    `[[agents]] policy = {..}`);
//! 3. per request: `retry`, `agent_timeout_ms` and `fallbacks` in the options;
//! 4. per agent in a request: `agent_policies: {"name": {..}}` ([`CallPolicy`]).
//!
//! Circuit breakers and bulkheads are shared by every run of an orchestrator,
//! so they are configured at levels 1 and 2 only.
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

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tokio::{sync::Semaphore, time::Instant};

use crate::{error::AgentError, termination::Termination};

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
    /// Per-agent overrides for this run (most specific; win over the keys above).
    #[serde(default, skip_serializing_if = "HashMap::is_empty")]
    pub agent_policies: HashMap<String, CallPolicy>,
    /// A condition that ends the run cleanly, checked after every agent step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub termination: Option<Termination>,
    /// Agents that may act only after a person approves each of their steps
    /// (the run pauses with an `input_requested` event of kind `approval`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approve_agents: Vec<String>,
    /// Dynamic runs: a person approves every plan (and re-plan) before it runs.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub approve_plan: bool,
    /// How long a paused run waits for an answer; after that, answers are
    /// refused and the run ends `timed_out`. Default: no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_timeout_ms: Option<u64>,
    /// Write a checkpoint to the session store after every step. Default: on
    /// when the store is durable (Redis), off for the in-memory store (a
    /// paused run is always recorded, whatever the store).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<bool>,
    /// Tokens and cost all runs of the session may use together; a run
    /// stops cleanly (`budget_exceeded`) when the session reaches it, and a
    /// run in a session that already has does not start any agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_budget: Option<crate::termination::SessionBudget>,
}

impl RunOptions {
    /// The option keys that belong to every pattern; all other keys go to the pattern.
    pub const KEYS: &'static [&'static str] = &[
        "timeout_ms",
        "agent_timeout_ms",
        "max_iterations",
        "retry",
        "fallbacks",
        "agent_policies",
        "termination",
        "approve_agents",
        "approve_plan",
        "input_timeout_ms",
        "checkpoint",
        "session_budget",
    ];
}

/// One agent's policy for one run, set in a request's `agent_policies`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CallPolicy {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryPolicy>,
    /// Time for each call of this agent (each attempt).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_timeout_ms: Option<u64>,
    /// Agents to try in order when this one fails for good.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallbacks: Option<Vec<String>>,
}

/// A circuit breaker per agent, shared by all runs.
///
/// Closed: calls go through and failures are counted. After
/// `failure_threshold` failures within `window_ms` it opens: calls fail at
/// once with `circuit_open` (and go to the fallback chain) for `cooldown_ms`.
/// Then it is half-open: one probe call goes through; success closes it,
/// failure opens it again. Failures are errors that say the agent is unwell:
/// timeouts, rate limits, 5xx, transport errors, invalid output and errors
/// marked retryable; not cancellations or 4xx answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct CircuitBreakerPolicy {
    /// Failures within the window that open the circuit; 0 disables the breaker.
    pub failure_threshold: u32,
    /// The window failures are counted in.
    pub window_ms: u64,
    /// How long the circuit stays open before a probe call is let through.
    pub cooldown_ms: u64,
}

impl Default for CircuitBreakerPolicy {
    fn default() -> Self {
        Self {
            failure_threshold: 0,
            window_ms: 60_000,
            cooldown_ms: 30_000,
        }
    }
}

impl CircuitBreakerPolicy {
    pub fn is_enabled(&self) -> bool {
        self.failure_threshold > 0
    }
}

/// One agent's policy, set on the orchestrator
/// (`Orchestrator::set_agent_policy`, or `[[agents]] policy = {..}` in the
/// server's configuration). Absent fields fall back to the [`Limits`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentPolicy {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryPolicy>,
    /// Time for each call of this agent (each attempt).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_timeout_ms: Option<u64>,
    /// Agents to try in order when this one fails for good.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallbacks: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub circuit_breaker: Option<CircuitBreakerPolicy>,
    /// Most calls of this agent in flight at once across all runs (a
    /// bulkhead); further calls wait, within their deadline. 0: no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrency: Option<usize>,
}

/// Defaults applied when a request leaves a limit out.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    pub timeout: Duration,
    pub agent_timeout: Option<Duration>,
    pub max_iterations: u32,
    pub retry: RetryPolicy,
    /// Every agent's circuit breaker unless its own policy sets one (default: off).
    pub circuit_breaker: CircuitBreakerPolicy,
    /// Every agent's concurrency limit unless its own policy sets one; 0: no limit.
    pub max_concurrency: usize,
    /// The run's termination condition, if any (see [`Termination`]).
    pub termination: Option<Termination>,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(300),
            agent_timeout: None,
            max_iterations: 100,
            retry: RetryPolicy::default(),
            circuit_breaker: CircuitBreakerPolicy::default(),
            max_concurrency: 0,
            termination: None,
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
            circuit_breaker: self.circuit_breaker,
            max_concurrency: self.max_concurrency,
            termination: o.termination.clone().or_else(|| self.termination.clone()),
        }
    }
}

/// Where a circuit breaker stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CircuitState {
    Closed,
    Open,
    HalfOpen,
}

impl CircuitState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
        }
    }

    /// 0 closed, 1 open, 2 half-open (the value of the Prometheus gauge).
    pub fn as_gauge(self) -> f64 {
        match self {
            Self::Closed => 0.0,
            Self::Open => 1.0,
            Self::HalfOpen => 2.0,
        }
    }
}

/// A snapshot of one agent's breaker and bulkhead, for listings and metrics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CircuitStatus {
    pub agent: String,
    pub state: CircuitState,
    /// Failures counted in the current window.
    pub recent_failures: u32,
    pub failure_threshold: u32,
    /// Time until a probe is let through, when open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_in_ms: Option<u64>,
    /// Calls of this agent in flight (counted when a concurrency limit is set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_flight: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrency: Option<usize>,
}

/// A breaker's change of state, reported to the run that caused it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Transition {
    Opened { failures: u32, cooldown: Duration },
    HalfOpen,
    Closed,
}

#[derive(Debug)]
enum BreakerState {
    Closed { failures: VecDeque<Instant> },
    Open { until: Instant, failures: u32 },
    HalfOpen { probing: bool },
}

/// The breaker of one agent.
#[derive(Debug)]
pub(crate) struct Breaker {
    policy: CircuitBreakerPolicy,
    state: Mutex<BreakerState>,
}

/// Why a call was refused by an open breaker.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rejected {
    pub retry_in: Duration,
}

impl Breaker {
    fn new(policy: CircuitBreakerPolicy) -> Self {
        Self {
            policy,
            state: Mutex::new(BreakerState::Closed {
                failures: VecDeque::new(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, BreakerState> {
        // Every transition writes a whole state, so a poisoned lock holds a valid one.
        match self.state.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Asks to make a call. `Ok(probe)` lets it through (`probe` is true for
    /// the half-open trial call, with the transition to report); `Err` refuses it.
    pub(crate) fn acquire(&self) -> Result<(bool, Option<Transition>), Rejected> {
        if !self.policy.is_enabled() {
            return Ok((false, None));
        }
        let now = Instant::now();
        let mut state = self.lock();
        match &mut *state {
            BreakerState::Closed { .. } => Ok((false, None)),
            BreakerState::Open { until, .. } if now >= *until => {
                *state = BreakerState::HalfOpen { probing: true };
                Ok((true, Some(Transition::HalfOpen)))
            }
            BreakerState::Open { until, .. } => Err(Rejected {
                retry_in: until.saturating_duration_since(now),
            }),
            BreakerState::HalfOpen { probing } if !*probing => {
                *probing = true;
                Ok((true, None))
            }
            BreakerState::HalfOpen { .. } => Err(Rejected {
                retry_in: Duration::ZERO,
            }),
        }
    }

    /// Records how a call let through by [`acquire`](Self::acquire) ended:
    /// `Some(true)` success, `Some(false)` a failure that counts, `None` no
    /// verdict (cancelled, refused by the caller's own limits).
    pub(crate) fn record(&self, probe: bool, verdict: Option<bool>) -> Option<Transition> {
        if !self.policy.is_enabled() {
            return None;
        }
        let now = Instant::now();
        let window = Duration::from_millis(self.policy.window_ms);
        let cooldown = Duration::from_millis(self.policy.cooldown_ms);
        let mut state = self.lock();
        match (&mut *state, verdict) {
            (BreakerState::HalfOpen { .. }, Some(true)) if probe => {
                *state = BreakerState::Closed {
                    failures: VecDeque::new(),
                };
                Some(Transition::Closed)
            }
            (BreakerState::HalfOpen { .. }, Some(false)) if probe => {
                *state = BreakerState::Open {
                    until: now + cooldown,
                    failures: 1,
                };
                Some(Transition::Opened {
                    failures: 1,
                    cooldown,
                })
            }
            (BreakerState::HalfOpen { probing }, None) if probe => {
                // The probe told nothing: let the next call probe.
                *probing = false;
                None
            }
            (BreakerState::Closed { failures }, Some(false)) => {
                failures.push_back(now);
                while failures
                    .front()
                    .is_some_and(|t| now.saturating_duration_since(*t) > window)
                {
                    failures.pop_front();
                }
                let n = u32::try_from(failures.len()).unwrap_or(u32::MAX);
                if n >= self.policy.failure_threshold {
                    *state = BreakerState::Open {
                        until: now + cooldown,
                        failures: n,
                    };
                    Some(Transition::Opened {
                        failures: n,
                        cooldown,
                    })
                } else {
                    None
                }
            }
            _ => None,
        }
    }

    fn status(&self) -> (CircuitState, u32, Option<u64>) {
        let now = Instant::now();
        let window = Duration::from_millis(self.policy.window_ms);
        match &*self.lock() {
            BreakerState::Closed { failures } => {
                let n = failures
                    .iter()
                    .filter(|t| now.saturating_duration_since(**t) <= window)
                    .count();
                (
                    CircuitState::Closed,
                    u32::try_from(n).unwrap_or(u32::MAX),
                    None,
                )
            }
            BreakerState::Open { until, failures } => (
                CircuitState::Open,
                *failures,
                Some(until.saturating_duration_since(now).as_millis() as u64),
            ),
            BreakerState::HalfOpen { .. } => (CircuitState::HalfOpen, 0, None),
        }
    }
}

/// The shared guards of one agent: its breaker and its bulkhead.
#[derive(Debug)]
pub(crate) struct AgentGuard {
    pub breaker: Breaker,
    pub bulkhead: Option<(Arc<Semaphore>, usize)>,
}

/// Agent policies and the shared breakers and bulkheads of one orchestrator.
#[derive(Debug, Default)]
pub(crate) struct Resilience {
    policies: Mutex<HashMap<String, AgentPolicy>>,
    guards: Mutex<HashMap<String, Arc<AgentGuard>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

impl Resilience {
    /// Sets an agent's policy; its breaker and bulkhead start afresh.
    pub(crate) fn set_policy(&self, agent: &str, policy: AgentPolicy) {
        lock(&self.policies).insert(agent.to_owned(), policy);
        lock(&self.guards).remove(agent);
    }

    pub(crate) fn remove_policy(&self, agent: &str) -> Option<AgentPolicy> {
        lock(&self.guards).remove(agent);
        lock(&self.policies).remove(agent)
    }

    pub(crate) fn policy(&self, agent: &str) -> Option<AgentPolicy> {
        lock(&self.policies).get(agent).cloned()
    }

    /// The guards of `agent`, created on first use from its policy and `limits`.
    pub(crate) fn guard(&self, agent: &str, limits: &Limits) -> Arc<AgentGuard> {
        if let Some(g) = lock(&self.guards).get(agent) {
            return g.clone();
        }
        let policy = self.policy(agent).unwrap_or_default();
        let breaker = policy.circuit_breaker.unwrap_or(limits.circuit_breaker);
        let max = policy.max_concurrency.unwrap_or(limits.max_concurrency);
        let guard = Arc::new(AgentGuard {
            breaker: Breaker::new(breaker),
            bulkhead: (max > 0).then(|| (Arc::new(Semaphore::new(max)), max)),
        });
        lock(&self.guards)
            .entry(agent.to_owned())
            .or_insert(guard)
            .clone()
    }

    /// The state of every agent that has guards, by agent name.
    pub(crate) fn statuses(&self, limits: &Limits, agents: &[String]) -> Vec<CircuitStatus> {
        agents
            .iter()
            .map(|name| {
                let g = self.guard(name, limits);
                let (state, recent_failures, retry_in_ms) = g.breaker.status();
                CircuitStatus {
                    agent: name.clone(),
                    state,
                    recent_failures,
                    failure_threshold: g.breaker.policy.failure_threshold,
                    retry_in_ms,
                    in_flight: g
                        .bulkhead
                        .as_ref()
                        .map(|(s, max)| max.saturating_sub(s.available_permits())),
                    max_concurrency: g.bulkhead.as_ref().map(|(_, max)| *max),
                }
            })
            .collect()
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

    fn breaker(threshold: u32) -> Breaker {
        Breaker::new(CircuitBreakerPolicy {
            failure_threshold: threshold,
            window_ms: 10_000,
            cooldown_ms: 5_000,
        })
    }

    #[tokio::test(start_paused = true)]
    async fn a_breaker_opens_after_n_failures_in_the_window_and_probes_after_the_cooldown() {
        let b = breaker(2);
        assert!(b.acquire().is_ok());
        assert_eq!(b.record(false, Some(false)), None);
        // A failure that left the window no longer counts.
        tokio::time::advance(Duration::from_secs(11)).await;
        assert_eq!(b.record(false, Some(false)), None);
        let t = b.record(false, Some(false));
        assert!(
            matches!(t, Some(Transition::Opened { failures: 2, .. })),
            "{t:?}"
        );
        let rejected = b.acquire().err().unwrap();
        assert_eq!(rejected.retry_in, Duration::from_secs(5));
        tokio::time::advance(Duration::from_secs(5)).await;
        // One probe goes through; a second caller is refused meanwhile.
        assert_eq!(b.acquire().unwrap(), (true, Some(Transition::HalfOpen)));
        assert!(b.acquire().is_err());
        assert_eq!(b.status().0, CircuitState::HalfOpen);
        assert_eq!(b.record(true, Some(true)), Some(Transition::Closed));
        assert_eq!(b.status(), (CircuitState::Closed, 0, None));
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_probe_reopens_and_a_probe_without_verdict_frees_the_slot() {
        let b = breaker(1);
        assert!(b.record(false, Some(false)).is_some());
        tokio::time::advance(Duration::from_secs(5)).await;
        assert!(b.acquire().unwrap().0);
        assert_eq!(b.record(true, None), None);
        assert_eq!(b.acquire().unwrap(), (true, None), "the slot is free again");
        assert!(matches!(
            b.record(true, Some(false)),
            Some(Transition::Opened { .. })
        ));
        assert_eq!(b.status().0, CircuitState::Open);
    }

    #[test]
    fn a_disabled_breaker_never_refuses() {
        let b = breaker(0);
        for _ in 0..10 {
            assert_eq!(b.record(false, Some(false)), None);
        }
        assert!(b.acquire().is_ok());
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
