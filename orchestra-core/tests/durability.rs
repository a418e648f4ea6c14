//! Checkpoints, resuming and human input: a run pauses for a person in every
//! pattern, resumes with the answer without re-running completed steps, and
//! a run whose process died resumes from its last checkpoint.

mod common;

use std::sync::{
    Arc,
    atomic::{AtomicU32, Ordering},
};

use common::*;
use futures::StreamExt;
use orchestra_core::{
    AgentContext, AgentError, AgentInput, AgentOutput, EventKind, FnAgent, Handoff, HumanAgent,
    InputKind, InputRequest, MemoryStore, OrchestraError, Orchestrator, RunRequest, RunStatus,
    Session, SessionStore,
    pattern::group_chat::{ChatState, GroupChatManager, SpeakerChoice},
};
use serde_json::{Value, json};

/// An agent that counts its calls and answers "<name>(<task>)".
fn counted(name: &'static str) -> (impl orchestra_core::Agent, Arc<AtomicU32>) {
    let calls = Arc::new(AtomicU32::new(0));
    let c = calls.clone();
    let agent = FnAgent::new(name, format!("{name} agent"), move |i: AgentInput, _| {
        c.fetch_add(1, Ordering::SeqCst);
        async move { format!("{name}({})", i.task) }
    });
    (agent, calls)
}

/// An agent that asks a question (an integer) and then answers with it.
fn asker(name: &'static str) -> (impl orchestra_core::Agent, Arc<AtomicU32>) {
    let calls = Arc::new(AtomicU32::new(0));
    let c = calls.clone();
    let agent = FnAgent::new(
        name,
        format!("{name} asks a person"),
        move |_: AgentInput, ctx: AgentContext| {
            c.fetch_add(1, Ordering::SeqCst);
            let answer = ctx.answer().cloned();
            async move {
                match answer {
                    None => Err(AgentError::input(
                        InputRequest::new("How many?").schema(json!({"type": "integer"})),
                    )),
                    Some(n) => Ok(AgentOutput::text(format!("{name} heard {n}"))),
                }
            }
        },
    );
    (agent, calls)
}

fn load(calls: &Arc<AtomicU32>) -> u32 {
    calls.load(Ordering::SeqCst)
}

#[tokio::test]
async fn sequential_pauses_for_input_and_resumes_without_rerunning_steps() {
    let orch = Orchestrator::new();
    let (a, a_calls) = counted("a");
    let (ask, ask_calls) = asker("ask");
    let (c, c_calls) = counted("c");
    orch.register(a);
    orch.register(ask);
    orch.register(c);
    let req = RunRequest::new("sequential", "count").agents(["a", "ask", "c"]);
    let paused = orch.run(req).await.unwrap();
    assert_eq!(paused.status, RunStatus::WaitingForInput);
    let q = paused.input.clone().expect("pending question");
    assert_eq!(
        (q.key.as_str(), q.kind, q.step),
        ("step:1", InputKind::Agent, Some(1))
    );
    assert_eq!(q.agent.as_deref(), Some("ask"));
    assert_eq!(paused.steps.len(), 1);
    assert_eq!(load(&c_calls), 0);

    // The waiting state is in the store, findable by run id alone.
    let stored = orch.get_run(&paused.run_id).await.unwrap().unwrap();
    assert_eq!(stored.status, RunStatus::WaitingForInput);
    let session = orch.get_session(&paused.session_id).await.unwrap().unwrap();
    assert!(
        session.messages.is_empty(),
        "messages join the session when the run ends"
    );

    let done = orch
        .resume_run(&paused.run_id, Some(json!(7)))
        .await
        .unwrap();
    assert_eq!(done.status, RunStatus::Completed, "{:?}", done.error);
    assert_eq!(done.output.as_deref(), Some("c(ask heard 7)"));
    assert_eq!(done.steps.len(), 3);
    assert_eq!(done.answers.get("step:1"), Some(&json!(7)));
    assert_eq!(
        (load(&a_calls), load(&ask_calls), load(&c_calls)),
        (1, 2, 1)
    );
    assert_eq!(done.checkpoint.as_ref().unwrap().resumes, 1);
    let session = orch.get_session(&done.session_id).await.unwrap().unwrap();
    assert_eq!(session.messages.len(), 4, "user + three agents");
    assert_eq!(session.runs.len(), 1);
}

