//! Each pattern and each of its knobs, through the public `Orchestrator` API.

mod common;

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU32, Ordering},
    },
    time::Duration,
};

use common::*;
use orchestra_core::{
    AgentError, AgentInput, AgentOutput, EventKind, FnAgent, Handoff, Orchestrator, Role,
    RunContext, RunRequest, RunStatus, StepStatus,
    pattern::{
        ChatState, FnManager, GroupChat, GroupChatOptions, Plan, PlanRequest, PlanStep, Planner,
        RoundRobinManager,
    },
    test_utils::ScriptedAgent,
};
use serde_json::json;

// ---------- sequential ----------

#[tokio::test]
async fn sequential_passes_each_output_to_the_next_agent_and_keeps_every_step() {
    let orch = Orchestrator::new();
    orch.register(tagger("a"));
    orch.register(tagger("b"));
    let (c, seen) = recorder("c", "done");
    orch.register(c);
    let r = orch
        .run(RunRequest::new("sequential", "t").agents(["a", "b", "c"]))
        .await
        .unwrap();
    assert_eq!(r.status, RunStatus::Completed);
    assert_eq!(r.output.as_deref(), Some("done"));
    let outputs: Vec<_> = r
        .steps
        .iter()
        .map(|s| s.output.as_ref().unwrap().content.clone())
        .collect();
    assert_eq!(outputs, ["a(t)", "b(a(t))", "done"]);
    let inp = seen.lock().unwrap()[0].clone();
    assert_eq!(inp.task, "b(a(t))");
    // The history: the user's task, then both earlier answers, named.
    let convo: Vec<_> = inp
        .messages
        .iter()
        .map(|m| (m.role, m.name.clone(), m.content.clone()))
        .collect();
    assert_eq!(
        convo,
        [
            (Role::User, None, "t".to_owned()),
            (Role::Assistant, Some("a".into()), "a(t)".into()),
            (Role::Assistant, Some("b".into()), "b(a(t))".into()),
        ]
    );
}

#[tokio::test]
async fn sequential_keep_task_gives_every_agent_the_original_task() {
    let orch = Orchestrator::new();
    orch.register(tagger("a"));
    orch.register(tagger("b"));
    let r = orch
        .run(
            RunRequest::new("sequential", "t")
                .agents(["a", "b"])
                .option("keep_task", true),
        )
        .await
        .unwrap();
    assert_eq!(r.output.as_deref(), Some("b(t)"));
}

#[tokio::test]
async fn a_failing_sequential_step_fails_the_run_and_stops_the_chain() {
    let orch = Orchestrator::new();
    orch.register(ScriptedAgent::new("bad", "fails").then(Err(AgentError::msg("boom"))));
    let after = ScriptedAgent::replying("after", "x");
    let calls = after.calls();
    orch.register(after);
    let r = orch
        .run(RunRequest::new("sequential", "t").agents(["bad", "after"]))
        .await
        .unwrap();
    assert_eq!(r.status, RunStatus::Failed);
    let e = r.error.unwrap();
    assert_eq!(e.code, "agent_failed");
    assert_eq!(e.agent.as_deref(), Some("bad"));
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    assert_eq!(r.steps[0].status, StepStatus::Failed);
}

// ---------- concurrent ----------

fn slow(name: &'static str, ms: u64, reply: &'static str) -> ScriptedAgent {
    ScriptedAgent::new(name, "slow")
        .then(Ok(AgentOutput::text(reply)))
        .delay(Duration::from_millis(ms))
}

