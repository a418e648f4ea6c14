//! The chaos suite: the real `orchestra-server` binary calling the chaos
//! agent service (`orchestra_server::chaos`) on 127.0.0.1. Every fault kind
//! on every pattern must end as configured (retry then success, fallback,
//! partial result, clean failure), every request must end within a bound,
//! sessions must keep every message, and `/metrics` must match what the
//! chaos service saw. Circuit breakers open, fail fast and close again.
//!
//! `cargo test -p orchestra-server --test chaos -- --nocapture` prints the
//! results table that docs/reliability.md shows.

mod common;

use std::{collections::BTreeMap, time::Duration};

use common::{Server, SseReader, eventually, get_json, post_json};
use orchestra_server::chaos::{ChaosService, Fault};
use serde_json::{Value, json};

/// No request may take longer than this.
const BOUND: Duration = Duration::from_secs(30);

fn config(chaos: &ChaosService) -> String {
    format!(
        r#"
demo_agents = false
default_timeout_ms = 20000

[policy]
retry = {{ max_retries = 1, initial_backoff_ms = 20, max_backoff_ms = 50 }}

[[agents]]
name = "steady"
kind = "http"
description = "steady helper"
url = "{ok}"

[[agents]]
name = "backup"
kind = "http"
description = "backup helper"
url = "{ok}"

[[agents]]
name = "error_once"
kind = "http"
url = "{error_once}"

[[agents]]
name = "rate_limited_once"
kind = "http"
url = "{rate_once}"

[[agents]]
name = "drop_once"
kind = "http"
url = "{drop_once}"

[[agents]]
name = "slow"
kind = "http"
url = "{slow}"

[[agents]]
name = "garbage"
kind = "http"
url = "{garbage}"
policy = {{ fallbacks = ["backup"] }}

[[agents]]
name = "hang"
kind = "http"
url = "{hang}"
policy = {{ agent_timeout_ms = 300, retry = {{ max_retries = 0 }}, fallbacks = ["backup"] }}

[[agents]]
name = "dead"
kind = "http"
url = "{error}"

[[agents]]
name = "stuck"
kind = "http"
url = "{hang}"

[[agents]]
name = "narrow"
kind = "http"
url = "{slow}"
policy = {{ max_concurrency = 1 }}

[[agents]]
name = "down"
kind = "http"
url = "{down}"
policy = {{ retry = {{ max_retries = 0 }}, fallbacks = ["backup"], circuit_breaker = {{ failure_threshold = 2, window_ms = 60000, cooldown_ms = 500 }} }}
"#,
        ok = chaos.url("/fault/ok"),
        error_once = chaos.url("/fault/error?times=1"),
        rate_once = chaos.url("/fault/rate_limit:1?times=1"),
        drop_once = chaos.url("/fault/drop?times=1"),
        slow = chaos.url("/fault/slow:200"),
        garbage = chaos.url("/fault/garbage"),
        hang = chaos.url("/fault/hang"),
        error = chaos.url("/fault/error"),
        down = chaos.url("/invoke/down"),
    )
}

async fn start() -> (ChaosService, Server) {
    let chaos = ChaosService::start(([127, 0, 0, 1], 0).into())
        .await
        .expect("chaos service");
    let server = Server::start(&config(&chaos)).await;
    (chaos, server)
}

/// How a run with a faulty agent must end.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    /// Completed; the faulty agent answered after a retry.
    RetryThenSuccess,
    /// Completed; the backup answered instead of the faulty agent.
    Fallback,
    /// Completed; the faulty agent answered, slowly.
    Success,
    /// Completed without the faulty agent, marked partial.
    Partial,
    /// Failed with `agent_failed` naming the faulty agent.
    CleanFailure,
}

impl Expect {
    fn label(self) -> &'static str {
        match self {
            Self::RetryThenSuccess => "retry, then success",
            Self::Fallback => "fallback to `backup`",
            Self::Success => "success",
            Self::Partial => "partial result",
            Self::CleanFailure => "clean failure (`agent_failed`)",
        }
    }
}

const FAULTS: &[(&str, &str)] = &[
    ("error_once", "500 once"),
    ("rate_limited_once", "429 + Retry-After once"),
    ("drop_once", "dropped connection once"),
    ("slow", "slow (200 ms)"),
    ("garbage", "garbage JSON"),
    ("hang", "hang"),
    ("dead", "500 always"),
];

