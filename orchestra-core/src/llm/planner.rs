//! [`LlmPlanner`]: a planner for the dynamic pattern that keeps Magentic-One
//! style ledgers.
//!
//! Every time the executor consults it (at the start, and after each failed
//! or empty step) the model answers one JSON object, checked against the
//! JSON schema of [`PlannerReply`]:
//!
//! - the **task ledger** ([`TaskLedger`]): the facts (given, to look up, to
//!   derive, guesses) and the plan in a few bullets; on a replan the model
//!   sees its previous ledger and what happened, and rewrites both;
//! - the **progress ledger** ([`ProgressLedger`]): is the request satisfied,
//!   is progress being made, are we in a loop, who acts next with what
//!   instruction;
//! - the **steps** to run next, each a pattern over some agents.
//!
//! They map onto the core's [`Plan`]: the steps become [`PlanStep`]s (when
//! the model gives none, "who acts next with what instruction" becomes one
//! single-agent step; a satisfied request on a replan ends the run), and the
//! ledgers are summarized in the plan's `rationale` and kept per run
//! ([`LlmPlanner::task_ledger`]). An answer that is not JSON, fails the
//! schema or names unknown agents is sent back once with the errors; if it
//! is still wrong, or the model cannot be reached, the
//! [`HeuristicPlanner`] plans instead and a `fallback` event says why.
//!
//! ```no_run
//! # fn demo(model: std::sync::Arc<dyn orchestra_core::llm::ChatModel>) {
//! use std::sync::Arc;
//! use orchestra_core::{Orchestrator, llm::LlmPlanner};
//! let orch = Orchestrator::new();
//! orch.register_planner("llm", Arc::new(LlmPlanner::new(model)));
//! // then: RunRequest::new("dynamic", "...").option("planner", "llm")
//! # }
//! ```

use std::{
    num::NonZeroUsize,
    sync::{Arc, Mutex},
};

use async_trait::async_trait;
use lru::LruCache;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{ChatCall, ChatMessage, ChatModel, ChatRequest, ResponseFormat, clip, extract_json};
use crate::{
    context::RunContext,
    error::{AgentError, OrchestraError},
    event::EventKind,
    pattern::dynamic::{HeuristicPlanner, Plan, PlanRequest, PlanStep, Planner},
};

/// What is known and how to go about it (Magentic-One's task ledger).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct TaskLedger {
    /// Facts: given or verified, still to look up, to derive, and educated guesses.
    pub facts: Vec<String>,
    /// The plan, as short bullets.
    pub plan: Vec<String>,
}

/// Where the work stands (Magentic-One's progress ledger).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct ProgressLedger {
    /// True when the task is fully done.
    pub is_request_satisfied: bool,
    /// False when recent steps brought nothing new.
    pub is_progress_being_made: bool,
    /// True when the same requests and answers keep repeating.
    pub is_in_loop: bool,
    /// The agent that should act next (empty when the request is satisfied).
    pub next_speaker: String,
    /// What that agent should do.
    pub instruction: String,
    /// Why, in a sentence.
    #[serde(default)]
    pub reason: String,
}

/// The pattern of a planned step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum StepPattern {
    Sequential,
    Concurrent,
    Handoff,
    GroupChat,
}

impl StepPattern {
    fn as_str(self) -> &'static str {
        match self {
            Self::Sequential => "sequential",
            Self::Concurrent => "concurrent",
            Self::Handoff => "handoff",
            Self::GroupChat => "group_chat",
        }
    }
}

/// One step the model wants run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ReplyStep {
    pub pattern: StepPattern,
    /// Agents of the team taking part, by name.
    pub agents: Vec<String>,
    /// The instruction for this step.
    pub task: String,
}

/// The model's whole answer, validated against this type's JSON schema.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PlannerReply {
    pub task_ledger: TaskLedger,
    pub progress_ledger: ProgressLedger,
    /// The steps to run next, in order.
    #[serde(default)]
    pub steps: Vec<ReplyStep>,
}

