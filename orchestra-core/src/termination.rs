//! [`Termination`]: conditions that end a run cleanly, in every pattern.
//!
//! A condition is a JSON value, composable with `any` / `all`, given as the
//! run option `termination`. After each agent step the pattern checks it;
//! when it holds, the pattern stops where it is, the run completes with what
//! it has, and the result's `termination` names the condition that ended it.
//!
//! ```
//! use orchestra_core::termination::{Termination, TerminationState};
//! use orchestra_core::Message;
//! let t: Termination = serde_json::from_value(serde_json::json!(
//!     {"any": [{"max_rounds": 8}, {"text_mention": "APPROVED"}, {"max_tokens": 20000}]}
//! )).unwrap();
//! let msgs = [Message::assistant("critic", "APPROVED")];
//! let state = TerminationState { rounds: 2, messages: &msgs, tokens: 10, elapsed: Default::default(), cost_micros: 0 };
//! assert_eq!(t.check(&state).as_deref(), Some("text_mention: APPROVED"));
//! ```
//!
//! The difference from limits: `timeout_ms` and `max_iterations` fail a run
//! that overruns; a termination condition is the run's intended end.

use std::{collections::HashMap, sync::Arc, time::Duration};

use futures::{FutureExt, future::BoxFuture};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{context::RunContext, event::EventKind, message::Message};

/// A condition that ends a run, composable with `any` / `all`.
///
/// JSON: `{"max_rounds": 8}`, `{"text_mention": "APPROVED"}`,
/// `{"any": [{"max_messages": 20}, {"speaker": "approver"}]}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Termination {
    /// This many agent turns (group chat rounds; agent steps elsewhere).
    MaxRounds(u32),
    /// This many agent messages in the run.
    MaxMessages(usize),
    /// The latest message contains this text (case-sensitive).
    TextMention(String),
    /// The named agent has just spoken.
    Speaker(String),
    /// The run has used at least this many tokens (a budget: emits `budget_exceeded`).
    MaxTokens(u64),
    /// The run has cost at least this much, in the price table's currency
    /// (a budget: emits `budget_exceeded`). Costs come from agents' prices.
    MaxCost(f64),
    /// The run has been going this long (a clean stop, unlike `timeout_ms`).
    MaxDurationMs(u64),
    /// A predicate registered on the orchestrator under this name
    /// (`Orchestrator::register_condition` or `register_async_condition`;
    /// Python and Node callables too).
    Custom(String),
    Any(Vec<Termination>),
    All(Vec<Termination>),
}

/// A custom termination predicate.
pub type Condition = dyn Fn(&TerminationState<'_>) -> bool + Send + Sync;

/// A custom termination predicate that answers asynchronously (one that
/// calls out to another runtime or service), registered with
/// `Orchestrator::register_async_condition`. An error or a panic counts as
/// `false`.
pub type AsyncCondition = dyn Fn(TerminationSnapshot) -> BoxFuture<'static, bool> + Send + Sync;

/// An owned copy of a [`TerminationState`], for an [`AsyncCondition`].
#[derive(Debug, Clone)]
pub struct TerminationSnapshot {
    /// Agent turns so far.
    pub rounds: u32,
    /// Agent messages so far, oldest first.
    pub messages: Arc<[Message]>,
    pub tokens: u64,
    pub elapsed: Duration,
    /// Cost so far in millionths of the currency (see [`crate::Usage::cost_micros`]).
    pub cost_micros: u64,
}

impl TerminationSnapshot {
    /// Copies `state`.
    pub fn new(state: &TerminationState<'_>) -> Self {
        Self {
            rounds: state.rounds,
            messages: state.messages.into(),
            tokens: state.tokens,
            elapsed: state.elapsed,
            cost_micros: state.cost_micros,
        }
    }

    /// The snapshot as a [`TerminationState`], to reuse synchronous checks.
    pub fn state(&self) -> TerminationState<'_> {
        TerminationState {
            rounds: self.rounds,
            messages: &self.messages,
            tokens: self.tokens,
            elapsed: self.elapsed,
            cost_micros: self.cost_micros,
        }
    }
}

/// What a condition is checked against.
#[derive(Debug, Clone, Copy)]
pub struct TerminationState<'a> {
    /// Agent turns so far.
    pub rounds: u32,
    /// Agent messages so far, oldest first.
    pub messages: &'a [Message],
    pub tokens: u64,
    pub elapsed: Duration,
    /// Cost so far in millionths of the currency (see [`crate::Usage::cost_micros`]).
    pub cost_micros: u64,
}

impl Termination {
    /// Why the run should stop now, or `None`. `custom` conditions never hold here.
    pub fn check(&self, s: &TerminationState<'_>) -> Option<String> {
        self.check_with(s, &HashMap::new())
    }

    /// [`check`](Self::check) with the registered custom predicates.
    pub fn check_with(
        &self,
        s: &TerminationState<'_>,
        custom: &HashMap<String, Arc<Condition>>,
    ) -> Option<String> {
        self.check_resolved(s, custom, &HashMap::new())
    }

