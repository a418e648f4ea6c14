//! Dynamic: a [`Planner`] decides the strategy. It writes a [`Plan`] of steps
//! (each a pattern, agents and a sub-task); the executor runs them in order,
//! keeps a [`Ledger`] of what is done and left, and asks the planner to
//! replan when a step fails or stalls (an empty answer), until the plan is
//! done, `max_stalls` is passed or `max_replans` is used up.
//!
//! A plan that completes after losing a step (an agent failed and the
//! planner worked around it), or whose last step was itself partial, ends
//! with `partial: true` and a `termination` that says what was lost.
//!
//! [`HeuristicPlanner`] needs no LLM: it scores agents by the overlap of the
//! task's words with each agent's name and description, then picks one agent,
//! a sequential chain (when the task orders the work: "then", "after", …) or a
//! concurrent fan-out, and explains the choice in the plan's `rationale`.
//!
//! ```
//! use orchestra_core::pattern::{HeuristicPlanner};
//! use orchestra_core::AgentInfo;
//! let agents = vec![
//!     AgentInfo { name: "researcher".into(), description: "finds facts and sources".into() },
//!     AgentInfo { name: "writer".into(), description: "writes prose and articles".into() },
//!     AgentInfo { name: "chef".into(), description: "cooks recipes".into() },
//! ];
//! let plan = HeuristicPlanner::default().plan_for("Find facts about tides, then write an article", &agents, &[]).unwrap();
//! assert_eq!(plan.steps[0].pattern, "sequential");
//! assert_eq!(plan.steps[0].agents, vec!["researcher", "writer"]);
//! ```

use std::{collections::HashSet, sync::Arc};

use async_trait::async_trait;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{Pattern, PatternOutput};
use crate::{
    agent::AgentInfo,
    context::{Components, RunContext, Scope},
    error::OrchestraError,
    event::EventKind,
};

pub const NAME: &str = "dynamic";
pub const DESCRIPTION: &str = "A planner (heuristic, or a registered custom/LLM planner) writes a plan of \
     steps, each a pattern over some agents with a sub-task; the executor runs it, tracks progress in a \
     ledger and replans after failures or stalls.";

/// One step of a plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PlanStep {
    /// "sequential", "concurrent", "handoff" or "group_chat".
    pub pattern: String,
    pub agents: Vec<String>,
    /// The sub-task for this step.
    pub task: String,
    /// Options for the step's pattern.
    #[serde(default, skip_serializing_if = "is_empty_object")]
    pub options: Value,
}

fn is_empty_object(v: &Value) -> bool {
    v.is_null() || v.as_object().is_some_and(|m| m.is_empty())
}

/// A plan: steps and the reasoning behind them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Plan {
    pub steps: Vec<PlanStep>,
    /// Why the planner chose these steps.
    pub rationale: String,
    /// Which planner wrote it.
    #[serde(default)]
    pub planner: String,
}

/// How one executed plan step ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct LedgerEntry {
    pub step: PlanStep,
    pub ok: bool,
    /// The step's answer, or its error message.
    pub outcome: String,
    /// Agents whose call failed in this step.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed_agents: Vec<String>,
}

/// Progress of a dynamic run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Ledger {
    pub done: Vec<LedgerEntry>,
    pub remaining: Vec<PlanStep>,
    /// Failed or empty steps since the last successful one.
    pub stalls: u32,
    pub replans: u32,
}

impl Ledger {
    /// Every agent that failed in some step so far.
    pub fn failed_agents(&self) -> HashSet<&str> {
        self.done
            .iter()
            .flat_map(|e| e.failed_agents.iter().map(String::as_str))
            .collect()
    }
}

/// What a planner is asked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PlanRequest {
    pub task: String,
    pub agents: Vec<AgentInfo>,
    /// Present when replanning: what happened so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ledger: Option<Ledger>,
}