/// A [`Planner`] backed by a chat model, falling back to the heuristic planner.
pub struct LlmPlanner {
    model: Arc<dyn ChatModel>,
    schema: Value,
    validator: Result<jsonschema::Validator, String>,
    retries: u32,
    json_mode: Option<ResponseFormat>,
    ledgers: Mutex<LruCache<String, TaskLedger>>,
}

impl LlmPlanner {
    pub fn new(model: Arc<dyn ChatModel>) -> Self {
        let schema =
            serde_json::to_value(schemars::schema_for!(PlannerReply)).unwrap_or(Value::Bool(true));
        let validator = jsonschema::validator_for(&schema).map_err(|e| e.to_string());
        Self {
            model,
            schema,
            validator,
            retries: 1,
            json_mode: Some(ResponseFormat::JsonObject),
            // Ledgers of recent runs; old runs drop out.
            ledgers: Mutex::new(LruCache::new(NonZeroUsize::MIN.saturating_add(1023))),
        }
    }

    /// Corrective re-asks after an invalid answer before falling back (default 1).
    #[must_use]
    pub fn retries(mut self, n: u32) -> Self {
        self.retries = n;
        self
    }

    /// The `response_format` asked for (default `json_object`); `None` for
    /// servers that reject the parameter.
    #[must_use]
    pub fn json_mode(mut self, mode: Option<ResponseFormat>) -> Self {
        self.json_mode = mode;
        self
    }

    /// The JSON schema answers are checked against.
    pub fn schema(&self) -> &Value {
        &self.schema
    }