    /// [`check_with`](Self::check_with) where `custom` names not in `custom`
    /// are looked up in `resolved`: the answers of asynchronous predicates,
    /// evaluated beforehand.
    pub fn check_resolved(
        &self,
        s: &TerminationState<'_>,
        custom: &HashMap<String, Arc<Condition>>,
        resolved: &HashMap<String, bool>,
    ) -> Option<String> {
        let last = s.messages.last();
        match self {
            Self::MaxRounds(n) => (s.rounds >= *n).then(|| format!("max_rounds: {n}")),
            Self::MaxMessages(n) => (s.messages.len() >= *n).then(|| format!("max_messages: {n}")),
            Self::TextMention(t) => last
                .filter(|m| m.content.contains(t.as_str()))
                .map(|_| format!("text_mention: {t}")),
            Self::Speaker(a) => last
                .filter(|m| m.name.as_deref() == Some(a.as_str()))
                .map(|_| format!("speaker: {a}")),
            Self::MaxTokens(n) => (s.tokens >= *n).then(|| format!("max_tokens: {n}")),
            Self::MaxCost(c) => (s.cost_micros as f64 >= c * 1e6).then(|| format!("max_cost: {c}")),
            Self::MaxDurationMs(n) => {
                (s.elapsed >= Duration::from_millis(*n)).then(|| format!("max_duration_ms: {n}"))
            }
            Self::Custom(name) => {
                let holds = match custom.get(name) {
                    Some(f) => std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(s)))
                        .unwrap_or_else(|_| {
                            tracing::warn!(condition = %name, "custom condition panicked; counted as false");
                            false
                        }),
                    None => resolved.get(name).copied().unwrap_or(false),
                };
                holds.then(|| format!("custom: {name}"))
            }
            Self::Any(cs) => cs
                .iter()
                .find_map(|c| c.check_resolved(s, custom, resolved)),
            Self::All(cs) => {
                let reasons: Option<Vec<String>> = cs
                    .iter()
                    .map(|c| c.check_resolved(s, custom, resolved))
                    .collect();
                reasons
                    .filter(|r| !r.is_empty())
                    .map(|r| format!("all({})", r.join(", ")))
            }
        }
    }

    /// Names of the custom predicates this condition uses.
    pub fn custom_names(&self) -> Vec<&str> {
        match self {
            Self::Custom(n) => vec![n.as_str()],
            Self::Any(cs) | Self::All(cs) => cs.iter().flat_map(Self::custom_names).collect(),
            _ => Vec::new(),
        }
    }

    /// The budgets this condition sets at top level or under `any`.
    fn budgets(&self) -> Vec<&Termination> {
        match self {
            Self::MaxTokens(_) | Self::MaxCost(_) => vec![self],
            Self::Any(cs) => cs.iter().flat_map(Self::budgets).collect(),
            _ => Vec::new(),
        }
    }
}

/// Checks the run's `termination` option after `rounds` agent turns of the
/// calling pattern, and emits `budget_exceeded` when a token budget is what
/// ended it. Cheap when no condition is set; the transcript is copied only
/// when the condition uses an asynchronous custom predicate, whose answers
/// are awaited (concurrently) before the synchronous check.
pub async fn check_run(ctx: &RunContext, rounds: u32) -> Option<String> {
    if let Some(reason) = ctx.stop_requested() {
        return Some(format!("stopped: {reason}"));
    }
    if let Some(reason) = check_session_budget(ctx) {
        return Some(reason);
    }
    let t = ctx.limits().termination.as_ref()?;
    let usage = ctx.usage();
    let elapsed = ctx.limits().timeout.saturating_sub(ctx.remaining());
    let components = ctx.components();
    let asynchronous: Vec<(&str, &Arc<AsyncCondition>)> = t
        .custom_names()
        .into_iter()
        .filter(|n| !components.conditions.contains_key(*n))
        .filter_map(|n| components.async_conditions.get(n).map(|f| (n, f)))
        .collect();
    let resolved = match asynchronous.is_empty() {
        true => HashMap::new(),
        false => {
            let snapshot = ctx.with_transcript(|messages| TerminationSnapshot {
                rounds,
                messages: messages.into(),
                tokens: usage.total_tokens,
                elapsed,
                cost_micros: usage.cost_micros,
            });
            evaluate_async(asynchronous, snapshot).await
        }
    };
    // Checked against the transcript in place: no copy per step.
    let reason = ctx.with_transcript(|messages| {
        let state = TerminationState {
            rounds,
            messages,
            tokens: usage.total_tokens,
            elapsed,
            cost_micros: usage.cost_micros,
        };
        t.check_resolved(&state, &components.conditions, &resolved)
    })?;
    for budget in t.budgets() {
        match budget {
            Termination::MaxTokens(limit) if usage.total_tokens >= *limit => {
                ctx.emit_with(|| EventKind::BudgetExceeded {
                    budget: "max_tokens".into(),
                    limit: *limit,
                    used: usage.total_tokens,
                });
            }
            Termination::MaxCost(limit) if usage.cost_micros as f64 >= limit * 1e6 => {
                ctx.emit_with(|| EventKind::BudgetExceeded {
                    budget: "max_cost_micros".into(),
                    limit: (limit * 1e6) as u64,
                    used: usage.cost_micros,
                });
            }
            _ => {}
        }
    }
    tracing::debug!(reason = %reason, "termination condition met");
    Some(reason)
}