#[tokio::test]
async fn a_bad_answer_is_refused_and_the_run_keeps_waiting() {
    let orch = Orchestrator::new();
    let (ask, _) = asker("ask");
    orch.register(ask);
    let paused = orch
        .run(RunRequest::new("sequential", "t").agents(["ask"]))
        .await
        .unwrap();
    let e = orch
        .resume_run(&paused.run_id, Some(json!("seven")))
        .await
        .unwrap_err();
    assert_eq!(e.code(), "invalid_answer", "{e}");
    let e = orch.resume_run(&paused.run_id, None).await.unwrap_err();
    assert_eq!(e.code(), "run_not_waiting", "an answer is required: {e}");
    let still = orch.get_run(&paused.run_id).await.unwrap().unwrap();
    assert_eq!(still.status, RunStatus::WaitingForInput);
    let done = orch
        .resume_run(&paused.run_id, Some(json!(3)))
        .await
        .unwrap();
    assert_eq!(done.output.as_deref(), Some("ask heard 3"));
    let e = orch
        .resume_run(&paused.run_id, Some(json!(3)))
        .await
        .unwrap_err();
    assert_eq!(e.code(), "run_not_waiting", "{e}");
    let e = orch
        .resume_run("no-such-run", Some(json!(1)))
        .await
        .unwrap_err();
    assert_eq!(e.code(), "run_not_found", "{e}");
}

#[tokio::test]
async fn only_one_of_two_concurrent_answers_resumes_the_run() {
    let orch = Orchestrator::new();
    let (ask, ask_calls) = asker("ask");
    orch.register(ask);
    let paused = orch
        .run(RunRequest::new("sequential", "t").agents(["ask"]))
        .await
        .unwrap();
    let (x, y) = tokio::join!(
        orch.resume_run(&paused.run_id, Some(json!(1))),
        orch.resume_run(&paused.run_id, Some(json!(2)))
    );
    let oks = [&x, &y].iter().filter(|r| r.is_ok()).count();
    assert_eq!(oks, 1, "{x:?} {y:?}");
    let err = x.as_ref().err().or(y.as_ref().err()).unwrap();
    assert_eq!(err.code(), "run_not_waiting");
    assert_eq!(load(&ask_calls), 2);
}

#[tokio::test]
async fn an_expired_question_ends_the_run_timed_out() {
    let orch = Orchestrator::new();
    let (ask, _) = asker("ask");
    orch.register(ask);
    let paused = orch
        .run(
            RunRequest::new("sequential", "t")
                .agents(["ask"])
                .option("input_timeout_ms", 0),
        )
        .await
        .unwrap();
    assert!(paused.input.as_ref().unwrap().expires_at.is_some());
    let e = orch
        .resume_run(&paused.run_id, Some(json!(1)))
        .await
        .unwrap_err();
    assert_eq!(e.code(), "input_expired");
    let r = orch.get_run(&paused.run_id).await.unwrap().unwrap();
    assert_eq!(r.status, RunStatus::TimedOut);
    assert_eq!(r.error.unwrap().code, "input_expired");
}

#[tokio::test]
async fn concurrent_waits_for_the_other_branches_then_pauses() {
    let orch = Orchestrator::new();
    let (a, a_calls) = counted("a");
    let (ask, ask_calls) = asker("ask");
    let (c, c_calls) = counted("c");
    orch.register(a);
    orch.register(ask);
    orch.register(c);
    let paused = orch
        .run(RunRequest::new("concurrent", "t").agents(["a", "ask", "c"]))
        .await
        .unwrap();
    assert_eq!(paused.status, RunStatus::WaitingForInput);
    assert_eq!(paused.steps.len(), 2, "the other branches are recorded");
    let done = orch
        .resume_run(&paused.run_id, Some(json!(5)))
        .await
        .unwrap();
    assert_eq!(done.status, RunStatus::Completed, "{:?}", done.error);
    assert!(done.output.unwrap().contains("ask heard 5"));
    assert_eq!(
        (load(&a_calls), load(&ask_calls), load(&c_calls)),
        (1, 2, 1)
    );
}

