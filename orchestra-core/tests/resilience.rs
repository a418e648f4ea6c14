//! Per-agent policies: circuit breakers shared across runs, bulkheads,
//! and the layering of defaults, agent policies and request overrides.
//! On tokio's paused clock: cool-downs and deadlines pass without waiting.

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
    AgentContext, AgentError, AgentInput, AgentOutput, AgentPolicy, CircuitBreakerPolicy,
    CircuitState, EventKind, FnAgent, Limits, Orchestrator, PolicyDecision, RetryPolicy,
    RunRequest, RunStatus, test_utils::ScriptedAgent,
};
use serde_json::json;
use tokio::sync::Notify;

/// An agent that fails with a 503 while `down` is set, and answers otherwise.
fn switchable(name: &'static str, down: Arc<AtomicBool>, calls: Arc<AtomicU32>) -> FnAgentBox {
    Box::new(FnAgent::new(name, "flaky service", move |_, _| {
        calls.fetch_add(1, Ordering::SeqCst);
        let down = down.load(Ordering::SeqCst);
        async move {
            if down {
                Err(AgentError::Http {
                    status: 503,
                    message: "unavailable".into(),
                })
            } else {
                Ok(AgentOutput::text("fine"))
            }
        }
    }))
}

type FnAgentBox = Box<dyn orchestra_core::Agent>;

fn breaker(threshold: u32) -> CircuitBreakerPolicy {
    CircuitBreakerPolicy {
        failure_threshold: threshold,
        window_ms: 60_000,
        cooldown_ms: 10_000,
    }
}

fn run(agent: &str) -> RunRequest {
    RunRequest::new("sequential", "t").agents([agent])
}

#[tokio::test(start_paused = true)]
async fn a_breaker_opens_across_runs_fails_fast_to_the_fallback_then_probes_and_closes() {
    let down = Arc::new(AtomicBool::new(true));
    let calls = Arc::new(AtomicU32::new(0));
    let orch = Orchestrator::new();
    orch.register_arc(Arc::from(switchable("flaky", down.clone(), calls.clone())));
    orch.register(ScriptedAgent::replying("backup", "from backup"));
    orch.set_agent_policy(
        "flaky",
        AgentPolicy {
            circuit_breaker: Some(breaker(2)),
            fallbacks: Some(vec!["backup".into()]),
            ..AgentPolicy::default()
        },
    );

    // Two failing runs: the second failure opens the circuit.
    let first = events(&orch, run("flaky")).await;
    assert_eq!(result_of(&first).output.as_deref(), Some("from backup"));
    assert!(!types(&first).contains(&"circuit_opened"));
    let second = events(&orch, run("flaky")).await;
    let opened = second.iter().find_map(|e| match &e.kind {
        EventKind::CircuitOpened {
            agent,
            failures,
            cooldown_ms,
            ..
        } => Some((agent.clone(), *failures, *cooldown_ms)),
        _ => None,
    });
    assert_eq!(opened, Some(("flaky".into(), 2, 10_000)));
    let r = result_of(&second);
    assert_eq!(r.steps[0].fallback_for.as_deref(), Some("flaky"));
    assert!(
        r.steps[0]
            .policy
            .iter()
            .any(|d| matches!(d, PolicyDecision::CircuitOpened { failures: 2, .. })),
        "{:?}",
        r.steps[0].policy
    );
    let states = orch.circuit_states();
    let flaky = states.iter().find(|s| s.agent == "flaky").unwrap();
    assert_eq!(flaky.state, CircuitState::Open);
    assert_eq!(flaky.retry_in_ms, Some(10_000));

    // While open, calls fail fast without reaching the agent.
    let third = events(&orch, run("flaky")).await;
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "the open circuit kept the call away"
    );
    let failed = third.iter().find_map(|e| match &e.kind {
        EventKind::AgentFailed { error, .. } => Some(error.code.clone()),
        _ => None,
    });
    assert_eq!(failed.as_deref(), Some("circuit_open"));
    let r = result_of(&third);
    assert_eq!(r.status, RunStatus::Completed);
    assert!(matches!(
        r.steps[0].policy.as_slice(),
        [
            PolicyDecision::CircuitRejected {
                retry_in_ms: 10_000,
                ..
            },
            PolicyDecision::Fallback { .. }
        ]
    ));

    // After the cool-down the next call probes; the agent is well again.
    tokio::time::advance(Duration::from_secs(10)).await;
    down.store(false, Ordering::SeqCst);
    let fourth = events(&orch, run("flaky")).await;
    let t = types(&fourth);
    let half = t.iter().position(|x| *x == "circuit_half_open").unwrap();
    let closed = t.iter().position(|x| *x == "circuit_closed").unwrap();
    assert!(half < closed, "{t:?}");
    let r = result_of(&fourth);
    assert_eq!(r.output.as_deref(), Some("fine"));
    assert_eq!(r.steps[0].agent, "flaky");
    assert_eq!(
        orch.circuit_states()
            .iter()
            .find(|s| s.agent == "flaky")
            .unwrap()
            .state,
        CircuitState::Closed
    );
}

