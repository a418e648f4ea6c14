//! Concurrent: every agent gets the task at once; their answers are aggregated.
//!
//! Aggregators: `all` (the list), `first` (first success, the rest cancelled),
//! `vote` (majority over normalized answers), `merge` (one text with a header
//! per agent), `agent` (a summarizer agent reads every answer and writes the
//! result). Failure policy: `fail_fast` (first failure fails the run and
//! cancels the others) or `collect_partial` (aggregate what succeeded).
//!
//! **Vote ties** are broken by agent order: among the answers with the most
//! votes, the one whose first supporter comes earliest in the request's
//! agent list wins, and `data.tie` is `true`.
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! use orchestra_core::{FnAgent, Orchestrator, RunRequest};
//! let orch = Orchestrator::new();
//! for (n, a) in [("a", "Yes"), ("b", "no"), ("c", "yes.")] {
//!     orch.register(FnAgent::new(n, "votes", move |_, _| async move { a }));
//! }
//! let r = orch.run(RunRequest::new("concurrent", "Ship it?").agents(["a", "b", "c"])
//!     .option("aggregator", "vote")).await.unwrap();
//! assert_eq!(r.output.as_deref(), Some("Yes"));
//! assert_eq!(r.data.unwrap()["votes"]["yes"], 2);
//! # });
//! ```

use std::collections::HashMap;

use async_trait::async_trait;
use futures::StreamExt;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{Pattern, PatternOutput, normalize};
use crate::{
    context::{Call, Components, RunContext, Scope, StepOutcome},
    error::OrchestraError,
    message::Message,
};

pub const NAME: &str = "concurrent";
pub const DESCRIPTION: &str = "All agents receive the task at once (up to max_concurrency in flight); \
     their answers are aggregated: all, first, vote, merge, or by a summarizer agent.";

/// How answers are combined.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Aggregator {
    /// Every answer, as a JSON list in agent order.
    All,
    /// The first successful answer; the other calls are cancelled.
    First,
    /// The majority answer after normalization.
    Vote,
    /// One text with a `## agent` header per answer, in agent order.
    #[default]
    Merge,
    /// The `summarizer` agent receives all answers and writes the result.
    Agent,
}

/// What to do when an agent fails.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FailurePolicy {
    /// The first failure fails the run; calls still in flight are cancelled.
    #[default]
    FailFast,
    /// Aggregate whatever succeeded (the run fails only if nothing did).
    CollectPartial,
}

/// Options of the concurrent pattern.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ConcurrentOptions {
    pub aggregator: Aggregator,
    /// The agent that writes the result when `aggregator` is `agent`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub summarizer: Option<String>,
    /// Most agent calls in flight at once; 0 means no limit.
    pub max_concurrency: usize,
    pub on_failure: FailurePolicy,
}

impl Default for ConcurrentOptions {
    fn default() -> Self {
        Self {
            aggregator: Aggregator::Merge,
            summarizer: None,
            max_concurrency: 0,
            on_failure: FailurePolicy::FailFast,
        }
    }
}

/// The concurrent pattern.
#[derive(Debug, Clone, Default)]
pub struct Concurrent {
    options: ConcurrentOptions,
}

impl Concurrent {
    pub fn new(options: ConcurrentOptions) -> Self {
        Self { options }
    }
}