#[tokio::test]
async fn handoff_to_an_agent_that_asks() {
    let orch = Orchestrator::new();
    let triage_calls = Arc::new(AtomicU32::new(0));
    let t = triage_calls.clone();
    orch.register(FnAgent::new("triage", "routes", move |_: AgentInput, _| {
        t.fetch_add(1, Ordering::SeqCst);
        async move { Handoff::new("ask", "needs a number") }
    }));
    let (ask, ask_calls) = asker("ask");
    orch.register(ask);
    let paused = orch
        .run(RunRequest::new("handoff", "t").agents(["triage", "ask"]))
        .await
        .unwrap();
    assert_eq!(paused.status, RunStatus::WaitingForInput);
    let done = orch
        .resume_run(&paused.run_id, Some(json!(9)))
        .await
        .unwrap();
    assert_eq!(done.output.as_deref(), Some("ask heard 9"));
    assert_eq!((load(&triage_calls), load(&ask_calls)), (1, 2));
}

/// Picks speakers from a script and counts how often it is asked: a stand-in
/// for an LLM manager, whose choices a resumed run must not ask for again.
struct CountingManager {
    order: Vec<&'static str>,
    asked: Arc<AtomicU32>,
}

#[async_trait::async_trait]
impl GroupChatManager for CountingManager {
    async fn select_next(
        &self,
        chat: &ChatState,
        _ctx: &orchestra_core::RunContext,
    ) -> Result<Option<SpeakerChoice>, OrchestraError> {
        self.asked.fetch_add(1, Ordering::SeqCst);
        Ok(self
            .order
            .get(chat.round as usize)
            .map(|a| SpeakerChoice::new(*a, "scripted")))
    }
}

#[tokio::test]
async fn group_chat_with_a_human_participant_replays_the_managers_choices() {
    let orch = Orchestrator::new();
    let (writer, writer_calls) = counted("writer");
    orch.register(writer);
    orch.register(HumanAgent::new("human", "the editor"));
    let asked = Arc::new(AtomicU32::new(0));
    orch.register_manager(
        "script",
        Arc::new(CountingManager {
            order: vec!["writer", "human", "writer"],
            asked: asked.clone(),
        }),
    );
    let req = RunRequest::new("group_chat", "draft")
        .agents(["writer", "human"])
        .options(json!({"manager": "script", "max_rounds": 3}));
    let events = events(&orch, req).await;
    let last = events.last().unwrap();
    let EventKind::InputRequested { request, result } = &last.kind else {
        panic!("expected input_requested, got {:?}", types(&events));
    };
    assert_eq!(request.kind, InputKind::Human);
    assert_eq!(result.status, RunStatus::WaitingForInput);
    assert_eq!(load(&asked), 2);

    let e = orch
        .resume_run(&result.run_id, Some(json!("")))
        .await
        .unwrap_err();
    assert_eq!(e.code(), "invalid_answer", "empty text is refused: {e}");
    let resumed: Vec<_> = orch
        .resume(&result.run_id, Some(json!("tighten the intro")))
        .await
        .unwrap()
        .collect()
        .await;
    let kinds = types(&resumed);
    assert_eq!(kinds[0], "run_resumed");
    assert_eq!(
        resumed
            .iter()
            .filter(|e| matches!(&e.kind, EventKind::AgentStarted { .. }))
            .count(),
        2,
        "only the human's and the last writer's steps run: {kinds:?}"
    );
    let done = result_of(&resumed);
    assert_eq!(done.status, RunStatus::Completed, "{:?}", done.error);
    assert_eq!(
        done.steps[1].output.as_ref().unwrap().content,
        "tighten the intro"
    );
    assert_eq!(load(&writer_calls), 2);
    assert_eq!(
        load(&asked),
        3,
        "rounds 0 and 1 come from the record; only round 2 asks"
    );
}

#[tokio::test]
async fn dynamic_plans_wait_for_approval() {
    let orch = Orchestrator::new();
    let (a, a_calls) = counted("researcher");
    orch.register(a);
    let req = RunRequest::new("dynamic", "research tides")
        .agents(["researcher"])
        .option("approve_plan", true);
    let paused = orch.run(req.clone()).await.unwrap();
    let q = paused.input.clone().unwrap();
    assert_eq!(
        (q.kind, q.key.as_str()),
        (InputKind::Plan, "approve_plan:0")
    );
    assert!(q.context.unwrap()["plan"]["steps"].is_array());
    assert_eq!(load(&a_calls), 0);
    let done = orch
        .resume_run(&paused.run_id, Some(json!({"approved": true})))
        .await
        .unwrap();
    assert_eq!(done.status, RunStatus::Completed, "{:?}", done.error);
    assert_eq!(load(&a_calls), 1);

    let paused = orch.run(req).await.unwrap();
    let denied = orch
        .resume_run(
            &paused.run_id,
            Some(json!({"approved": false, "reason": "too broad"})),
        )
        .await
        .unwrap();
    assert_eq!(denied.status, RunStatus::Failed);
    let err = denied.error.unwrap();
    assert_eq!(err.code, "approval_denied");
    assert!(err.message.contains("too broad"), "{}", err.message);
    assert_eq!(load(&a_calls), 1);
}