    /// The latest task ledger of a run, if this planner planned it recently.
    pub fn task_ledger(&self, run_id: &str) -> Option<TaskLedger> {
        self.lock().get(run_id).cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LruCache<String, TaskLedger>> {
        match self.ledgers.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    fn prompt(&self, request: &PlanRequest, previous: Option<&TaskLedger>) -> Vec<ChatMessage> {
        let mut system = String::from(
            "You plan the work of a team of agents. Keep a task ledger (facts: given or verified, \
             to look up, to derive, educated guesses; and a short plan) and a progress ledger \
             (is the request satisfied, is progress being made, are we in a loop, who acts next \
             and with what instruction). Then give the steps to run next. Each step runs one \
             pattern over some agents: sequential (each agent gets the previous one's output), \
             concurrent (all at once, answers merged), handoff (agents pass control), \
             group_chat (agents discuss). Use only these agents:",
        );
        for a in &request.agents {
            system.push_str(&format!("\n- {}: {}", a.name, a.description));
        }
        system.push_str(&format!(
            "\n\nAnswer with one JSON object, and nothing else, valid against this JSON schema:\n{}",
            self.schema
        ));
        let mut user = format!("Task: {}\n", request.task);
        match &request.ledger {
            None => user.push_str(
                "\nWrite the first task ledger, the progress ledger and the steps (at least one).",
            ),
            Some(ledger) => {
                if let Some(prev) = previous {
                    user.push_str(&format!(
                        "\nYour previous task ledger:\n{}\n",
                        serde_json::to_string(prev).unwrap_or_default()
                    ));
                }
                user.push_str("\nWhat happened so far:");
                for (i, e) in ledger.done.iter().enumerate() {
                    user.push_str(&format!(
                        "\n{}. {} [{}]: {} -> {}: {}",
                        i + 1,
                        e.step.pattern,
                        e.step.agents.join(", "),
                        clip(&e.step.task, 300),
                        if e.ok { "done" } else { "FAILED" },
                        clip(&e.outcome, 800)
                    ));
                    if !e.failed_agents.is_empty() {
                        user.push_str(&format!(
                            " (failing agents: {})",
                            e.failed_agents.join(", ")
                        ));
                    }
                }
                user.push_str(&format!(
                    "\nFailed or empty steps in a row: {}.\n\nThe last step did not succeed. \
                     Update the facts and the plan, fill in the progress ledger, and give the \
                     steps still to run (none only if the request is satisfied).",
                    ledger.stalls
                ));
            }
        }
        vec![ChatMessage::system(system), ChatMessage::user(user)]
    }

    /// Checks an answer: JSON, the schema, then the agent names.
    fn check(&self, text: &str, request: &PlanRequest) -> Result<PlannerReply, String> {
        let value = extract_json(text).ok_or("the answer is not a JSON object")?;
        let validator = self.validator.as_ref().map_err(Clone::clone)?;
        let errors: Vec<String> = validator
            .iter_errors(&value)
            .take(5)
            .map(|e| {
                let path = e.instance_path().to_string();
                format!("{}: {e}", if path.is_empty() { "/" } else { &path })
            })
            .collect();
        if !errors.is_empty() {
            return Err(format!(
                "the answer does not match the schema: {}",
                errors.join("; ")
            ));
        }
        let reply: PlannerReply =
            serde_json::from_value(value).map_err(|e| format!("the answer is malformed: {e}"))?;
        let known = |n: &str| request.agents.iter().any(|a| a.name == n);
        for s in &reply.steps {
            if s.agents.is_empty() && s.pattern != StepPattern::Handoff {
                return Err("a step has no agents".into());
            }
            if let Some(bad) = s.agents.iter().find(|a| !known(a)) {
                return Err(format!("'{bad}' is not an agent of the team"));
            }
        }
        let p = &reply.progress_ledger;
        let done = p.is_request_satisfied && request.ledger.is_some();
        if reply.steps.is_empty() && !done && !known(&p.next_speaker) {
            return Err(if p.next_speaker.is_empty() {
                "no steps and no next_speaker".into()
            } else {
                format!(
                    "next_speaker '{}' is not an agent of the team",
                    p.next_speaker
                )
            });
        }
        Ok(reply)
    }

    fn to_plan(reply: &PlannerReply, request: &PlanRequest) -> Plan {
        let p = &reply.progress_ledger;
        let done = p.is_request_satisfied && request.ledger.is_some();
        let steps: Vec<PlanStep> = if done {
            Vec::new()
        } else if reply.steps.is_empty() {
            vec![PlanStep {
                pattern: "sequential".into(),
                agents: vec![p.next_speaker.clone()],
                task: if p.instruction.trim().is_empty() {
                    request.task.clone()
                } else {
                    p.instruction.clone()
                },
                options: Value::Null,
            }]
        } else {
            reply
                .steps
                .iter()
                .map(|s| PlanStep {
                    pattern: s.pattern.as_str().into(),
                    agents: s.agents.clone(),
                    task: if s.task.trim().is_empty() {
                        request.task.clone()
                    } else {
                        s.task.clone()
                    },
                    options: Value::Null,
                })
                .collect()
        };
        let yes = |b: bool| if b { "yes" } else { "no" };
        let rationale = format!(
            "facts: [{}]; plan: [{}]; progress: satisfied={}, progressing={}, in_loop={}; next: {} — {}{}",
            reply.task_ledger.facts.join("; "),
            reply.task_ledger.plan.join("; "),
            yes(p.is_request_satisfied),
            yes(p.is_progress_being_made),
            yes(p.is_in_loop),
            if p.next_speaker.is_empty() {
                "nobody"
            } else {
                &p.next_speaker
            },
            p.instruction,
            if p.reason.is_empty() {
                String::new()
            } else {
                format!(" ({})", p.reason)
            }
        );
        Plan {
            steps,
            rationale,
            planner: "llm".into(),
        }
    }
}

#[async_trait]
impl Planner for LlmPlanner {
    fn name(&self) -> &str {
        "llm"
    }

    async fn plan(&self, request: &PlanRequest, ctx: &RunContext) -> Result<Plan, OrchestraError> {
        let previous = self.task_ledger(ctx.run_id());
        let mut chat = ChatRequest::new(self.prompt(request, previous.as_ref()));
        chat.response_format = self.json_mode.clone();
        chat.temperature = Some(0.0);
        let mut problem = String::new();
        for attempt in 0..=self.retries {
            let call = ChatCall::new(ctx.cancellation(), Some(ctx.deadline()));
            let answer = match self.model.chat(&chat, call).await {
                Ok(a) => {
                    // The planner's tokens are the run's too.
                    ctx.add_usage(a.usage);
                    a
                }
                Err(AgentError::Cancelled) => return Err(OrchestraError::Cancelled),
                Err(e) => {
                    // The model client already retried what was worth retrying.
                    problem = format!("the model failed: {e}");
                    break;
                }
            };
            match self.check(&answer.content, request) {
                Ok(reply) => {
                    self.lock()
                        .put(ctx.run_id().to_owned(), reply.task_ledger.clone());
                    return Ok(Self::to_plan(&reply, request));
                }
                Err(why) => {
                    tracing::warn!(attempt, %why, "llm planner: unusable answer");
                    chat.messages.push(ChatMessage::assistant(answer.content));
                    chat.messages.push(ChatMessage::user(format!(
                        "{why}. Answer again with one JSON object valid against the schema."
                    )));
                    problem = why;
                }
            }
        }
        ctx.emit(EventKind::Fallback {
            from: "llm_planner".into(),
            to: "heuristic".into(),
            reason: problem.clone(),
        });
        tracing::warn!(reason = %problem, "llm planner fell back to the heuristic planner");
        HeuristicPlanner.plan(request, ctx).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{agent::AgentInfo, llm::UnusedModel};
    use serde_json::json;

    fn request() -> PlanRequest {
        PlanRequest {
            task: "t".into(),
            agents: vec![AgentInfo {
                name: "researcher".into(),
                description: "finds".into(),
            }],
            ledger: None,
        }
    }

    #[test]
    fn answers_are_checked_against_the_schema_and_the_team() {
        let p = LlmPlanner::new(Arc::new(UnusedModel));
        assert!(p.validator.is_ok(), "{:?}", p.validator.as_ref().err());
        let good = json!({
            "task_ledger": {"facts": ["f"], "plan": ["p"]},
            "progress_ledger": {"is_request_satisfied": false, "is_progress_being_made": true,
                "is_in_loop": false, "next_speaker": "researcher", "instruction": "look"},
            "steps": [{"pattern": "sequential", "agents": ["researcher"], "task": "look"}]
        });
        assert!(p.check(&good.to_string(), &request()).is_ok());
        let mut bad = good.clone();
        bad["steps"][0]["pattern"] = json!("dynamic");
        let err = p.check(&bad.to_string(), &request()).unwrap_err();
        assert!(err.contains("schema"), "{err}");
        let mut stranger = good.clone();
        stranger["steps"][0]["agents"] = json!(["ghost"]);
        assert!(
            p.check(&stranger.to_string(), &request())
                .unwrap_err()
                .contains("ghost")
        );
        let mut missing = good;
        missing.as_object_mut().unwrap().remove("progress_ledger");
        assert!(p.check(&missing.to_string(), &request()).is_err());
    }

    #[test]
    fn without_steps_the_next_speaker_becomes_the_step() {
        let reply: PlannerReply = serde_json::from_value(json!({
            "task_ledger": {"facts": [], "plan": []},
            "progress_ledger": {"is_request_satisfied": false, "is_progress_being_made": true,
                "is_in_loop": false, "next_speaker": "researcher", "instruction": "find X"}
        }))
        .unwrap();
        let plan = LlmPlanner::to_plan(&reply, &request());
        assert_eq!(plan.steps.len(), 1);
        assert_eq!(plan.steps[0].agents, vec!["researcher"]);
        assert_eq!(plan.steps[0].task, "find X");
        assert_eq!(plan.planner, "llm");
    }
}