const PATTERNS: &[&str] = &[
    "sequential",
    "concurrent",
    "handoff",
    "group_chat",
    "dynamic",
];

fn expected(agent: &str, pattern: &str) -> Expect {
    match agent {
        "error_once" | "rate_limited_once" | "drop_once" => Expect::RetryThenSuccess,
        "slow" => Expect::Success,
        "garbage" | "hang" => Expect::Fallback,
        _ => match pattern {
            "sequential" | "handoff" => Expect::CleanFailure,
            _ => Expect::Partial,
        },
    }
}

fn request(pattern: &str, agent: &str) -> Value {
    let (agents, options) = match pattern {
        "concurrent" => (
            json!([agent, "steady"]),
            json!({"on_failure": "collect_partial"}),
        ),
        "group_chat" => (
            json!(["steady", agent]),
            json!({"max_rounds": 2, "on_agent_failure": "skip"}),
        ),
        // "zz" matches no description, so the planner starts with the first agent.
        "dynamic" => (json!([agent, "steady"]), json!({})),
        _ => (json!([agent, "steady"]), json!({})),
    };
    let task = if pattern == "dynamic" {
        "zz"
    } else {
        "check the tides"
    };
    json!({"pattern": pattern, "task": task, "agents": agents, "options": options})
}

fn steps_of<'a>(r: &'a Value, agent: &str) -> Vec<&'a Value> {
    r["steps"]
        .as_array()
        .map(|s| {
            s.iter()
                .filter(|s| s["agent"] == agent || s["fallback_for"] == agent)
                .collect()
        })
        .unwrap_or_default()
}

fn decisions<'a>(r: &'a Value, kind: &str) -> Vec<&'a Value> {
    r["steps"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|s| s["policy"].as_array().into_iter().flatten())
        .filter(|d| d["kind"] == kind)
        .collect()
}

/// Checks one result against its expectation; returns what went wrong.
fn check(r: &Value, agent: &str, expect: Expect) -> Result<(), String> {
    let status = r["status"].as_str().unwrap_or("");
    let partial = r["partial"].as_bool().unwrap_or(false);
    let steps = steps_of(r, agent);
    let fail = |what: &str| Err(format!("{what}: {r}"));
    match expect {
        Expect::CleanFailure => {
            if status != "failed"
                || r["error"]["code"] != "agent_failed"
                || r["error"]["agent"] != agent
            {
                return fail("expected a clean agent_failed");
            }
        }
        _ if status != "completed" => return fail("expected completed"),
        Expect::Partial => {
            if !partial || !r["termination"].as_str().unwrap_or("").contains("partial") {
                return fail("expected a partial result that says so");
            }
        }
        _ if partial => return fail("expected a whole result"),
        Expect::RetryThenSuccess => {
            let ok = steps
                .iter()
                .any(|s| s["agent"] == agent && s["status"] == "completed" && s["attempts"] == 2);
            if !ok || decisions(r, "retry").is_empty() {
                return fail("expected a retry then success");
            }
        }
        Expect::Fallback => {
            let ok = steps.iter().any(|s| {
                s["agent"] == "backup" && s["fallback_for"] == agent && s["status"] == "completed"
            });
            if !ok || decisions(r, "fallback").is_empty() {
                return fail("expected the backup to answer");
            }
        }
        Expect::Success => {
            if !steps
                .iter()
                .any(|s| s["agent"] == agent && s["attempts"] == 1)
            {
                return fail("expected one slow attempt");
            }
        }
    }
    Ok(())
}