/// Decides how a dynamic run proceeds.
///
/// Implemented by [`HeuristicPlanner`], the LLM planner and the bindings'
/// callable planners. `plan` is called once at the start (no ledger) and
/// again with the ledger whenever the executor replans.
#[async_trait]
pub trait Planner: Send + Sync {
    fn name(&self) -> &str;
    async fn plan(&self, request: &PlanRequest, ctx: &RunContext) -> Result<Plan, OrchestraError>;
}

/// Plans from word overlap between the task and agent descriptions.
#[derive(Debug, Clone, Copy, Default)]
pub struct HeuristicPlanner;

const STOPWORDS: &[&str] = &[
    "the",
    "and",
    "for",
    "with",
    "about",
    "from",
    "into",
    "that",
    "this",
    "then",
    "than",
    "what",
    "which",
    "who",
    "how",
    "are",
    "was",
    "were",
    "will",
    "can",
    "could",
    "should",
    "would",
    "please",
    "our",
    "your",
    "their",
    "its",
    "some",
    "any",
    "all",
    "each",
    "also",
    "after",
    "before",
    "next",
    "finally",
    "first",
    "afterwards",
    "followed",
    "using",
    "use",
    "make",
    "give",
    "get",
    "one",
];

const SEQUENCE_MARKERS: &[&str] = &["then", "after", "afterwards", "finally", "next", "followed"];

fn stem(word: &str) -> String {
    // A crude suffix stripper: enough for "writes"/"writer"/"write" and
    // "articles"/"article" to meet, and cheap enough to run per request.
    let mut w = word.to_lowercase();
    for suffix in ["ings", "ing", "ers", "er", "es", "ed", "s"] {
        if w.len() > suffix.len() + 3 && w.ends_with(suffix) {
            w.truncate(w.len() - suffix.len());
            break;
        }
    }
    if w.len() > 4 && w.ends_with('e') {
        w.pop();
    }
    w
}

fn words(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
}

fn keywords(text: &str) -> Vec<String> {
    let mut seen = HashSet::new();
    words(text)
        .filter(|w| w.len() >= 3 && !STOPWORDS.contains(&w.to_lowercase().as_str()))
        .map(stem)
        .filter(|w| seen.insert(w.clone()))
        .collect()
}

impl HeuristicPlanner {
    /// Plans without a run (the planner is pure); `exclude` lists agents not to use.
    pub fn plan_for(
        &self,
        task: &str,
        agents: &[AgentInfo],
        exclude: &[&str],
    ) -> Result<Plan, OrchestraError> {
        let task_words = keywords(task);
        let available: Vec<&AgentInfo> = agents
            .iter()
            .filter(|a| !exclude.contains(&a.name.as_str()))
            .collect();
        if available.is_empty() {
            return Err(OrchestraError::Planner(
                "no agents left to plan with".into(),
            ));
        }
        // (agent, score, matched words, first position of a match in the task)
        let mut scored: Vec<(&AgentInfo, usize, Vec<String>, usize)> = available
            .iter()
            .map(|a| {
                let own: HashSet<String> = keywords(&format!(
                    "{} {}",
                    a.name.replace(['_', '-'], " "),
                    a.description
                ))
                .into_iter()
                .collect();
                let matched: Vec<String> = task_words
                    .iter()
                    .filter(|w| own.contains(*w))
                    .cloned()
                    .collect();
                let first = task_words
                    .iter()
                    .position(|w| own.contains(w))
                    .unwrap_or(usize::MAX);
                (*a, matched.len(), matched, first)
            })
            .collect();
        let scores = scored
            .iter()
            .map(|(a, s, m, _)| format!("{}={} [{}]", a.name, s, m.join(", ")))
            .collect::<Vec<_>>()
            .join("; ");
        scored.retain(|(_, s, _, _)| *s > 0);
        let lowered = task.to_lowercase();
        let ordered = words(&lowered).any(|w| SEQUENCE_MARKERS.contains(&w));
        let step = |pattern: &str, agents: Vec<String>, options: Value| PlanStep {
            pattern: pattern.into(),
            agents,
            task: task.to_owned(),
            options,
        };
        let (step, why) = match scored.len() {
            0 => (
                step("sequential", vec![available[0].name.clone()], Value::Null),
                format!(
                    "no agent matched the task's words; single agent '{}' (first available)",
                    available[0].name
                ),
            ),
            1 => (
                step("sequential", vec![scored[0].0.name.clone()], Value::Null),
                format!(
                    "single agent '{}': the only one matching the task",
                    scored[0].0.name
                ),
            ),
            _ if ordered => {
                scored.sort_by_key(|(_, _, _, first)| *first);
                let names: Vec<String> = scored.iter().map(|(a, ..)| a.name.clone()).collect();
                let why = format!(
                    "sequential [{}]: several agents match and the task orders the work, so they run in the order the task mentions them",
                    names.join(" → ")
                );
                (step("sequential", names, Value::Null), why)
            }
            _ => {
                scored.sort_by_key(|(_, score, _, _)| std::cmp::Reverse(*score));
                let names: Vec<String> = scored.iter().map(|(a, ..)| a.name.clone()).collect();
                let why = format!(
                    "concurrent [{}] merged: several agents match and the task does not order the work",
                    names.join(", ")
                );
                (
                    step("concurrent", names, json!({"aggregator": "merge"})),
                    why,
                )
            }
        };
        let mut rationale = format!(
            "task words: [{}]; scores: {scores}; chose {why}",
            task_words.join(", ")
        );
        if !exclude.is_empty() {
            rationale.push_str(&format!(
                "; excluded after failures: [{}]",
                exclude.join(", ")
            ));
        }
        Ok(Plan {
            steps: vec![step],
            rationale,
            planner: "heuristic".into(),
        })
    }
}