#[tokio::test(start_paused = true)]
async fn concurrent_all_lists_answers_in_agent_order_not_completion_order() {
    let orch = Orchestrator::new();
    orch.register(slow("a", 300, "A"));
    orch.register(slow("b", 100, "B"));
    orch.register(slow("c", 200, "C"));
    let r = orch
        .run(
            RunRequest::new("concurrent", "t")
                .agents(["a", "b", "c"])
                .option("aggregator", "all"),
        )
        .await
        .unwrap();
    assert_eq!(r.output.as_deref(), Some(r#"["A","B","C"]"#));
    assert_eq!(r.data.unwrap()[1]["agent"], "b");
    // All three ran at once: the run took as long as the slowest, not the sum.
    assert!(r.duration_ms < 600, "{}", r.duration_ms);
}

#[tokio::test(start_paused = true)]
async fn concurrent_first_returns_the_first_success_and_cancels_the_rest() {
    let orch = Orchestrator::new();
    let finished = Arc::new(AtomicBool::new(false));
    let f = finished.clone();
    orch.register(FnAgent::new("slowpoke", "slow", move |_, _| {
        let f = f.clone();
        async move {
            tokio::time::sleep(Duration::from_secs(10)).await;
            f.store(true, Ordering::SeqCst);
            "late"
        }
    }));
    orch.register(slow("quick", 10, "fast answer"));
    orch.register(ScriptedAgent::new("broken", "fails").then(Err(AgentError::msg("x"))));
    let r = orch
        .run(
            RunRequest::new("concurrent", "t")
                .agents(["slowpoke", "broken", "quick"])
                .option("aggregator", "first"),
        )
        .await
        .unwrap();
    assert_eq!(r.status, RunStatus::Completed);
    assert_eq!(r.output.as_deref(), Some("fast answer"));
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert!(
        !finished.load(Ordering::SeqCst),
        "the slow call should have been cancelled"
    );
}

#[tokio::test]
async fn concurrent_vote_takes_the_normalized_majority() {
    let orch = Orchestrator::new();
    for (n, a) in [
        ("a", "Paris."),
        ("b", "Lyon"),
        ("c", " paris"),
        ("d", "Nice"),
    ] {
        orch.register(FnAgent::new(n, "votes", move |_, _| async move { a }));
    }
    let r = orch
        .run(
            RunRequest::new("concurrent", "capital?")
                .agents(["a", "b", "c", "d"])
                .option("aggregator", "vote"),
        )
        .await
        .unwrap();
    assert_eq!(r.output.as_deref(), Some("Paris."));
    let d = r.data.unwrap();
    assert_eq!(d["winner"], "paris");
    assert_eq!(d["votes"]["paris"], 2);
    assert_eq!(d["tie"], false);
}

#[tokio::test(start_paused = true)]
async fn a_vote_tie_goes_to_the_answer_whose_first_voter_is_listed_first() {
    let orch = Orchestrator::new();
    // "no" finishes first, but "yes" has the earlier first voter in the agent list.
    orch.register(slow("a", 50, "yes"));
    orch.register(slow("b", 10, "no"));
    let r = orch
        .run(
            RunRequest::new("concurrent", "?")
                .agents(["a", "b"])
                .option("aggregator", "vote"),
        )
        .await
        .unwrap();
    assert_eq!(r.output.as_deref(), Some("yes"));
    assert_eq!(r.data.unwrap()["tie"], true);
}

#[tokio::test]
async fn concurrent_merge_writes_one_text_with_agent_headers() {
    let orch = Orchestrator::new();
    orch.register(tagger("x"));
    orch.register(tagger("y"));
    let r = orch
        .run(RunRequest::new("concurrent", "t").agents(["x", "y"]))
        .await
        .unwrap();
    assert_eq!(r.output.as_deref(), Some("## x\nx(t)\n\n## y\ny(t)"));
}

#[tokio::test]
async fn concurrent_agent_aggregator_hands_every_answer_to_the_summarizer() {
    let orch = Orchestrator::new();
    orch.register(tagger("x"));
    orch.register(tagger("y"));
    let (sum, seen) = recorder("summarizer", "summary");
    orch.register(sum);
    let r = orch
        .run(
            RunRequest::new("concurrent", "t")
                .agents(["x", "y"])
                .options(json!({"aggregator": "agent", "summarizer": "summarizer"})),
        )
        .await
        .unwrap();
    assert_eq!(r.output.as_deref(), Some("summary"));
    let msgs = &seen.lock().unwrap()[0].messages;
    let answers: Vec<_> = msgs
        .iter()
        .filter(|m| m.role == Role::Assistant)
        .map(|m| m.content.as_str())
        .collect();
    assert_eq!(answers, ["x(t)", "y(t)"]);
    assert_eq!(r.steps.len(), 3);
}

#[tokio::test]
async fn concurrent_fail_fast_fails_and_collect_partial_keeps_the_rest() {
    let orch = Orchestrator::new();
    orch.register(tagger("ok1"));
    orch.register(ScriptedAgent::new("bad", "fails").then(Err(AgentError::msg("down"))));
    orch.register(tagger("ok2"));
    let req = RunRequest::new("concurrent", "t").agents(["ok1", "bad", "ok2"]);
    let r = orch.run(req.clone()).await.unwrap();
    assert_eq!(r.status, RunStatus::Failed);
    assert_eq!(r.error.unwrap().agent.as_deref(), Some("bad"));

    let r = orch
        .run(req.option("on_failure", "collect_partial"))
        .await
        .unwrap();
    assert_eq!(r.status, RunStatus::Completed);
    assert!(r.partial);
    assert_eq!(
        r.output.as_deref(),
        Some("## ok1\nok1(t)\n\n## ok2\nok2(t)")
    );
    assert_eq!(
        r.termination.as_deref(),
        Some("partial: 2 of 3 agents answered")
    );
}

#[tokio::test(start_paused = true)]
async fn max_concurrency_bounds_the_calls_in_flight() {
    let orch = Orchestrator::new();
    let now = Arc::new(AtomicU32::new(0));
    let peak = Arc::new(AtomicU32::new(0));
    let mut names = vec![];
    for i in 0..6 {
        let (now, peak) = (now.clone(), peak.clone());
        let name = format!("w{i}");
        names.push(name.clone());
        orch.register(FnAgent::new(name, "worker", move |_, _| {
            let (now, peak) = (now.clone(), peak.clone());
            async move {
                let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(n, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(10)).await;
                now.fetch_sub(1, Ordering::SeqCst);
                "ok"
            }
        }));
    }
    let r = orch
        .run(
            RunRequest::new("concurrent", "t")
                .agents(names)
                .option("max_concurrency", 2),
        )
        .await
        .unwrap();
    assert_eq!(r.status, RunStatus::Completed);
    assert_eq!(peak.load(Ordering::SeqCst), 2);
    assert_eq!(r.steps.len(), 6);
}

// ---------- handoff ----------

fn router(name: &'static str, to: &'static str) -> impl orchestra_core::Agent {
    FnAgent::new(name, format!("routes to {to}"), move |_, _| async move {
        Handoff::new(to, format!("{name} says {to}"))
    })
}

#[tokio::test]
async fn handoff_follows_handoffs_until_an_answer_and_emits_each_one() {
    let orch = Orchestrator::new();
    orch.register(router("triage", "billing"));
    orch.register(router("billing", "refunds"));
    let (refunds, seen) = recorder("refunds", "refund issued");
    orch.register(refunds);
    let evs = events(&orch, RunRequest::new("handoff", "my money")).await;
    let r = result_of(&evs);
    assert_eq!(r.output.as_deref(), Some("refund issued"));
    assert_eq!(
        r.agents,
        ["triage", "billing", "refunds"],
        "all agents by default"
    );
    let hops: Vec<_> = evs
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Handoff { from, to, .. } => Some(format!("{from}->{to}")),
            _ => None,
        })
        .collect();
    assert_eq!(hops, ["triage->billing", "billing->refunds"]);
    // The final agent sees why it was called.
    let last = seen.lock().unwrap()[0]
        .messages
        .last()
        .unwrap()
        .content
        .clone();
    assert_eq!(last, "billing says refunds");
}

