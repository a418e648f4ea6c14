//! Agent call policies from the configuration, and circuit breaker metrics.
//!
//! `[policy]` sets the defaults of every agent; `[[agents]] policy = {..}`
//! (or `[policy.agents.NAME]`, which also reaches agents found by discovery)
//! overrides them per agent. A request can still override retries, time
//! limits and fallbacks in its options (`retry`, `agent_timeout_ms`,
//! `fallbacks`, `agent_policies`).
//!
//! ```
//! use orchestra_server::config::Config;
//! let config = Config::from_toml_str(r#"
//!     [policy]
//!     retry = { max_retries = 2, initial_backoff_ms = 100 }
//!     circuit_breaker = { failure_threshold = 5, window_ms = 60000, cooldown_ms = 30000 }
//!     max_concurrency = 16
//!     [policy.agents.search]
//!     fallbacks = ["search_backup"]
//! "#).unwrap();
//! assert_eq!(config.policy.retry.unwrap().max_retries, 2);
//! assert_eq!(config.policy.agents["search"].fallbacks.as_deref(), Some(&["search_backup".to_owned()][..]));
//! ```

use std::collections::BTreeMap;

use orchestra_core::{
    AgentPolicy, CircuitBreakerPolicy, CircuitStatus, Limits, Orchestrator, RetryPolicy,
};
use serde::{Deserialize, Serialize};

use crate::config::Config;

/// `[policy]`: what every agent call gets unless its agent or the request says otherwise.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PolicyConfig {
    /// Retries on retryable errors (default: none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryPolicy>,
    /// Every agent's circuit breaker (default: off).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub circuit_breaker: Option<CircuitBreakerPolicy>,
    /// Most calls of one agent in flight at once across all runs; 0: no limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_concurrency: Option<usize>,
    /// Per-agent policies by agent name (merged under `[[agents]] policy`).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub agents: BTreeMap<String, AgentPolicy>,
}

/// `limits` with the `[policy]` defaults applied.
pub fn limits(policy: &PolicyConfig, limits: Limits) -> Limits {
    Limits {
        retry: policy.retry.unwrap_or(limits.retry),
        circuit_breaker: policy.circuit_breaker.unwrap_or(limits.circuit_breaker),
        max_concurrency: policy.max_concurrency.unwrap_or(limits.max_concurrency),
        ..limits
    }
}

/// The policy of each agent the configuration names: `[policy.agents.NAME]`
/// with `[[agents]] policy` on top (field by field).
pub fn agent_policies(config: &Config) -> BTreeMap<String, AgentPolicy> {
    let mut out = config.policy.agents.clone();
    for a in &config.agents {
        if let Some(p) = &a.policy {
            let merged = match out.remove(&a.name) {
                Some(base) => overlay(base, p.clone()),
                None => p.clone(),
            };
            out.insert(a.name.clone(), merged);
        }
    }
    out
}

fn overlay(base: AgentPolicy, top: AgentPolicy) -> AgentPolicy {
    AgentPolicy {
        retry: top.retry.or(base.retry),
        agent_timeout_ms: top.agent_timeout_ms.or(base.agent_timeout_ms),
        fallbacks: top.fallbacks.or(base.fallbacks),
        circuit_breaker: top.circuit_breaker.or(base.circuit_breaker),
        max_concurrency: top.max_concurrency.or(base.max_concurrency),
    }
}

/// Sets the configured per-agent policies on `orch`.
pub fn apply(config: &Config, orch: &Orchestrator) {
    for (name, policy) in agent_policies(config) {
        orch.set_agent_policy(&name, policy);
    }
}

/// Publishes each agent's breaker state as gauges, just before `/metrics`
/// renders (so an expired cool-down shows as it is, not as last reported):
///
/// | metric | type | labels |
/// |---|---|---|
/// | `orchestra_circuit_state` | gauge: 0 closed, 1 open, 2 half-open | agent |
/// | `orchestra_circuit_recent_failures` | gauge | agent |
/// | `orchestra_agent_in_flight` | gauge (agents with a concurrency limit) | agent |
pub fn record_circuit_metrics(orch: &Orchestrator) {
    for s in orch.circuit_states() {
        record_one(&s);
    }
}

fn record_one(s: &CircuitStatus) {
    metrics::gauge!("orchestra_circuit_state", "agent" => s.agent.clone()).set(s.state.as_gauge());
    metrics::gauge!("orchestra_circuit_recent_failures", "agent" => s.agent.clone())
        .set(f64::from(s.recent_failures));
    if let Some(n) = s.in_flight {
        metrics::gauge!("orchestra_agent_in_flight", "agent" => s.agent.clone()).set(n as f64);
    }
}

/// Registers the metric descriptions (called once with the recorder).
pub fn describe() {
    metrics::describe_gauge!(
        "orchestra_circuit_state",
        "Circuit breaker state by agent: 0 closed, 1 open, 2 half-open."
    );
    metrics::describe_gauge!(
        "orchestra_circuit_recent_failures",
        "Failures counted by an agent's circuit breaker in its current window."
    );
    metrics::describe_gauge!(
        "orchestra_agent_in_flight",
        "Calls in flight, for agents with a concurrency limit."
    );
    metrics::describe_counter!(
        "orchestra_policy_decisions_total",
        "Policy decisions by agent and kind: retry, fallback, circuit_opened, circuit_half_open, circuit_closed."
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_entries_override_the_policy_table_field_by_field() {
        let config = Config::from_toml_str(
            r#"
            [policy]
            max_concurrency = 4
            [policy.agents.a]
            fallbacks = ["b"]
            max_concurrency = 1
            [[agents]]
            name = "a"
            kind = "demo"
            policy = { max_concurrency = 2, circuit_breaker = { failure_threshold = 3 } }
            "#,
        )
        .unwrap();
        let p = &agent_policies(&config)["a"];
        assert_eq!(p.max_concurrency, Some(2));
        assert_eq!(p.fallbacks.as_deref(), Some(&["b".to_owned()][..]));
        assert_eq!(p.circuit_breaker.unwrap().failure_threshold, 3);
        assert_eq!(p.circuit_breaker.unwrap().cooldown_ms, 30_000);
        let l = limits(&config.policy, Limits::default());
        assert_eq!(l.max_concurrency, 4);
        assert!(!l.circuit_breaker.is_enabled());
    }

    #[test]
    fn unknown_policy_keys_are_rejected() {
        let e = Config::from_toml_str("[policy]\nretries = 3\n").unwrap_err();
        assert!(e.to_string().contains("retries"), "{e}");
        let e = Config::from_toml_str(
            "[[agents]]\nname = \"a\"\nkind = \"demo\"\npolicy = { max_retries = 3 }\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("max_retries"), "{e}");
    }
}