/// The session keeps the task and one message per completed step.
async fn check_session(c: &reqwest::Client, server: &Server, r: &Value) -> Result<(), String> {
    let sid = r["session_id"].as_str().unwrap_or("");
    let (status, s) = get_json(c, &server.url(&format!("/sessions/{sid}"))).await;
    if status != 200 {
        return Err(format!("session {sid}: {status}"));
    }
    let completed = r["steps"].as_array().map_or(0, |s| {
        s.iter().filter(|s| s["status"] == "completed").count()
    });
    let messages = s["messages"].as_array().cloned().unwrap_or_default();
    let assistant = messages.iter().filter(|m| m["role"] == "assistant").count();
    let user_first = messages
        .first()
        .is_some_and(|m| m["role"] == "user" && m["content"] == r["task"]);
    let run = &s["runs"][0];
    if !user_first
        || assistant != completed
        || run["status"] != r["status"]
        || run["steps"] != r["steps"]
    {
        return Err(format!(
            "session lost or changed messages: {assistant} assistant messages for {completed} completed steps; {s}"
        ));
    }
    Ok(())
}

/// Sums a metric's samples whose labels include all of `labels`.
fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (n, rest) = series.split_once('{').unwrap_or((series, ""));
            (n == name
                && labels
                    .iter()
                    .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\""))))
            .then(|| value.parse::<f64>().ok())?
        })
        .sum()
}