/// Awaits the asynchronous predicates together (each name once); one that
/// panics counts as `false`.
async fn evaluate_async(
    conditions: Vec<(&str, &Arc<AsyncCondition>)>,
    snapshot: TerminationSnapshot,
) -> HashMap<String, bool> {
    let mut seen = std::collections::HashSet::new();
    let calls = conditions
        .into_iter()
        .filter(|(name, _)| seen.insert(*name))
        .map(|(name, f)| {
            let name = name.to_owned();
            let call = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(snapshot.clone())));
            async move {
                let holds = match call {
                    Ok(future) => match std::panic::AssertUnwindSafe(future).catch_unwind().await {
                        Ok(holds) => holds,
                        Err(_) => {
                            tracing::warn!(condition = %name, "custom condition panicked; counted as false");
                            false
                        }
                    },
                    Err(_) => {
                        tracing::warn!(condition = %name, "custom condition panicked; counted as false");
                        false
                    }
                };
                (name, holds)
            }
        });
    futures::future::join_all(calls).await.into_iter().collect()
}

/// A budget for a whole session, across its runs (run option `session_budget`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SessionBudget {
    /// Tokens all runs of the session may use together.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u64>,
    /// Cost all runs of the session may add up to, in the price table's currency.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_cost: Option<f64>,
}

impl SessionBudget {
    /// Which limit `used` (the session's usage, this run's included) has
    /// reached, as a termination reason and the `budget_exceeded` event.
    pub fn exceeded(&self, used: &crate::agent::Usage) -> Option<(String, EventKind)> {
        if let Some(limit) = self.max_tokens.filter(|l| used.total_tokens >= *l) {
            return Some((
                format!("session_max_tokens: {limit}"),
                EventKind::BudgetExceeded {
                    budget: "session_max_tokens".into(),
                    limit,
                    used: used.total_tokens,
                },
            ));
        }
        if let Some(limit) = self.max_cost.filter(|l| used.cost_micros as f64 >= l * 1e6) {
            return Some((
                format!("session_max_cost: {limit}"),
                EventKind::BudgetExceeded {
                    budget: "session_max_cost_micros".into(),
                    limit: (limit * 1e6) as u64,
                    used: used.cost_micros,
                },
            ));
        }
        None
    }
}

/// The session budget's verdict after this run's usage so far.
fn check_session_budget(ctx: &RunContext) -> Option<String> {
    let budget = ctx.options().session_budget.as_ref()?;
    let mut used = ctx.session_usage();
    used += ctx.usage();
    let (reason, event) = budget.exceeded(&used)?;
    ctx.emit(event);
    tracing::info!(reason = %reason, "session budget reached");
    Some(reason)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn state<'a>(rounds: u32, messages: &'a [Message]) -> TerminationState<'a> {
        TerminationState {
            rounds,
            messages,
            tokens: 0,
            elapsed: Duration::ZERO,
            cost_micros: 0,
        }
    }

    #[test]
    fn conditions_parse_from_json_and_compose() {
        let t: Termination = serde_json::from_value(json!({
            "any": [{"max_rounds": 8}, {"all": [{"text_mention": "OK"}, {"speaker": "boss"}]}]
        }))
        .unwrap();
        let boss_fine = [Message::assistant("boss", "fine")];
        let intern_ok = [Message::assistant("intern", "OK")];
        let boss_ok = [Message::assistant("boss", "OK")];
        assert_eq!(t.check(&state(2, &boss_fine)), None);
        assert_eq!(t.check(&state(2, &intern_ok)), None);
        assert_eq!(
            t.check(&state(2, &boss_ok)).as_deref(),
            Some("all(text_mention: OK, speaker: boss)")
        );
        assert_eq!(t.check(&state(8, &[])).as_deref(), Some("max_rounds: 8"));
    }

    #[test]
    fn budgets_and_wall_clock_are_conditions_too() {
        let t: Termination =
            serde_json::from_value(json!({"any": [{"max_tokens": 100}, {"max_duration_ms": 50}]}))
                .unwrap();
        let mut s = state(0, &[]);
        assert_eq!(t.check(&s), None);
        s.tokens = 100;
        assert_eq!(t.check(&s).as_deref(), Some("max_tokens: 100"));
        s.tokens = 0;
        s.elapsed = Duration::from_millis(60);
        assert_eq!(t.check(&s).as_deref(), Some("max_duration_ms: 50"));
        assert_eq!(t.budgets(), [&Termination::MaxTokens(100)]);
    }

    #[test]
    fn an_unknown_condition_is_rejected() {
        assert!(serde_json::from_value::<Termination>(json!({"max_vibes": 1})).is_err());
    }
}