#[tokio::test]
async fn a_handoff_outside_the_declared_routes_fails_the_run() {
    let orch = Orchestrator::new();
    orch.register(router("triage", "billing"));
    orch.register(tagger("billing"));
    orch.register(tagger("sales"));
    let r = orch
        .run(RunRequest::new("handoff", "t").option("routes", json!({"triage": ["sales"]})))
        .await
        .unwrap();
    assert_eq!(r.status, RunStatus::Failed);
    assert_eq!(r.error.unwrap().code, "invalid_handoff");
}

#[tokio::test]
async fn a_handoff_cycle_stops_with_a_clear_error_event() {
    let orch = Orchestrator::new();
    orch.register(router("a", "b"));
    orch.register(router("b", "a"));
    let evs = events(
        &orch,
        RunRequest::new("handoff", "t").option("max_handoffs", 100),
    )
    .await;
    let last = evs.last().unwrap();
    let EventKind::RunFailed { error, result } = &last.kind else {
        panic!("expected run_failed, got {}", last.type_name())
    };
    assert_eq!(error.code, "handoff_cycle");
    assert!(error.message.contains("a → b → a → b"), "{}", error.message);
    // Stopped at the first repeat: a, b, a — not 100 hops.
    assert_eq!(result.steps.len(), 3);
}