async fn metrics_text(c: &reqwest::Client, server: &Server) -> String {
    c.get(server.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_fault_on_every_pattern_ends_as_configured() {
    let (chaos, server) = start().await;
    let c = reqwest::Client::new();
    let mut cases = Vec::new();
    for (agent, _) in FAULTS {
        for pattern in PATTERNS {
            cases.push((*agent, *pattern));
        }
    }
    let runs = cases.iter().map(|(agent, pattern)| {
        let c = c.clone();
        let url = server.url("/orchestrate");
        let body = request(pattern, agent);
        async move {
            let started = std::time::Instant::now();
            let r = tokio::time::timeout(BOUND, post_json(&c, &url, body))
                .await
                .unwrap_or_else(|_| {
                    panic!("{pattern}/{agent}: request not answered within {BOUND:?}")
                });
            (r, started.elapsed())
        }
    });
    let results = futures::future::join_all(runs).await;

    let mut table: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    let mut problems = Vec::new();
    let mut runs_by: BTreeMap<(String, String), f64> = BTreeMap::new();
    for ((agent, pattern), ((status, r), took)) in cases.iter().zip(&results) {
        assert_eq!(*status, 200, "{pattern}/{agent}: {r}");
        let expect = expected(agent, pattern);
        let verdict = match check(r, agent, expect) {
            Ok(()) => check_session(&c, &server, r).await,
            Err(e) => Err(e),
        };
        if let Err(e) = &verdict {
            problems.push(format!("{pattern}/{agent}: {e}"));
        }
        *runs_by
            .entry((
                pattern.to_string(),
                r["status"].as_str().unwrap_or("").to_owned(),
            ))
            .or_default() += 1.0;
        table.entry(agent).or_default().push(format!(
            "{} {} ({} ms)",
            if verdict.is_ok() { "✓" } else { "✗" },
            expect.label(),
            took.as_millis()
        ));
    }

    println!("\n| fault | {} |", PATTERNS.join(" | "));
    println!("|---|{}", "---|".repeat(PATTERNS.len()));
    for (agent, label) in FAULTS {
        println!("| {label} (`{agent}`) | {} |", table[agent].join(" | "));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));

    // Metrics match what happened.
    let m = metrics_text(&c, &server).await;
    let stats = chaos.stats();
    let results: Vec<&Value> = results.iter().map(|((_, r), _)| r).collect();
    for (agent, _) in FAULTS {
        let errors = metric(&m, "orchestra_agent_errors_total", &[("agent", agent)]);
        assert_eq!(
            errors,
            stats.faults(agent) as f64,
            "{agent}: agent errors in /metrics vs faults served"
        );
        let retries = results
            .iter()
            .flat_map(|r| decisions(r, "retry"))
            .filter(|d| d["agent"] == *agent)
            .count();
        assert_eq!(
            metric(
                &m,
                "orchestra_policy_decisions_total",
                &[("agent", agent), ("kind", "retry")]
            ),
            retries as f64,
            "{agent}: retries"
        );
        let fallbacks = results
            .iter()
            .flat_map(|r| decisions(r, "fallback"))
            .filter(|d| d["from"] == *agent)
            .count();
        assert_eq!(
            metric(
                &m,
                "orchestra_policy_decisions_total",
                &[("agent", agent), ("kind", "fallback")]
            ),
            fallbacks as f64,
            "{agent}: fallbacks"
        );
    }
    for ((pattern, status), n) in &runs_by {
        assert_eq!(
            metric(
                &m,
                "orchestra_runs_total",
                &[("pattern", pattern), ("status", status)]
            ),
            *n,
            "runs_total {pattern}/{status}"
        );
    }
    // Every hanging call was abandoned by the server, none left running.
    let hangs = stats.faults("hang");
    assert_eq!(hangs, PATTERNS.len() as u64);
    tokio::time::timeout(BOUND, chaos.abandoned_at_least(hangs))
        .await
        .expect("every hanging call was closed by the server");
    assert_eq!(metric(&m, "orchestra_active_runs", &[]), 0.0);
}

/// Reads a stream to its end and returns the events' types and the result.
async fn stream_run(c: &reqwest::Client, server: &Server, body: Value) -> (Vec<String>, Value) {
    let response = c
        .post(server.url("/orchestrate/stream"))
        .json(&body)
        .send()
        .await
        .expect("stream");
    assert_eq!(response.status(), 200);
    let events = tokio::time::timeout(BOUND, SseReader::new(response).collect())
        .await
        .expect("the stream ended within the bound");
    let types = events.iter().map(|e| e.event.clone()).collect();
    let result = events
        .last()
        .map(|e| e.data["result"].clone())
        .unwrap_or(Value::Null);
    (types, result)
}

async fn circuit_of(c: &reqwest::Client, server: &Server, agent: &str) -> Value {
    let (_, list) = get_json(c, &server.url("/agents")).await;
    list["agents"]
        .as_array()
        .and_then(|a| a.iter().find(|x| x["name"] == agent))
        .map(|x| x["circuit"].clone())
        .unwrap_or(Value::Null)
}

#[tokio::test]
async fn a_breaker_opens_fails_fast_to_the_fallback_and_closes_after_a_good_probe() {
    let (chaos, server) = start().await;
    let c = reqwest::Client::new();
    chaos.set_mode("down", Fault::Error(503));
    let body = json!({"pattern": "sequential", "task": "t", "agents": ["down"]});

    let (_, r) = post_json(&c, &server.url("/orchestrate"), body.clone()).await;
    assert_eq!(r["status"], "completed", "{r}");
    assert_eq!(r["steps"][0]["agent"], "backup");
    assert_eq!(circuit_of(&c, &server, "down").await["recent_failures"], 1);

    let (types, r) = stream_run(&c, &server, body.clone()).await;
    assert!(types.contains(&"circuit_opened".to_owned()), "{types:?}");
    assert_eq!(r["steps"][0]["policy"][0]["kind"], "circuit_opened", "{r}");
    let circuit = circuit_of(&c, &server, "down").await;
    assert_eq!(circuit["state"], "open", "{circuit}");
    let m = metrics_text(&c, &server).await;
    assert_eq!(
        metric(&m, "orchestra_circuit_state", &[("agent", "down")]),
        1.0,
        "{m}"
    );

    // Open: the call fails fast without reaching the service.
    let (_, r) = post_json(&c, &server.url("/orchestrate"), body.clone()).await;
    assert_eq!(r["status"], "completed");
    assert_eq!(r["steps"][0]["agent"], "backup");
    assert_eq!(
        r["steps"][0]["policy"][0]["kind"], "circuit_rejected",
        "{r}"
    );
    assert_eq!(chaos.stats().calls("down"), 2);

    // The service recovers; after the cool-down one probe closes the circuit.
    chaos.set_mode("down", Fault::Ok);
    eventually(Duration::from_secs(10), || async {
        (circuit_of(&c, &server, "down").await["retry_in_ms"] == 0).then_some(())
    })
    .await;
    let (types, r) = stream_run(&c, &server, body.clone()).await;
    let half = types.iter().position(|t| t == "circuit_half_open");
    let closed = types.iter().position(|t| t == "circuit_closed");
    assert!(half.is_some() && half < closed, "{types:?}");
    assert_eq!(r["steps"][0]["agent"], "down", "{r}");
    assert_eq!(circuit_of(&c, &server, "down").await["state"], "closed");
    let m = metrics_text(&c, &server).await;
    assert_eq!(
        metric(&m, "orchestra_circuit_state", &[("agent", "down")]),
        0.0
    );
    for (kind, n) in [
        ("circuit_opened", 1.0),
        ("circuit_half_open", 1.0),
        ("circuit_closed", 1.0),
        ("fallback", 3.0),
    ] {
        assert_eq!(
            metric(
                &m,
                "orchestra_policy_decisions_total",
                &[("agent", "down"), ("kind", kind)]
            ),
            n,
            "{kind}"
        );
    }
    assert_eq!(
        metric(
            &m,
            "orchestra_agent_errors_total",
            &[("agent", "down"), ("code", "circuit_open")]
        ),
        1.0
    );
    assert_eq!(
        metric(
            &m,
            "orchestra_agent_errors_total",
            &[("agent", "down"), ("code", "agent_http_error")]
        ),
        chaos.stats().faults("down") as f64
    );
}

#[tokio::test]
async fn a_timed_out_or_cancelled_run_closes_its_agent_call() {
    let (chaos, server) = start().await;
    let c = reqwest::Client::new();
    // The run's deadline passes while the agent hangs.
    let (_, r) = post_json(
        &c,
        &server.url("/orchestrate"),
        json!({"pattern": "sequential", "task": "t", "agents": ["stuck"], "options": {"timeout_ms": 300}}),
    )
    .await;
    assert_eq!(r["status"], "timed_out", "{r}");
    tokio::time::timeout(BOUND, chaos.abandoned_at_least(1))
        .await
        .expect("the agent call was closed when the run timed out");

    // The client goes away mid-run: the run is cancelled and the call closed.
    let response = c
        .post(server.url("/orchestrate/stream"))
        .json(&json!({"pattern": "concurrent", "task": "t", "agents": ["stuck", "steady"]}))
        .send()
        .await
        .expect("stream");
    let sid = response.headers()["x-orchestra-session-id"]
        .to_str()
        .expect("session id")
        .to_owned();
    let mut events = SseReader::new(response);
    let mut seen = 0;
    while let Some(e) = events.next().await {
        if e.event == "agent_completed" {
            seen += 1;
            break;
        }
    }
    assert_eq!(seen, 1, "the steady agent answered before the client left");
    drop(events);
    tokio::time::timeout(BOUND, chaos.abandoned_at_least(2))
        .await
        .expect("the hanging call was closed when the client left");
    let s = eventually(Duration::from_secs(10), || async {
        let (_, s) = get_json(&c, &server.url(&format!("/sessions/{sid}"))).await;
        (s["runs"][0]["status"] == "cancelled").then_some(s)
    })
    .await;
    // The answer that arrived before the cancellation is kept.
    let kept = s["messages"]
        .as_array()
        .map_or(0, |m| m.iter().filter(|m| m["name"] == "steady").count());
    assert_eq!(kept, 1, "{s}");
}

#[tokio::test]
async fn a_bulkhead_lets_one_call_at_a_time_reach_the_service() {
    let (chaos, server) = start().await;
    let c = reqwest::Client::new();
    let url = server.url("/orchestrate");
    let runs = (0..3).map(|_| {
        post_json(
            &c,
            &url,
            json!({"pattern": "sequential", "task": "t", "agents": ["narrow"]}),
        )
    });
    let results = tokio::time::timeout(BOUND, futures::future::join_all(runs))
        .await
        .expect("every request answered within the bound");
    for (status, r) in &results {
        assert_eq!(*status, 200);
        assert_eq!(r["status"], "completed", "{r}");
    }
    let stats = chaos.stats();
    assert_eq!(stats.calls("narrow"), 3);
    assert_eq!(
        stats.max_in_flight["narrow"], 1,
        "the bulkhead held the others back"
    );
    // Unlimited agents are reached concurrently.
    let runs = (0..3).map(|_| {
        post_json(
            &c,
            &url,
            json!({"pattern": "sequential", "task": "t", "agents": ["slow"]}),
        )
    });
    futures::future::join_all(runs).await;
    assert!(chaos.stats().max_in_flight["slow"] > 1);
    let circuit = circuit_of(&c, &server, "narrow").await;
    assert_eq!(circuit["max_concurrency"], 1, "{circuit}");
    assert_eq!(circuit["in_flight"], 0, "{circuit}");
}