#[async_trait]
impl Planner for HeuristicPlanner {
    fn name(&self) -> &str {
        "heuristic"
    }

    async fn plan(&self, request: &PlanRequest, _ctx: &RunContext) -> Result<Plan, OrchestraError> {
        let failed: Vec<&str> = request
            .ledger
            .as_ref()
            .map(|l| l.failed_agents().into_iter().collect())
            .unwrap_or_default();
        self.plan_for(&request.task, &request.agents, &failed)
    }
}

/// Options of the dynamic pattern.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct DynamicOptions {
    /// "heuristic" or the name of a registered planner.
    pub planner: String,
    /// Failed or empty steps in a row before the run gives up.
    pub max_stalls: u32,
    /// Most replans in one run.
    pub max_replans: u32,
}

impl Default for DynamicOptions {
    fn default() -> Self {
        Self {
            planner: "heuristic".into(),
            max_stalls: 3,
            max_replans: 5,
        }
    }
}

/// The dynamic pattern.
pub struct Dynamic {
    options: DynamicOptions,
    planner: Arc<dyn Planner>,
}

impl Dynamic {
    pub fn new(options: DynamicOptions, planner: Arc<dyn Planner>) -> Self {
        Self { options, planner }
    }

    /// Resolves the planner named in the options.
    pub fn from_options(
        options: DynamicOptions,
        components: &Components,
    ) -> Result<Self, OrchestraError> {
        let planner: Arc<dyn Planner> = match options.planner.as_str() {
            "heuristic" => Arc::new(HeuristicPlanner),
            name => components.planners.get(name).cloned().ok_or_else(|| {
                OrchestraError::InvalidOptions {
                    field: "options.planner".into(),
                    message: format!(
                        "unknown planner '{name}' (register it, or use \"heuristic\")"
                    ),
                }
            })?,
        };
        Ok(Self::new(options, planner))
    }

    /// With `approve_plan`, a person approves each plan before it runs.
    fn approve(ctx: &RunContext, plan: &Plan, n: u32) -> Result<(), OrchestraError> {
        if !ctx.options().approve_plan {
            return Ok(());
        }
        ctx.require_approval(
            &format!("approve_plan:{n}"),
            crate::run::InputKind::Plan,
            None,
            || {
                format!(
                    "Approve this plan of {} steps: {}",
                    plan.steps.len(),
                    plan.rationale
                )
            },
            || {
                serde_json::to_value(plan)
                    .ok()
                    .map(|p| serde_json::json!({"plan": p}))
            },
        )
    }