#[tokio::test]
async fn named_agents_act_only_after_approval() {
    let orch = Orchestrator::new();
    let (a, _) = counted("a");
    let (b, b_calls) = counted("b");
    orch.register(a);
    orch.register(b);
    let req = RunRequest::new("sequential", "t")
        .agents(["a", "b"])
        .option("approve_agents", json!(["b"]));
    let paused = orch.run(req.clone()).await.unwrap();
    let q = paused.input.unwrap();
    assert_eq!(
        (q.kind, q.agent.as_deref()),
        (InputKind::Approval, Some("b"))
    );
    assert_eq!(load(&b_calls), 0);
    let done = orch
        .resume_run(&paused.run_id, Some(json!(true)))
        .await
        .unwrap();
    assert_eq!(done.output.as_deref(), Some("b(a(t))"));
    assert_eq!(load(&b_calls), 1);

    let paused = orch.run(req).await.unwrap();
    let denied = orch
        .resume_run(&paused.run_id, Some(json!(false)))
        .await
        .unwrap();
    assert_eq!(denied.error.unwrap().code, "approval_denied");
    assert_eq!(load(&b_calls), 1);
}

#[tokio::test]
async fn a_waiting_run_can_be_cancelled() {
    let orch = Orchestrator::new();
    let (ask, _) = asker("ask");
    orch.register(ask);
    let paused = orch
        .run(RunRequest::new("sequential", "t").agents(["ask"]))
        .await
        .unwrap();
    assert!(orch.cancel_run(&paused.run_id).await.unwrap());
    let r = orch.get_run(&paused.run_id).await.unwrap().unwrap();
    assert_eq!(r.status, RunStatus::Cancelled);
    assert!(!orch.cancel_run(&paused.run_id).await.unwrap());
    let e = orch
        .resume_run(&paused.run_id, Some(json!(1)))
        .await
        .unwrap_err();
    assert_eq!(e.code(), "run_not_waiting");
}

/// Runs `a → b → c` where `b` never answers on its first call, on a runtime
/// that is then shut down: the process "dies" with the run mid-step.
fn crash_during_b(store: Arc<dyn SessionStore>) -> (String, Arc<AtomicU32>) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let orch = Orchestrator::builder().store(store).build();
    let (a, a_calls) = counted("a");
    orch.register(a);
    let (reached_tx, reached_rx) = std::sync::mpsc::channel();
    orch.register(FnAgent::new("b", "hangs", move |_: AgentInput, _| {
        let _ = reached_tx.send(());
        std::future::pending::<String>()
    }));
    orch.register(counted("c").0);
    let req = RunRequest::new("sequential", "t")
        .agents(["a", "b", "c"])
        .run_id("crash-run")
        .option("checkpoint", true);
    rt.spawn(async move { orch.run(req).await });
    reached_rx.recv().unwrap();
    // Nothing on that runtime runs again: like SIGKILL, no cleanup happens.
    rt.shutdown_background();
    ("crash-run".into(), a_calls)
}

#[tokio::test]
async fn a_run_whose_process_died_resumes_from_its_checkpoint() {
    let store: Arc<dyn SessionStore> = Arc::new(MemoryStore::new());
    let (run_id, a_calls) = crash_during_b(store.clone());
    let orch = Orchestrator::builder().store(store).build();
    let stored = orch.get_run(&run_id).await.unwrap().unwrap();
    assert_eq!(stored.status, RunStatus::Running);
    assert_eq!(stored.steps.len(), 1, "a's step was checkpointed");
    let cp = stored.checkpoint.unwrap();
    assert_eq!(
        (cp.version, cp.steps),
        (orchestra_core::CHECKPOINT_VERSION, 1)
    );
    assert_eq!(
        cp.position["agent"], "a",
        "the step the checkpoint was written after"
    );

    let (a, a_again) = counted("a");
    let (b, b_calls) = counted("b");
    let (c, c_calls) = counted("c");
    orch.register(a);
    orch.register(b);
    orch.register(c);
    let done = orch.resume_run(&run_id, None).await.unwrap();
    assert_eq!(done.status, RunStatus::Completed, "{:?}", done.error);
    assert_eq!(done.output.as_deref(), Some("c(b(a(t)))"));
    assert_eq!(load(&a_calls) + load(&a_again), 1, "a ran exactly once");
    assert_eq!((load(&b_calls), load(&c_calls)), (1, 1));
}