#[async_trait]
impl Pattern for Concurrent {
    fn name(&self) -> &'static str {
        NAME
    }

    fn validate(&self, _scope: &Scope, components: &Components) -> Result<(), OrchestraError> {
        match (self.options.aggregator, &self.options.summarizer) {
            (Aggregator::Agent, None) => Err(OrchestraError::InvalidOptions {
                field: "options.summarizer".into(),
                message: "required when aggregator is \"agent\"".into(),
            }),
            (_, Some(name)) => components.agent(name).map(|_| ()),
            _ => Ok(()),
        }
    }

    async fn run(&self, ctx: &RunContext, scope: Scope) -> Result<PatternOutput, OrchestraError> {
        let o = &self.options;
        let summarizer = match (o.aggregator, &o.summarizer) {
            (Aggregator::Agent, Some(name)) => Some(ctx.agent(name)?),
            (Aggregator::Agent, None) => {
                return Err(OrchestraError::InvalidOptions {
                    field: "options.summarizer".into(),
                    message: "required when aggregator is \"agent\"".into(),
                });
            }
            _ => None,
        };
        let n = scope.agents.len();
        if n == 0 {
            return Err(OrchestraError::NoAgents {
                pattern: NAME.into(),
            });
        }
        let limit = if o.max_concurrency == 0 {
            n
        } else {
            o.max_concurrency
        };
        let history = ctx.history().to_vec();
        // Futures are created (and step numbers taken) in agent order.
        let mut calls = Vec::with_capacity(n);
        for (pos, agent) in scope.agents.iter().enumerate() {
            let call =
                Call::new(scope.task.clone(), history.clone()).label(format!("branch {pos}"));
            // `map`, not an async block awaiting the call: that would hold
            // the call's future twice.
            let fut = futures::FutureExt::map(ctx.invoke(agent, call), move |r| (pos, r));
            calls.push(Box::pin(fut));
        }
        let mut in_flight = futures::stream::iter(calls).buffer_unordered(limit);

        // Answers by position in the agent list, so aggregation is in agent order.
        let mut answers: Vec<Option<StepOutcome>> = vec![None; n];
        let mut failures: Vec<OrchestraError> = Vec::new();
        let mut answered = 0u32;
        let mut stopped = None;
        // A branch that paused for input pauses the run, once the others are done.
        let mut paused: Option<OrchestraError> = None;
        while let Some((pos, result)) = in_flight.next().await {
            match result {
                Ok(out) if o.aggregator == Aggregator::First => {
                    // Dropping the stream cancels the calls still running.
                    drop(in_flight);
                    return Ok(PatternOutput {
                        content: out.output.content.clone(),
                        data: Some(json!({"agent": out.agent, "data": out.output.data})),
                        partial: false,
                        termination: None,
                    });
                }
                Ok(out) => {
                    answers[pos] = Some(out);
                    answered += 1;
                    // A run-wide condition ends the fan-out early; calls still
                    // in flight are cancelled and the answers so far aggregated.
                    stopped = crate::termination::check_run(ctx, answered).await;
                    if stopped.is_some() {
                        break;
                    }
                }
                Err(e @ (OrchestraError::Cancelled | OrchestraError::MaxIterations { .. })) => {
                    return Err(e);
                }
                Err(e @ OrchestraError::InputRequired(_)) => {
                    paused.get_or_insert(e);
                }
                Err(e)
                    if o.on_failure == FailurePolicy::FailFast
                        && o.aggregator != Aggregator::First =>
                {
                    return Err(e);
                }
                Err(e) => failures.push(e),
            }
        }
        drop(in_flight);
        if let Some(e) = paused {
            return Err(e);
        }
        let ok: Vec<StepOutcome> = answers.into_iter().flatten().collect();
        if ok.is_empty() {
            return Err(failures
                .into_iter()
                .next()
                .unwrap_or(OrchestraError::NoAgents {
                    pattern: NAME.into(),
                }));
        }
        let partial = !failures.is_empty();
        let mut out = match o.aggregator {
            Aggregator::All | Aggregator::First => all(&ok),
            Aggregator::Vote => vote(&ok),
            Aggregator::Merge => merge(&ok),
            Aggregator::Agent => {
                let summarizer = summarizer.ok_or_else(|| OrchestraError::InvalidOptions {
                    field: "options.summarizer".into(),
                    message: "required when aggregator is \"agent\"".into(),
                })?;
                let mut messages = history;
                messages.extend(ok.iter().map(StepOutcome::message));
                let call = Call::new(scope.task.clone(), messages).label("summary");
                let s = ctx.invoke(&summarizer, call).await?;
                PatternOutput {
                    content: s.output.content,
                    data: s.output.data,
                    ..PatternOutput::default()
                }
            }
        };
        if partial {
            out.partial = true;
            out.termination = Some(format!("partial: {} of {n} agents answered", ok.len()));
        }
        if let Some(reason) = stopped {
            out.partial = ok.len() < n;
            out.termination = Some(reason);
        }
        Ok(out)
    }
}

fn all(ok: &[StepOutcome]) -> PatternOutput {
    let contents: Vec<&str> = ok.iter().map(|o| o.output.content.as_str()).collect();
    let data: Vec<Value> = ok
        .iter()
        .map(|o| json!({"agent": o.agent, "content": o.output.content, "data": o.output.data}))
        .collect();
    PatternOutput {
        // Straight to text: a list of strings always serializes.
        content: serde_json::to_string(&contents).unwrap_or_default(),
        data: Some(Value::Array(data)),
        ..PatternOutput::default()
    }
}

fn merge(ok: &[StepOutcome]) -> PatternOutput {
    let content = ok
        .iter()
        .map(|o| format!("## {}\n{}", o.agent, o.output.content.trim()))
        .collect::<Vec<_>>()
        .join("\n\n");
    let messages: Vec<Message> = ok.iter().map(StepOutcome::message).collect();
    PatternOutput {
        content,
        data: Some(
            json!({"answers": messages.iter().map(|m| json!({"agent": m.name, "content": m.content})).collect::<Vec<_>>()}),
        ),
        ..PatternOutput::default()
    }
}

fn vote(ok: &[StepOutcome]) -> PatternOutput {
    // (votes, first position, first original text) per normalized answer.
    let mut tally: HashMap<String, (usize, usize, &str)> = HashMap::new();
    for (pos, o) in ok.iter().enumerate() {
        let e = tally.entry(normalize(&o.output.content)).or_insert((
            0,
            pos,
            o.output.content.as_str(),
        ));
        e.0 += 1;
    }
    let best = tally.values().map(|e| e.0).max().unwrap_or(0);
    let mut leaders: Vec<(&String, &(usize, usize, &str))> =
        tally.iter().filter(|(_, e)| e.0 == best).collect();
    leaders.sort_by_key(|(_, e)| e.1);
    let tie = leaders.len() > 1;
    let (winner, (_, _, text)) = leaders[0];
    let votes: serde_json::Map<String, Value> = tally
        .iter()
        .map(|(k, e)| (k.clone(), Value::from(e.0)))
        .collect();
    PatternOutput {
        content: (*text).to_owned(),
        data: Some(json!({"winner": winner, "votes": votes, "tie": tie, "voters": ok.len()})),
        ..PatternOutput::default()
    }
}