    fn check_plan(plan: &Plan, scope: &Scope) -> Result<(), OrchestraError> {
        for (i, step) in plan.steps.iter().enumerate() {
            if step.pattern == NAME {
                return Err(OrchestraError::Planner(format!(
                    "step {i}: a plan step cannot be dynamic"
                )));
            }
            if step.agents.is_empty() && step.pattern != super::handoff::NAME {
                return Err(OrchestraError::Planner(format!("step {i}: no agents")));
            }
            if let Some(a) = step.agents.iter().find(|a| scope.find(a).is_none()) {
                return Err(OrchestraError::Planner(format!(
                    "step {i}: '{a}' is not an agent of this run"
                )));
            }
        }
        Ok(())
    }
}

#[async_trait]
impl Pattern for Dynamic {
    fn name(&self) -> &'static str {
        NAME
    }

    fn agents_optional(&self) -> bool {
        true
    }

    async fn run(&self, ctx: &RunContext, scope: Scope) -> Result<PatternOutput, OrchestraError> {
        let infos: Vec<AgentInfo> = scope
            .agents
            .iter()
            .map(|a| AgentInfo::of(a.as_ref()))
            .collect();
        let mut request = PlanRequest {
            task: scope.task.clone(),
            agents: infos,
            ledger: None,
        };
        let mut plan: Plan = ctx
            .decide("plan:0", || self.planner.plan(&request, ctx))
            .await?;
        Self::check_plan(&plan, &scope)?;
        ctx.emit_with(|| EventKind::PlanCreated { plan: plan.clone() });
        Self::approve(ctx, &plan, 0)?;
        let mut ledger = Ledger {
            remaining: plan.steps.clone(),
            ..Ledger::default()
        };
        let mut last: Option<PatternOutput> = None;
        let mut stopped: Option<String> = None;
        let mut step_no = 0usize;
        while !ledger.remaining.is_empty() {
            ctx.set_position(|| serde_json::json!({"plan_step": step_no, "ledger": ledger}));
            let step = ledger.remaining.remove(0);
            step_no += 1;
            let pattern = ctx.build_pattern(&step.pattern, &step.options)?;
            let agents = if step.agents.is_empty() {
                scope.agents.clone()
            } else {
                step.agents
                    .iter()
                    .filter_map(|a| scope.find(a).cloned())
                    .collect()
            };
            tracing::debug!(step = step_no, pattern = %step.pattern, "running plan step");
            let outcome = pattern
                .run(
                    ctx,
                    Scope {
                        task: step.task.clone(),
                        agents,
                    },
                )
                .await;
            let failure = match outcome {
                Ok(out) if !out.content.trim().is_empty() => {
                    ledger.stalls = 0;
                    ledger.done.push(LedgerEntry {
                        step,
                        ok: true,
                        outcome: out.content.clone(),
                        failed_agents: Vec::new(),
                    });
                    last = Some(out);
                    // A run-wide condition ends the plan early.
                    stopped = crate::termination::check_run(ctx, ledger.done.len() as u32).await;
                    if stopped.is_some() {
                        break;
                    }
                    continue;
                }
                Ok(_) => ("the step produced an empty answer".to_owned(), Vec::new()),
                Err(
                    e @ (OrchestraError::Cancelled
                    | OrchestraError::Timeout(_)
                    | OrchestraError::MaxIterations { .. }
                    | OrchestraError::Store(_)
                    | OrchestraError::InputRequired(_)
                    | OrchestraError::ApprovalDenied { .. }),
                ) => return Err(e),
                Err(e) => {
                    let failed = match &e {
                        OrchestraError::AgentFailed { agent, .. } => vec![agent.clone()],
                        _ => Vec::new(),
                    };
                    (e.to_string(), failed)
                }
            };
            let (reason, failed_agents) = failure;
            ledger.stalls += 1;
            ledger.done.push(LedgerEntry {
                step,
                ok: false,
                outcome: reason.clone(),
                failed_agents,
            });
            if ledger.stalls > self.options.max_stalls {
                return Err(OrchestraError::Planner(format!(
                    "stalled {} times in a row (max_stalls {}); last: {reason}",
                    ledger.stalls, self.options.max_stalls
                )));
            }
            if ledger.replans >= self.options.max_replans {
                return Err(OrchestraError::Planner(format!(
                    "out of replans (max_replans {}); last: {reason}",
                    self.options.max_replans
                )));
            }
            ledger.replans += 1;
            request.ledger = Some(ledger.clone());
            plan = ctx
                .decide(&format!("plan:{}", ledger.replans), || {
                    self.planner.plan(&request, ctx)
                })
                .await?;
            Self::check_plan(&plan, &scope)?;
            ledger.remaining = plan.steps.clone();
            ctx.emit_with(|| EventKind::PlanUpdated {
                plan: plan.clone(),
                ledger: ledger.clone(),
                reason: format!("step {step_no} failed: {reason}"),
            });
            Self::approve(ctx, &plan, ledger.replans)?;
        }
        let mut out = last.unwrap_or_default();
        let lost: Vec<&LedgerEntry> = ledger.done.iter().filter(|e| !e.ok).collect();
        let mut termination = format!("plan complete after {} step(s)", ledger.done.len());
        if !lost.is_empty() {
            let mut agents: Vec<&str> = lost
                .iter()
                .flat_map(|e| e.failed_agents.iter().map(String::as_str))
                .collect();
            agents.dedup();
            termination.push_str(&format!("; partial: {} step(s) failed", lost.len()));
            if !agents.is_empty() {
                termination.push_str(&format!(" (agents: {})", agents.join(", ")));
            }
            out.partial = true;
        } else if out.partial {
            termination.push_str("; partial: the last step was partial");
        }
        if let Some(inner) = out
            .termination
            .take()
            .filter(|_| out.partial && lost.is_empty())
        {
            termination.push_str(&format!(" ({inner})"));
        }
        if let Some(reason) = stopped {
            // Stopped by the run's condition: that is what ended the run.
            termination = format!("{reason}; {} plan step(s) left", ledger.remaining.len());
        }
        out.termination = Some(termination);
        out.data = Some(json!({"ledger": ledger, "data": out.data}));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(name: &str, d: &str) -> AgentInfo {
        AgentInfo {
            name: name.into(),
            description: d.into(),
        }
    }

    #[test]
    fn unordered_matches_fan_out_concurrently() {
        let agents = [
            info("weather", "forecasts weather"),
            info("traffic", "reports traffic jams"),
        ];
        let p = HeuristicPlanner
            .plan_for("weather and traffic for Paris", &agents, &[])
            .unwrap();
        assert_eq!(p.steps[0].pattern, "concurrent");
        assert!(p.rationale.contains("does not order"), "{}", p.rationale);
    }

    #[test]
    fn a_single_match_runs_alone_and_no_match_falls_back_to_the_first() {
        let agents = [
            info("weather", "forecasts weather"),
            info("chef", "cooks recipes"),
        ];
        let p = HeuristicPlanner
            .plan_for("Cook a recipe with eggs", &agents, &[])
            .unwrap();
        assert_eq!(p.steps[0].agents, vec!["chef"]);
        let p = HeuristicPlanner.plan_for("zzz", &agents, &[]).unwrap();
        assert_eq!(p.steps[0].agents, vec!["weather"]);
        assert!(p.rationale.contains("no agent matched"));
    }

    #[test]
    fn excluded_agents_are_not_planned() {
        let agents = [
            info("a_search", "search web"),
            info("b_search", "search index"),
        ];
        let p = HeuristicPlanner
            .plan_for("search docs", &agents, &["a_search"])
            .unwrap();
        assert_eq!(p.steps[0].agents, vec!["b_search"]);
        assert!(
            HeuristicPlanner
                .plan_for("x", &agents, &["a_search", "b_search"])
                .is_err()
        );
    }
}