fn fixture(name: &str) -> Session {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

async fn store_with(session: Session) -> Arc<dyn SessionStore> {
    let store: Arc<dyn SessionStore> = Arc::new(MemoryStore::new());
    store.put(&session, None).await.unwrap();
    store
}

/// A run paused by an earlier release (checkpoint format 1) resumes here.
#[tokio::test]
async fn a_checkpoint_of_format_1_resumes() {
    let session = fixture("checkpoint-v1.json");
    let orch = Orchestrator::builder()
        .store(store_with(session).await)
        .build();
    let (a, a_calls) = counted("a");
    let (ask, ask_calls) = asker("ask");
    let (c, _) = counted("c");
    orch.register(a);
    orch.register(ask);
    orch.register(c);
    let done = orch
        .resume_run("fixture-run-v1", Some(json!(4)))
        .await
        .unwrap();
    assert_eq!(done.status, RunStatus::Completed, "{:?}", done.error);
    assert_eq!(done.output.as_deref(), Some("c(ask heard 4)"));
    assert_eq!((load(&a_calls), load(&ask_calls)), (0, 1));
}

/// A run left running by the release before checkpoints (no `checkpoint`
/// field) is migrated and resumes from its first step.
#[tokio::test]
async fn a_record_from_before_checkpoints_resumes_from_the_start() {
    let session = fixture("checkpoint-v0.json");
    let orch = Orchestrator::builder()
        .store(store_with(session).await)
        .build();
    let (a, a_calls) = counted("a");
    orch.register(a);
    let done = orch.resume_run("fixture-run-v0", None).await.unwrap();
    assert_eq!(done.status, RunStatus::Completed, "{:?}", done.error);
    assert_eq!(done.output.as_deref(), Some("a(old task)"));
    assert_eq!(load(&a_calls), 1);
    assert_eq!(
        done.checkpoint.unwrap().version,
        orchestra_core::CHECKPOINT_VERSION
    );
}

#[tokio::test]
async fn a_checkpoint_from_a_newer_release_is_refused() {
    let mut session = fixture("checkpoint-v1.json");
    session.runs[0].checkpoint.as_mut().unwrap().version = 99;
    let orch = Orchestrator::builder()
        .store(store_with(session).await)
        .build();
    let e = orch
        .resume_run("fixture-run-v1", Some(json!(4)))
        .await
        .unwrap_err();
    assert_eq!(e.code(), "checkpoint_unreadable", "{e}");
}

/// Writes the format-1 fixture from a real paused run (run with
/// `ORCHESTRA_WRITE_FIXTURES=1` only when the format version changes).
#[tokio::test]
async fn the_format_1_fixture_matches_what_this_release_writes() {
    let orch = Orchestrator::new();
    orch.register(counted("a").0);
    orch.register(asker("ask").0);
    orch.register(counted("c").0);
    let paused = orch
        .run(
            RunRequest::new("sequential", "t")
                .agents(["a", "ask", "c"])
                .session("fixture-session")
                .run_id("fixture-run-v1"),
        )
        .await
        .unwrap();
    let session = orch.get_session(&paused.session_id).await.unwrap().unwrap();
    if std::env::var_os("ORCHESTRA_WRITE_FIXTURES").is_some() {
        let path = format!(
            "{}/tests/fixtures/checkpoint-v1.json",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::write(path, serde_json::to_string_pretty(&session).unwrap()).unwrap();
    }
    let stored = fixture("checkpoint-v1.json");
    let shape = |s: &Session| {
        let r = &s.runs[0];
        (
            r.status,
            r.steps.len(),
            r.input.as_ref().map(|i| i.key.clone()),
            r.checkpoint.as_ref().map(|c| c.version),
        )
    };
    assert_eq!(shape(&session), shape(&stored));
    let keys =
        |v: Value| -> Vec<String> { v["runs"][0].as_object().unwrap().keys().cloned().collect() };
    assert_eq!(
        keys(serde_json::to_value(&session).unwrap()),
        keys(serde_json::to_value(&stored).unwrap()),
        "the stored record's fields changed: bump CHECKPOINT_VERSION and add a migration"
    );
}
