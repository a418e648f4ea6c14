//! Timeouts, iteration limits, retries, fallbacks and cancellation, on tokio's
//! paused clock (no real waiting).

mod common;

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU32, Ordering},
    },
    time::Duration,
};

use common::*;
use futures::StreamExt;
use orchestra_core::{
    AgentContext, AgentError, AgentInput, AgentOutput, EventKind, FnAgent, Orchestrator,
    RunRequest, RunStatus, test_utils::ScriptedAgent,
};
use serde_json::json;
use tokio_util::sync::CancellationToken;

/// An agent that sleeps for `secs`, then answers; it records whether it saw
/// its cancellation token fire.
fn sleeper(
    name: &'static str,
    secs: u64,
    saw_cancel: Arc<AtomicBool>,
) -> impl orchestra_core::Agent {
    FnAgent::new(name, "sleeps", move |_: AgentInput, ctx: AgentContext| {
        let saw = saw_cancel.clone();
        async move {
            tokio::select! {
                () = tokio::time::sleep(Duration::from_secs(secs)) => "woke up",
                () = ctx.cancellation().cancelled() => { saw.store(true, Ordering::SeqCst); "cancelled" }
            }
        }
    })
}

#[tokio::test(start_paused = true)]
async fn a_run_past_its_timeout_ends_timed_out_and_is_recorded_so() {
    let orch = Orchestrator::new();
    orch.register(sleeper("slow", 3600, Arc::default()));
    let evs = events(
        &orch,
        RunRequest::new("sequential", "t")
            .agents(["slow"])
            .option("timeout_ms", 5000),
    )
    .await;
    let last = evs.last().unwrap();
    let EventKind::RunFailed { error, result } = &last.kind else {
        panic!("{}", last.type_name())
    };
    assert_eq!(error.code, "timeout");
    assert_eq!(result.status, RunStatus::TimedOut);
    assert!(
        (5000..5100).contains(&result.duration_ms),
        "{}",
        result.duration_ms
    );
    let s = orch.get_session(&result.session_id).await.unwrap().unwrap();
    assert_eq!(s.runs[0].status, RunStatus::TimedOut);
}