#[tokio::test]
async fn max_handoffs_bounds_a_chain_that_keeps_changing() {
    let orch = Orchestrator::new();
    let n = Arc::new(AtomicU32::new(0));
    for (name, to) in [("a", "b"), ("b", "a")] {
        let n = n.clone();
        orch.register(FnAgent::new(name, "bounces", move |_, _| {
            let i = n.fetch_add(1, Ordering::SeqCst);
            async move { AgentOutput::handoff(Handoff::new(to, format!("attempt {i}"))) }
        }));
    }
    let r = orch
        .run(RunRequest::new("handoff", "t").option("max_handoffs", 3))
        .await
        .unwrap();
    assert_eq!(r.error.unwrap().code, "max_handoffs_exceeded");
    assert_eq!(r.steps.len(), 4);
}

#[tokio::test]
async fn handoff_starts_at_the_configured_agent() {
    let orch = Orchestrator::new();
    orch.register(router("triage", "billing"));
    orch.register(tagger("billing"));
    let r = orch
        .run(RunRequest::new("handoff", "t").option("start", "billing"))
        .await
        .unwrap();
    assert_eq!(r.output.as_deref(), Some("billing(t)"));
    assert_eq!(r.steps.len(), 1);
}

// ---------- group chat ----------

#[tokio::test]
async fn group_chat_round_robin_runs_until_max_rounds_on_a_shared_transcript() {
    let orch = Orchestrator::new();
    let counter = Arc::new(AtomicU32::new(0));
    for name in ["w", "c"] {
        let counter = counter.clone();
        orch.register(FnAgent::new(name, "talks", move |i: AgentInput, _| {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            async move { format!("{name}{n} saw {}", i.messages.len()) }
        }));
    }
    let evs = events(
        &orch,
        RunRequest::new("group_chat", "t")
            .agents(["w", "c"])
            .option("max_rounds", 4),
    )
    .await;
    let speakers: Vec<_> = evs
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::SpeakerSelected { agent, round, .. } => Some(format!("{round}:{agent}")),
            _ => None,
        })
        .collect();
    assert_eq!(speakers, ["0:w", "1:c", "2:w", "3:c"]);
    let r = result_of(&evs);
    assert_eq!(r.termination.as_deref(), Some("max_rounds: 4"));
    // Each speaker saw the user's task plus every earlier turn.
    assert_eq!(r.output.as_deref(), Some("c3 saw 4"));
}

#[tokio::test]
async fn group_chat_ends_on_a_text_mention() {
    let orch = Orchestrator::new();
    orch.register(tagger("writer"));
    let critic = ScriptedAgent::new("critic", "reviews")
        .then(Ok(AgentOutput::text("needs work")))
        .then(Ok(AgentOutput::text("APPROVED, ship it")));
    orch.register(critic);
    let r = orch
        .run(
            RunRequest::new("group_chat", "slogan")
                .agents(["writer", "critic"])
                .option(
                    "termination",
                    json!({"any": [{"text_mention": "APPROVED"}, {"max_messages": 50}]}),
                ),
        )
        .await
        .unwrap();
    assert_eq!(r.steps.len(), 4);
    assert_eq!(r.termination.as_deref(), Some("text_mention: APPROVED"));
    assert_eq!(r.output.as_deref(), Some("APPROVED, ship it"));
}

#[tokio::test]
async fn a_registered_custom_manager_picks_speakers_and_can_end_the_chat() {
    let orch = Orchestrator::new();
    orch.register(tagger("a"));
    orch.register(tagger("b"));
    // Always "b", and stop after two turns.
    orch.register_manager(
        "only_b",
        Arc::new(FnManager::new(|chat: &ChatState| {
            (chat.round < 2).then(|| "b".to_owned())
        })),
    );
    let r = orch
        .run(
            RunRequest::new("group_chat", "t")
                .agents(["a", "b"])
                .option("manager", "only_b"),
        )
        .await
        .unwrap();
    let speakers: Vec<_> = r.steps.iter().map(|s| s.agent.as_str()).collect();
    assert_eq!(speakers, ["b", "b"]);
    assert_eq!(r.termination.as_deref(), Some("manager ended the chat"));
}

#[tokio::test]
async fn a_manager_that_names_a_stranger_fails_the_run() {
    let orch = Orchestrator::new();
    orch.register(tagger("a"));
    orch.register_manager("bad", Arc::new(FnManager::new(|_| Some("ghost".into()))));
    let r = orch
        .run(
            RunRequest::new("group_chat", "t")
                .agents(["a"])
                .option("manager", "bad"),
        )
        .await
        .unwrap();
    assert_eq!(r.error.unwrap().code, "manager_failed");
}