#[tokio::test(start_paused = true)]
async fn a_failed_probe_opens_the_circuit_again() {
    let down = Arc::new(AtomicBool::new(true));
    let calls = Arc::new(AtomicU32::new(0));
    let orch = Orchestrator::builder()
        .limits(Limits {
            circuit_breaker: breaker(1),
            ..Limits::default()
        })
        .build();
    orch.register_arc(Arc::from(switchable("flaky", down, calls.clone())));
    let r = orch.run(run("flaky")).await.unwrap();
    assert_eq!(r.steps[0].error.as_ref().unwrap().code, "agent_http_error");
    tokio::time::advance(Duration::from_secs(10)).await;
    let evs = events(&orch, run("flaky")).await;
    let t = types(&evs);
    assert!(
        t.contains(&"circuit_half_open") && t.contains(&"circuit_opened"),
        "{t:?}"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    let r = orch.run(run("flaky")).await.unwrap();
    assert_eq!(r.steps[0].error.as_ref().unwrap().code, "circuit_open");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn client_errors_and_cancellations_do_not_open_the_circuit() {
    let orch = Orchestrator::builder()
        .limits(Limits {
            circuit_breaker: breaker(1),
            ..Limits::default()
        })
        .build();
    orch.register(
        ScriptedAgent::new("picky", "400s").then(Err(AgentError::Http {
            status: 400,
            message: "bad".into(),
        })),
    );
    for _ in 0..3 {
        let r = orch.run(run("picky")).await.unwrap();
        assert_eq!(r.steps[0].error.as_ref().unwrap().code, "agent_http_error");
    }
    orch.register(FnAgent::new("hang", "never answers", |_, _| async {
        std::future::pending::<String>().await
    }));
    let mut stream = orch.stream(run("hang")).unwrap();
    while let Some(ev) = stream.next().await {
        if ev.type_name() == "agent_started" {
            break;
        }
    }
    stream.cancel();
    assert_eq!(stream.result().await.unwrap().status, RunStatus::Cancelled);
    for s in orch.circuit_states() {
        assert_eq!(s.state, CircuitState::Closed, "{}", s.agent);
        assert_eq!(s.recent_failures, 0, "{}", s.agent);
    }
}

/// An agent that reports each call on `entered` and waits for `release`.
fn gated(entered: Arc<AtomicU32>, release: Arc<Notify>) -> impl orchestra_core::Agent {
    FnAgent::new("gated", "waits", move |_: AgentInput, ctx: AgentContext| {
        entered.fetch_add(1, Ordering::SeqCst);
        let release = release.clone();
        async move {
            tokio::select! {
                () = release.notified() => "done",
                () = ctx.cancellation().cancelled() => "cancelled",
            }
        }
    })
}

#[tokio::test(start_paused = true)]
async fn a_bulkhead_holds_calls_beyond_the_limit_until_a_slot_frees() {
    let entered = Arc::new(AtomicU32::new(0));
    let release = Arc::new(Notify::new());
    let orch = Orchestrator::new();
    orch.register(gated(entered.clone(), release.clone()));
    orch.set_agent_policy(
        "gated",
        AgentPolicy {
            max_concurrency: Some(1),
            ..AgentPolicy::default()
        },
    );
    let a = tokio::spawn({
        let orch = orch.clone();
        async move { orch.run(run("gated")).await.unwrap() }
    });
    let b = tokio::spawn({
        let orch = orch.clone();
        async move { orch.run(run("gated")).await.unwrap() }
    });
    // Let both runs reach the agent call; only one gets in.
    while entered.load(Ordering::SeqCst) == 0 {
        tokio::task::yield_now().await;
    }
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
    assert_eq!(entered.load(Ordering::SeqCst), 1);
    let status = orch.circuit_states();
    assert_eq!(status[0].in_flight, Some(1));
    assert_eq!(status[0].max_concurrency, Some(1));
    release.notify_one();
    while entered.load(Ordering::SeqCst) < 2 {
        tokio::task::yield_now().await;
    }
    release.notify_one();
    let (ra, rb) = (a.await.unwrap(), b.await.unwrap());
    assert_eq!(ra.status, RunStatus::Completed);
    assert_eq!(rb.status, RunStatus::Completed);
}

#[tokio::test(start_paused = true)]
async fn waiting_for_a_bulkhead_slot_respects_the_deadline_and_cancellation() {
    let entered = Arc::new(AtomicU32::new(0));
    let release = Arc::new(Notify::new());
    let orch = Orchestrator::builder()
        .limits(Limits {
            max_concurrency: 1,
            ..Limits::default()
        })
        .build();
    orch.register(gated(entered.clone(), release.clone()));
    let holder = orch.stream(run("gated")).unwrap();
    while entered.load(Ordering::SeqCst) == 0 {
        tokio::task::yield_now().await;
    }
    // A second call waits for the slot past its own limit: a timeout.
    let r = orch
        .run(run("gated").option("agent_timeout_ms", 2000))
        .await
        .unwrap();
    assert_eq!(r.status, RunStatus::Failed);
    assert_eq!(r.steps[0].error.as_ref().unwrap().code, "agent_timeout");
    // A third is cancelled while waiting.
    let mut waiting = orch.stream(run("gated")).unwrap();
    while let Some(ev) = waiting.next().await {
        if ev.type_name() == "agent_started" {
            break;
        }
    }
    waiting.cancel();
    assert_eq!(waiting.result().await.unwrap().status, RunStatus::Cancelled);
    assert_eq!(entered.load(Ordering::SeqCst), 1, "neither waiter got in");
    drop(holder);
}

#[tokio::test(start_paused = true)]
async fn request_overrides_win_over_agent_policies_which_win_over_defaults() {
    let orch = Orchestrator::builder()
        .limits(Limits {
            retry: RetryPolicy {
                max_retries: 1,
                initial_backoff_ms: 10,
                max_backoff_ms: 10,
            },
            ..Limits::default()
        })
        .build();
    let flaky = ScriptedAgent::new("flaky", "always 502").then(Err(AgentError::Http {
        status: 502,
        message: "bad gateway".into(),
    }));
    let calls = flaky.calls();
    orch.register(flaky);
    orch.register(ScriptedAgent::replying("spare", "spare answer"));
    orch.register(ScriptedAgent::replying("other", "other answer"));

    // Default: one retry.
    let r = orch.run(run("flaky")).await.unwrap();
    assert_eq!(r.steps[0].attempts, 2);
    assert_eq!(calls.swap(0, Ordering::SeqCst), 2);

    // The agent's policy: three retries and a fallback.
    orch.set_agent_policy(
        "flaky",
        AgentPolicy {
            retry: Some(RetryPolicy {
                max_retries: 3,
                initial_backoff_ms: 10,
                max_backoff_ms: 10,
            }),
            fallbacks: Some(vec!["spare".into()]),
            ..AgentPolicy::default()
        },
    );
    let r = orch.run(run("flaky")).await.unwrap();
    assert_eq!(calls.swap(0, Ordering::SeqCst), 4);
    assert_eq!(r.output.as_deref(), Some("spare answer"));
    let retries = r.steps[0]
        .policy
        .iter()
        .filter(|d| matches!(d, PolicyDecision::Retry { .. }))
        .count();
    assert_eq!(retries, 3);

    // The request's per-agent override: no retries, another fallback.
    let r = orch
        .run(run("flaky").option(
            "agent_policies",
            json!({"flaky": {"retry": {"max_retries": 0}, "fallbacks": ["other"]}}),
        ))
        .await
        .unwrap();
    assert_eq!(calls.swap(0, Ordering::SeqCst), 1);
    assert_eq!(r.output.as_deref(), Some("other answer"));

    // Unknown agents in overrides are refused before anything runs.
    let e = orch
        .run(run("flaky").option("agent_policies", json!({"ghost": {}})))
        .await
        .unwrap_err();
    assert_eq!(e.code(), "unknown_agent");
    let e = orch
        .run(run("flaky").option("agent_policies", json!({"flaky": {"max_concurrency": 2}})))
        .await
        .unwrap_err();
    assert_eq!(e.code(), "invalid_options");
}