#[tokio::test(start_paused = true)]
async fn an_agent_timeout_fails_the_call_and_a_retry_can_recover() {
    let orch = Orchestrator::new();
    let agent = ScriptedAgent::new("flaky", "slow once")
        .then(Ok(AgentOutput::text("never")))
        .delay(Duration::from_secs(10));
    orch.register(agent);
    let r = orch
        .run(
            RunRequest::new("sequential", "t")
                .agents(["flaky"])
                .option("agent_timeout_ms", 1000),
        )
        .await
        .unwrap();
    assert_eq!(r.status, RunStatus::Failed);
    assert_eq!(r.steps[0].error.as_ref().unwrap().code, "agent_timeout");

    // First call times out, second answers fast.
    let n = Arc::new(AtomicU32::new(0));
    let n2 = n.clone();
    orch.register(FnAgent::new("recovers", "slow first", move |_, _| {
        let i = n2.fetch_add(1, Ordering::SeqCst);
        async move {
            if i == 0 {
                tokio::time::sleep(Duration::from_secs(10)).await;
            }
            "ok"
        }
    }));
    let evs = events(
        &orch,
        RunRequest::new("sequential", "t")
            .agents(["recovers"])
            .options(json!({"agent_timeout_ms": 1000, "retry": {"max_retries": 2, "initial_backoff_ms": 100}})),
    )
    .await;
    assert_eq!(
        types(&evs),
        [
            "run_started",
            "agent_started",
            "agent_failed",
            "retry",
            "agent_completed",
            "run_completed"
        ]
    );
    let r = result_of(&evs);
    assert_eq!(r.steps[0].attempts, 2);
    assert_eq!(n.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn retries_skip_permanent_errors_and_honour_retry_after() {
    let orch = Orchestrator::new();
    let permanent = ScriptedAgent::new("p", "4xx").then(Err(AgentError::Http {
        status: 400,
        message: "bad".into(),
    }));
    let calls = permanent.calls();
    orch.register(permanent);
    let r = orch
        .run(
            RunRequest::new("sequential", "t")
                .agents(["p"])
                .option("retry", json!({"max_retries": 3})),
        )
        .await
        .unwrap();
    assert_eq!(r.status, RunStatus::Failed);
    assert_eq!(calls.load(Ordering::SeqCst), 1, "4xx is not retried");

    orch.register(
        ScriptedAgent::new("limited", "429 then ok")
            .then(Err(AgentError::RateLimited {
                retry_after: Some(Duration::from_secs(7)),
            }))
            .then(Ok(AgentOutput::text("ok"))),
    );
    let evs = events(
        &orch,
        RunRequest::new("sequential", "t")
            .agents(["limited"])
            .option("retry", json!({"max_retries": 1})),
    )
    .await;
    let delay = evs
        .iter()
        .find_map(|e| match &e.kind {
            EventKind::Retry { delay_ms, .. } => Some(*delay_ms),
            _ => None,
        })
        .unwrap();
    assert!(delay >= 7000, "{delay}");
    assert_eq!(result_of(&evs).status, RunStatus::Completed);
}

#[tokio::test]
async fn a_fallback_answers_when_an_agent_fails_for_good() {
    let orch = Orchestrator::new();
    orch.register(ScriptedAgent::new("primary", "down").then(Err(AgentError::retryable("503"))));
    orch.register(ScriptedAgent::new("secondary", "also down").then(Err(AgentError::msg("nope"))));
    orch.register(ScriptedAgent::replying("backup", "from backup"));
    let evs = events(
        &orch,
        RunRequest::new("sequential", "t")
            .agents(["primary"])
            .option("fallbacks", json!({"primary": ["secondary", "backup"]})),
    )
    .await;
    let fallbacks: Vec<_> = evs
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Fallback { from, to, .. } => Some(format!("{from}->{to}")),
            _ => None,
        })
        .collect();
    assert_eq!(fallbacks, ["primary->secondary", "secondary->backup"]);
    let r = result_of(&evs);
    assert_eq!(r.output.as_deref(), Some("from backup"));
    assert_eq!(r.steps[0].agent, "backup");
    assert_eq!(r.steps[0].fallback_for.as_deref(), Some("primary"));
}

#[tokio::test]
async fn max_iterations_caps_agent_calls() {
    let orch = Orchestrator::new();
    orch.register(tagger("a"));
    let r = orch
        .run(
            RunRequest::new("group_chat", "t")
                .agents(["a"])
                .options(json!({"max_rounds": 50, "max_iterations": 5})),
        )
        .await
        .unwrap();
    assert_eq!(r.status, RunStatus::Failed);
    assert_eq!(r.error.unwrap().code, "max_iterations_exceeded");
    assert_eq!(r.steps.len(), 5);
}