#[tokio::test]
async fn a_predicate_ends_a_group_chat() {
    let orch = Orchestrator::new();
    orch.register(tagger("a"));
    let chat = GroupChat::new(GroupChatOptions::default(), Arc::new(RoundRobinManager))
        .with_predicate(|c: &ChatState| c.transcript.len() == 3);
    let r = orch
        .run_pattern(
            Arc::new(chat),
            RunRequest::new("group_chat", "t").agents(["a"]),
        )
        .await
        .unwrap();
    assert_eq!(r.termination.as_deref(), Some("predicate"));
    assert_eq!(r.steps.len(), 3);
}

// ---------- dynamic ----------

fn described(name: &'static str, description: &'static str) -> impl orchestra_core::Agent {
    FnAgent::new(name, description, move |i: AgentInput, _| async move {
        format!("{name}: {}", i.task)
    })
}

#[tokio::test]
async fn dynamic_heuristic_plans_a_sequence_and_explains_it() {
    let orch = Orchestrator::new();
    orch.register(described("researcher", "finds facts and sources"));
    orch.register(described("writer", "writes articles"));
    orch.register(described("chef", "cooks dinner"));
    let task = "Find facts about tides, then write an article";
    let evs = events(&orch, RunRequest::new("dynamic", task)).await;
    let plan = evs
        .iter()
        .find_map(|e| match &e.kind {
            EventKind::PlanCreated { plan } => Some(plan.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(plan.steps[0].pattern, "sequential");
    assert_eq!(plan.steps[0].agents, ["researcher", "writer"]);
    assert!(
        plan.rationale.contains("orders the work"),
        "{}",
        plan.rationale
    );
    let r = result_of(&evs);
    assert_eq!(r.status, RunStatus::Completed);
    assert_eq!(r.output.unwrap(), format!("writer: researcher: {task}"));
    assert!(r.steps.iter().all(|s| s.agent != "chef"));
}

#[tokio::test]
async fn dynamic_replans_without_the_agent_whose_step_failed() {
    let orch = Orchestrator::new();
    orch.register(
        ScriptedAgent::new("search_web", "search the web").then(Err(AgentError::msg("offline"))),
    );
    orch.register(described("search_index", "search the local index"));
    let evs = events(
        &orch,
        RunRequest::new("dynamic", "search for tide tables").agents(["search_web", "search_index"]),
    )
    .await;
    let t = types(&evs);
    assert!(
        t.contains(&"plan_created") && t.contains(&"plan_updated"),
        "{t:?}"
    );
    let (ledger, reason) = evs
        .iter()
        .find_map(|e| match &e.kind {
            EventKind::PlanUpdated { ledger, reason, .. } => Some((ledger.clone(), reason.clone())),
            _ => None,
        })
        .unwrap();
    assert_eq!(ledger.stalls, 1);
    assert_eq!(ledger.done[0].failed_agents, ["search_web"]);
    assert!(reason.contains("offline"), "{reason}");
    let r = result_of(&evs);
    assert_eq!(r.status, RunStatus::Completed);
    assert_eq!(
        r.output.as_deref(),
        Some("search_index: search for tide tables")
    );
}

#[tokio::test]
async fn dynamic_gives_up_after_max_stalls() {
    let orch = Orchestrator::new();
    orch.register(ScriptedAgent::new("flaky", "does everything").then(Err(AgentError::msg("no"))));
    struct Stubborn;
    #[async_trait::async_trait]
    impl Planner for Stubborn {
        fn name(&self) -> &str {
            "stubborn"
        }
        async fn plan(
            &self,
            r: &PlanRequest,
            _: &RunContext,
        ) -> Result<Plan, orchestra_core::OrchestraError> {
            Ok(Plan {
                steps: vec![PlanStep {
                    pattern: "sequential".into(),
                    agents: vec!["flaky".into()],
                    task: r.task.clone(),
                    options: json!({}),
                }],
                rationale: "always flaky".into(),
                planner: "stubborn".into(),
            })
        }
    }
    orch.register_planner("stubborn", Arc::new(Stubborn));
    let r = orch
        .run(
            RunRequest::new("dynamic", "t")
                .options(json!({"planner": "stubborn", "max_stalls": 2, "max_replans": 10})),
        )
        .await
        .unwrap();
    assert_eq!(r.status, RunStatus::Failed);
    assert_eq!(r.error.as_ref().unwrap().code, "planner_failed");
    assert_eq!(r.steps.len(), 3, "initial try plus two replans");
}