#[tokio::test(start_paused = true)]
async fn dropping_the_stream_cancels_the_run_and_the_agent_in_flight() {
    let orch = Orchestrator::new();
    let saw = Arc::new(AtomicBool::new(false));
    orch.register(sleeper("slow", 3600, saw.clone()));
    let mut stream = orch
        .stream(RunRequest::new("sequential", "t").agents(["slow"]))
        .unwrap();
    let session_id = stream.session_id().to_owned();
    // Wait until the agent is running, then walk away.
    while let Some(ev) = stream.next().await {
        if ev.type_name() == "agent_started" {
            break;
        }
    }
    let ended = stream.ended();
    drop(stream);
    ended.await;
    let s = orch.get_session(&session_id).await.unwrap().unwrap();
    let run = s.runs[0].clone();
    assert_eq!(run.status, RunStatus::Cancelled);
    assert_eq!(orch.active_runs(), 0);
    // The agent's own future was dropped; it never woke up to answer.
    assert!(run.steps.is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_stream_nobody_reads_still_runs_and_says_when_it_has_ended() {
    let orch = Orchestrator::new();
    orch.register(sleeper("slow", 5, Arc::default()));
    let stream = orch
        .stream(RunRequest::new("sequential", "t").agents(["slow"]))
        .unwrap();
    stream.ended().await;
    assert_eq!(orch.active_runs(), 0);
    let s = orch
        .get_session(stream.session_id())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(s.runs[0].status, RunStatus::Completed);
    // The events are all still there to read.
    let last = stream.collect::<Vec<_>>().await.pop().unwrap();
    assert_eq!(last.type_name(), "run_completed");
}

#[tokio::test(start_paused = true)]
async fn cancel_by_run_id_ends_the_stream_with_run_cancelled() {
    let orch = Orchestrator::new();
    orch.register(sleeper("slow", 3600, Arc::default()));
    let mut stream = orch
        .stream(RunRequest::new("sequential", "t").agents(["slow"]))
        .unwrap();
    let run_id = stream.run_id().to_owned();
    let mut seen = vec![];
    while let Some(ev) = stream.next().await {
        if ev.type_name() == "agent_started" {
            assert!(orch.cancel(&run_id));
        }
        seen.push(ev.type_name());
    }
    assert_eq!(seen.last(), Some(&"run_cancelled"));
    assert!(!orch.cancel(&run_id), "no longer running");
}

#[tokio::test(start_paused = true)]
async fn dropping_the_run_future_cancels_the_run() {
    let orch = Orchestrator::new();
    let started = Arc::new(tokio::sync::Notify::new());
    let s = started.clone();
    orch.register(FnAgent::new("slow", "sleeps", move |_, _| {
        let s = s.clone();
        async move {
            s.notify_one();
            tokio::time::sleep(Duration::from_secs(3600)).await;
            "late"
        }
    }));
    let session = "drop-me";
    let o = orch.clone();
    let run = tokio::spawn(async move {
        o.run(
            RunRequest::new("sequential", "t")
                .agents(["slow"])
                .session(session),
        )
        .await
    });
    started.notified().await;
    run.abort();
    let status = loop {
        let s = orch.get_session(session).await.unwrap().unwrap();
        if s.runs[0].status.is_finished() {
            break s.runs[0].status;
        }
        tokio::task::yield_now().await;
    };
    assert_eq!(status, RunStatus::Cancelled);
}

#[tokio::test]
async fn a_panicking_agent_fails_its_step_instead_of_the_process() {
    let orch = Orchestrator::new();
    orch.register(FnAgent::new(
        "panics",
        "bug",
        |i: AgentInput, _| async move {
            if !i.task.is_empty() {
                panic!("agent bug");
            }
            "unreachable"
        },
    ));
    let r = orch
        .run(RunRequest::new("sequential", "t").agents(["panics"]))
        .await
        .unwrap();
    assert_eq!(r.status, RunStatus::Failed);
    assert!(r.error.unwrap().message.contains("agent bug"));
}

#[tokio::test(start_paused = true)]
async fn cancelling_an_observed_run_ends_it_cancelled_with_its_last_event() {
    let orch = Orchestrator::new();
    let saw = Arc::new(AtomicBool::new(false));
    orch.register(sleeper("slow", 3600, saw.clone()));
    let cancel = tokio_util::sync::CancellationToken::new();
    let started = Arc::new(tokio::sync::Notify::new());
    let (s, trigger) = (started.clone(), cancel.clone());
    // Another task cancels the run once the agent has started.
    tokio::spawn(async move {
        s.notified().await;
        trigger.cancel();
    });
    let last = Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = last.clone();
    let result = orch
        .run_attached(
            RunRequest::new("sequential", "t").agents(["slow"]),
            cancel,
            Arc::new(move |e: &orchestra_core::OrchestrationEvent| {
                if e.type_name() == "agent_started" {
                    started.notify_one();
                }
                log.lock().unwrap().push(e.type_name());
            }),
        )
        .await
        .unwrap();
    assert_eq!(result.status, RunStatus::Cancelled);
    // The agent's future was dropped before it could answer.
    assert!(result.steps.is_empty());
    assert!(!saw.load(Ordering::SeqCst));
    assert_eq!(last.lock().unwrap().last(), Some(&"run_cancelled"));
    let session = orch.get_session(&result.session_id).await.unwrap().unwrap();
    assert_eq!(session.runs[0].status, RunStatus::Cancelled);
    assert_eq!(orch.active_runs(), 0);
}

/// Work an agent leaves running is told to stop when its call ends (not
/// only when the run does), whether it took the call's token during the
/// call or kept the context and asks for the token later.
#[tokio::test(start_paused = true)]
async fn work_left_running_after_a_call_sees_its_token_fire() {
    let took: Arc<std::sync::Mutex<Option<CancellationToken>>> = Arc::default();
    let kept: Arc<std::sync::Mutex<Option<AgentContext>>> = Arc::default();
    let orch = Orchestrator::new();
    let slot = took.clone();
    orch.register(FnAgent::new(
        "took",
        "takes its token",
        move |_: AgentInput, ctx: AgentContext| {
            let token = ctx.cancellation().clone();
            let fired = token.is_cancelled();
            *slot.lock().unwrap() = Some(token);
            async move { if fired { "fired" } else { "alive" } }
        },
    ));
    let slot = kept.clone();
    orch.register(FnAgent::new(
        "kept",
        "keeps its context",
        move |_: AgentInput, ctx: AgentContext| {
            let fired = ctx.is_cancelled();
            *slot.lock().unwrap() = Some(ctx);
            async move { if fired { "fired" } else { "alive" } }
        },
    ));
    // Runs after both: have their tokens fired?
    let (t, k) = (took.clone(), kept.clone());
    orch.register(FnAgent::new(
        "check",
        "looks at the others' tokens",
        move |_: AgentInput, _| {
            let took = t.lock().unwrap().as_ref().map(|t| t.is_cancelled());
            let kept = k
                .lock()
                .unwrap()
                .as_ref()
                .map(|c| (c.is_cancelled(), c.cancellation().is_cancelled()));
            async move { format!("{took:?} {kept:?}") }
        },
    ));
    let r = orch
        .run(RunRequest::new("sequential", "t").agents(["took", "kept", "check"]))
        .await
        .unwrap();
    assert_eq!(r.status, RunStatus::Completed);
    let outputs: Vec<_> = r.steps.iter().filter_map(|s| s.output.as_ref()).collect();
    assert_eq!(outputs[0].content, "alive");
    assert_eq!(outputs[1].content, "alive");
    assert_eq!(outputs[2].content, "Some(true) Some((true, true))");
}

/// An agent that never asks for its token still sees a cancelled run as cancelled.
#[tokio::test(start_paused = true)]
async fn a_call_sees_its_run_cancelled_without_taking_a_token() {
    let (ctx_tx, ctx_rx) = tokio::sync::oneshot::channel::<AgentContext>();
    let ctx_tx = Arc::new(std::sync::Mutex::new(Some(ctx_tx)));
    let orch = Orchestrator::new();
    orch.register(FnAgent::new(
        "waits",
        "waits forever",
        move |_: AgentInput, ctx: AgentContext| {
            let tx = ctx_tx.lock().unwrap().take();
            async move {
                tx.unwrap().send(ctx).ok().unwrap();
                std::future::pending::<&str>().await
            }
        },
    ));
    let stream = orch
        .stream(RunRequest::new("sequential", "t").agents(["waits"]))
        .unwrap();
    let ctx = ctx_rx.await.unwrap();
    assert!(!ctx.is_cancelled());
    stream.cancel();
    let r = stream.result().await.unwrap();
    assert_eq!(r.status, RunStatus::Cancelled);
    assert!(ctx.is_cancelled());
}
