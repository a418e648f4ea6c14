//! End-to-end tests: the real `orchestra-server` binary on a free port,
//! driven with reqwest, calling real agent services on 127.0.0.1.

mod common;

use std::time::Duration;

use common::{
    AgentService, Server, SseReader, eventually, get_json, get_text, post_json, recv_within,
};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(10);

/// Agents served by `svc` plus the demo agents.
fn config_for(svc: &AgentService, extra: &str) -> String {
    format!(
        r#"
demo_agents = true
{extra}

[[agents]]
name = "researcher"
kind = "http"
description = "researches facts about a topic"
url = "{echo}"
health_url = "{health}"

[[agents]]
name = "writer"
kind = "http"
description = "writes an article from notes"
url = "{echo}"
headers = {{ Authorization = "env:ORCHESTRA_TEST_AGENT_TOKEN" }}

[[agents]]
name = "critic"
kind = "http"
description = "reviews drafts"
url = "{approve}"

[[agents]]
name = "triage"
kind = "http"
description = "routes questions"
url = "{handoff}"

[[agents]]
name = "broken"
kind = "http"
description = "always fails with a 500"
url = "{fail}"

[[agents]]
name = "slow"
kind = "http"
description = "answers when released"
url = "{block}"
timeout_ms = 60000
"#,
        echo = svc.url("/echo"),
        health = svc.url("/nowhere-health"),
        approve = svc.url("/approve"),
        handoff = svc.url("/handoff/writer"),
        fail = svc.url("/status/500"),
        block = svc.url("/block"),
    )
}

async fn start(svc: &AgentService, extra: &str) -> Server {
    Server::start_with_env(
        &config_for(svc, extra),
        &[("ORCHESTRA_TEST_AGENT_TOKEN", "Bearer agent-secret")],
    )
    .await
}

#[tokio::test]
async fn every_pattern_completes_against_real_agent_services() {
    let svc = AgentService::start().await;
    let server = start(&svc, "").await;
    let c = reqwest::Client::new();
    let url = server.url("/orchestrate");

    let (status, r) = post_json(
        &c,
        &url,
        json!({"pattern": "sequential", "task": "tides", "agents": ["researcher", "writer"],
               "metadata": {"user": "u1"}}),
    )
    .await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["status"], "completed");
    assert_eq!(r["output"], "writer: researcher: tides");
    assert_eq!(r["steps"].as_array().unwrap().len(), 2);
    assert_eq!(r["usage"]["total_tokens"], 14);
    assert!(r["duration_ms"].is_u64());
    let first = &svc.requests()[0];
    assert_eq!(first["task"], "tides");
    assert_eq!(first["metadata"]["user"], "u1");
    assert_eq!(first["run_id"], r["run_id"]);
    assert_eq!(first["session_id"], r["session_id"]);
    assert!(first["deadline_ms"].as_u64().unwrap() > 0);

    let (_, r) = post_json(
        &c,
        &url,
        json!({"pattern": "concurrent", "task": "t", "agents": ["researcher", "writer"],
               "options": {"aggregator": "all"}}),
    )
    .await;
    assert_eq!(r["status"], "completed", "{r}");
    assert_eq!(r["steps"].as_array().unwrap().len(), 2);

    let (_, r) = post_json(
        &c,
        &url,
        json!({"pattern": "handoff", "task": "refund?", "agents": ["triage", "writer"]}),
    )
    .await;
    assert_eq!(r["status"], "completed", "{r}");
    assert_eq!(r["steps"][0]["agent"], "triage");
    assert_eq!(r["steps"][1]["agent"], "writer");

    let (_, r) = post_json(
        &c,
        &url,
        json!({"pattern": "group_chat", "task": "slogan", "agents": ["writer", "critic"],
               "options": {"termination": {"text_mention": "APPROVED"}, "max_rounds": 6}}),
    )
    .await;
    assert_eq!(r["status"], "completed", "{r}");
    assert_eq!(r["termination"], "text_mention: APPROVED");
    assert_eq!(r["output"], "APPROVED");

    let (_, r) = post_json(
        &c,
        &url,
        json!({"pattern": "dynamic", "task": "Research facts about tides, then write an article",
               "agents": ["researcher", "writer", "critic"]}),
    )
    .await;
    assert_eq!(r["status"], "completed", "{r}");
    let agents: Vec<&str> = r["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["agent"].as_str())
        .collect();
    assert_eq!(agents, ["researcher", "writer"]);
}

#[tokio::test]
async fn every_pattern_works_with_the_demo_agents_alone() {
    let server = Server::start("").await;
    let c = reqwest::Client::new();
    let url = server.url("/orchestrate");
    let cases = [
        json!({"pattern": "sequential", "task": "tides", "agents": ["demo_researcher", "demo_writer"]}),
        json!({"pattern": "concurrent", "task": "tides", "agents": ["demo_researcher", "demo_writer"],
               "options": {"aggregator": "agent", "summarizer": "demo_summarizer"}}),
        json!({"pattern": "handoff", "task": "Where is my refund?"}),
        json!({"pattern": "group_chat", "task": "slogan", "agents": ["demo_writer", "demo_critic"],
               "options": {"termination": {"text_mention": "APPROVED"}}}),
        json!({"pattern": "dynamic", "task": "Research tides, then write an article"}),
    ];
    for body in cases {
        let (status, r) = post_json(&c, &url, body.clone()).await;
        assert_eq!(status, 200, "{body}: {r}");
        assert_eq!(r["status"], "completed", "{body}: {r}");
        assert!(!r["output"].as_str().unwrap().is_empty(), "{body}: {r}");
    }
    // Plain runs feed the metrics through their observed events.
    let m = get_text(&c, &server.url("/metrics")).await;
    for pattern in [
        "sequential",
        "concurrent",
        "handoff",
        "group_chat",
        "dynamic",
    ] {
        let series = format!(r#"orchestra_runs_total{{pattern="{pattern}",status="completed"}} 1"#);
        assert!(m.contains(&series), "{series}\n{m}");
    }
    assert!(
        m.contains(r#"orchestra_agent_call_duration_seconds_count{agent="demo_writer"}"#),
        "{m}"
    );
    assert!(
        m.contains(
            r#"orchestra_http_requests_total{method="POST",route="/orchestrate",status="200"} 5"#
        ),
        "{m}"
    );
    let (_, agents) = get_json(&c, &server.url("/agents")).await;
    let agents = agents["agents"].as_array().unwrap();
    assert!(agents.len() >= 5);
    assert!(
        agents
            .iter()
            .all(|a| a["kind"] == "demo" && a["source"] == "builtin" && a["health"] == "ok")
    );
}

#[tokio::test]
async fn a_failing_or_timed_out_run_still_answers_200_with_its_status() {
    let mut svc = AgentService::start().await;
    let server = start(&svc, "").await;
    let c = reqwest::Client::new();
    let (status, r) = post_json(
        &c,
        &server.url("/orchestrate"),
        json!({"pattern": "sequential", "task": "x", "agents": ["broken"]}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(r["status"], "failed");
    assert_eq!(r["error"]["code"], "agent_failed");
    assert_eq!(r["error"]["agent"], "broken");
    assert_eq!(r["steps"][0]["error"]["code"], "agent_http_error");

    let (status, r) = post_json(
        &c,
        &server.url("/orchestrate"),
        json!({"pattern": "sequential", "task": "x", "agents": ["slow"], "options": {"timeout_ms": 300}}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(r["status"], "timed_out", "{r}");
    assert_eq!(r["error"]["code"], "timeout");
    // The agent service saw its call dropped when the run timed out.
    let started = recv_within(&mut svc.started, WAIT).await;
    let aborted = recv_within(&mut svc.aborted, WAIT).await;
    assert_eq!(started["run_id"].as_str(), Some(aborted.as_str()));

    let m = get_text(&c, &server.url("/metrics")).await;
    assert!(
        m.contains(r#"orchestra_runs_total{pattern="sequential",status="failed"} 1"#),
        "{m}"
    );
    assert!(
        m.contains(r#"orchestra_runs_total{pattern="sequential",status="timed_out"} 1"#),
        "{m}"
    );
    assert!(
        m.contains(r#"orchestra_agent_errors_total{agent="broken",code="agent_http_error"}"#),
        "{m}"
    );
}

#[tokio::test]
async fn the_stream_sends_one_sse_event_per_orchestration_event_and_ends_with_the_result() {
    let svc = AgentService::start().await;
    let server = start(&svc, "").await;
    let c = reqwest::Client::new();
    let r = c
        .post(server.url("/orchestrate/stream"))
        .json(
            &json!({"pattern": "sequential", "task": "tides", "agents": ["researcher", "writer"]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let run_id = r.headers()["x-orchestra-run-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let events = SseReader::new(r).collect().await;
    let types: Vec<&str> = events.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(
        types,
        [
            "run_started",
            "agent_started",
            "agent_completed",
            "agent_started",
            "agent_completed",
            "run_completed"
        ]
    );
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.id, (i + 1).to_string());
        assert_eq!(e.data["type"], e.event);
        assert_eq!(e.data["seq"], i as u64 + 1);
        assert_eq!(e.data["run_id"], run_id.as_str());
    }
    let last = &events.last().unwrap().data;
    assert_eq!(last["result"]["status"], "completed");
    assert_eq!(last["result"]["output"], "writer: researcher: tides");
}

#[tokio::test]
async fn sessions_continue_list_get_and_delete() {
    let svc = AgentService::start().await;
    let server = start(&svc, "").await;
    let c = reqwest::Client::new();
    let body = json!({"pattern": "sequential", "task": "first", "agents": ["researcher"],
                      "session_id": "chat-1"});
    let (_, r1) = post_json(&c, &server.url("/orchestrate"), body).await;
    assert_eq!(r1["session_id"], "chat-1");
    let (_, r2) = post_json(
        &c,
        &server.url("/orchestrate"),
        json!({"pattern": "sequential", "task": "second", "agents": ["writer"], "session_id": "chat-1"}),
    )
    .await;
    assert_eq!(r2["status"], "completed");
    // The second call saw the first run's conversation (user + answer) plus its own task.
    let seen = svc.requests();
    assert_eq!(seen[1]["messages"].as_array().unwrap().len(), 3);
    assert_eq!(seen[1]["state"]["researcher"], true);

    let (status, s) = get_json(&c, &server.url("/sessions/chat-1")).await;
    assert_eq!(status, 200);
    assert_eq!(s["runs"].as_array().unwrap().len(), 2);
    assert_eq!(s["messages"].as_array().unwrap().len(), 4);
    assert_eq!(s["state"], json!({"researcher": true, "writer": true}));

    let (status, list) = get_json(&c, &server.url("/sessions?limit=10")).await;
    assert_eq!(status, 200);
    assert!(
        list["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["id"] == "chat-1")
    );
    let (status, e) = get_json(&c, &server.url("/sessions?limit=0")).await;
    assert_eq!(
        (status, e["error"]["code"].as_str()),
        (400, Some("invalid_query"))
    );

    let r = c
        .delete(server.url("/sessions/chat-1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let (status, e) = get_json(&c, &server.url("/sessions/chat-1")).await;
    assert_eq!(
        (status, e["error"]["code"].as_str()),
        (404, Some("session_not_found"))
    );
    let r = c
        .delete(server.url("/sessions/chat-1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn invalid_requests_get_stable_codes_and_statuses() {
    let svc = AgentService::start().await;
    let server = start(&svc, "body_limit_bytes = 2048").await;
    let c = reqwest::Client::new();
    let url = server.url("/orchestrate");
    let raw = |body: &'static str, ct: &'static str| {
        c.post(&url).header("content-type", ct).body(body).send()
    };
    let code = |v: &Value| v["error"]["code"].as_str().unwrap_or("").to_owned();

    let r = raw("{\"task\": ", "application/json").await.unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(code(&r.json().await.unwrap()), "invalid_json");

    let r = raw(
        "{\"task\": 1, \"pattern\": \"sequential\"}",
        "application/json",
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 422);
    let v: Value = r.json().await.unwrap();
    assert_eq!(code(&v), "invalid_request");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("task"),
        "{v}"
    );

    let r = raw(
        "{\"task\": \"t\", \"pattern\": \"sequential\", \"agnets\": []}",
        "application/json",
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 422);
    assert!(r.text().await.unwrap().contains("agnets"));

    let r = raw("{}", "text/plain").await.unwrap();
    assert_eq!(r.status(), 415);
    assert_eq!(code(&r.json().await.unwrap()), "unsupported_media_type");

    let big = json!({"pattern": "sequential", "task": "x".repeat(5000)});
    let (status, v) = post_json(&c, &url, big).await;
    assert_eq!((status, code(&v).as_str()), (413, "payload_too_large"));

    for (body, want) in [
        (json!({"pattern": "nope", "task": "t"}), "unknown_pattern"),
        (
            json!({"pattern": "sequential", "task": "t", "agents": ["ghost"]}),
            "unknown_agent",
        ),
        (json!({"pattern": "sequential", "task": "t"}), "no_agents"),
        (
            json!({"pattern": "sequential", "task": " ", "agents": ["writer"]}),
            "invalid_request",
        ),
        (
            json!({"pattern": "concurrent", "task": "t", "agents": ["writer"], "options": {"aggregator": "loudest"}}),
            "invalid_options",
        ),
        (
            json!({"pattern": "sequential", "task": "t", "agents": ["writer"], "session_id": "a b"}),
            "invalid_session_id",
        ),
    ] {
        let (status, v) = post_json(&c, &url, body.clone()).await;
        assert_eq!((status, code(&v).as_str()), (400, want), "{body}");
        assert!(!v["error"]["message"].as_str().unwrap().is_empty());
    }
    let (status, v) = post_json(
        &c,
        &server.url("/orchestrate/stream"),
        json!({"pattern": "x", "task": "t"}),
    )
    .await;
    assert_eq!((status, code(&v).as_str()), (400, "unknown_pattern"));

    let (status, v) = get_json(&c, &server.url("/nowhere")).await;
    assert_eq!((status, code(&v).as_str()), (404, "not_found"));
    let r = c.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(code(&r.json().await.unwrap()), "method_not_allowed");
    let (status, v) = get_json(&c, &server.url("/sessions/bad%20id")).await;
    assert_eq!((status, code(&v).as_str()), (400, "invalid_session_id"));
}

#[tokio::test]
async fn api_keys_guard_every_route_except_open_health() {
    let svc = AgentService::start().await;
    let server = Server::start_with_env(
        &config_for(
            &svc,
            "[auth]\napi_keys = [\"env:ORCHESTRA_TEST_KEY\", \"second-key\"]\nprotect_metrics = true",
        ),
        &[
            ("ORCHESTRA_TEST_AGENT_TOKEN", "t"),
            ("ORCHESTRA_TEST_KEY", "first-key"),
        ],
    )
    .await;
    let c = reqwest::Client::new();
    let body = json!({"pattern": "sequential", "task": "t", "agents": ["researcher"]});

    let r = c
        .post(server.url("/orchestrate"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "unauthorized");
    let r = c
        .post(server.url("/orchestrate"))
        .bearer_auth("wrong")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    for key in ["first-key", "second-key"] {
        let r = c
            .post(server.url("/orchestrate"))
            .bearer_auth(key)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{key}");
    }
    for path in [
        "/sessions",
        "/agents",
        "/patterns",
        "/openapi.json",
        "/metrics",
    ] {
        let r = c.get(server.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 401, "{path}");
        let r = c
            .get(server.url(path))
            .bearer_auth("first-key")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
    }
    let r = c.get(server.url("/health")).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn a_client_that_disconnects_cancels_its_run() {
    let mut svc = AgentService::start().await;
    let server = start(&svc, "").await;
    let c = reqwest::Client::new();
    let r = c
        .post(server.url("/orchestrate/stream"))
        .json(&json!({"pattern": "sequential", "task": "wait", "agents": ["slow"], "session_id": "gone-1"}))
        .send()
        .await
        .unwrap();
    let mut events = SseReader::new(r);
    assert_eq!(events.next().await.unwrap().event, "run_started");
    assert_eq!(events.next().await.unwrap().event, "agent_started");
    let started = recv_within(&mut svc.started, WAIT).await;
    drop(events);

    // The agent's request is aborted and the session records the run as cancelled.
    let aborted = recv_within(&mut svc.aborted, WAIT).await;
    assert_eq!(started["run_id"].as_str(), Some(aborted.as_str()));
    let run = eventually(WAIT, || {
        let c = c.clone();
        let url = server.url("/sessions/gone-1");
        async move {
            let (_, s) = get_json(&c, &url).await;
            let run = s["runs"][0].clone();
            (run["status"] != "running" && !run.is_null()).then_some(run)
        }
    })
    .await;
    assert_eq!(run["status"], "cancelled");
    assert_eq!(run["error"]["code"], "cancelled");
}

/// POSTs `body` from a task of its own, to be awaited (or dropped) later.
fn spawn_post(
    c: &reqwest::Client,
    url: &str,
    body: serde_json::Value,
) -> tokio::task::JoinHandle<(u16, serde_json::Value)> {
    let (c, url) = (c.clone(), url.to_owned());
    tokio::spawn(async move { post_json(&c, &url, body).await })
}

#[tokio::test]
async fn a_client_that_gives_up_on_a_plain_run_cancels_it() {
    let mut svc = AgentService::start().await;
    let server = start(&svc, "").await;
    let c = reqwest::Client::new();
    let url = server.url("/orchestrate");
    let request = spawn_post(
        &c,
        &url,
        json!({"pattern": "sequential", "task": "wait", "agents": ["slow"], "session_id": "gone-2"}),
    );
    let started = recv_within(&mut svc.started, WAIT).await;
    // Dropping the request closes its connection.
    request.abort();

    let aborted = recv_within(&mut svc.aborted, WAIT).await;
    assert_eq!(started["run_id"].as_str(), Some(aborted.as_str()));
    let run = eventually(WAIT, || {
        let c = c.clone();
        let url = server.url("/sessions/gone-2");
        async move {
            let (_, s) = get_json(&c, &url).await;
            let run = s["runs"][0].clone();
            (run["status"] != "running" && !run.is_null()).then_some(run)
        }
    })
    .await;
    assert_eq!(run["status"], "cancelled");
}

/// A server with `config` running a plain run of the `slow` agent on `task`,
/// sent SIGTERM once the agent has started; the request is still in flight.
async fn sigterm_during_a_slow_run(
    config: &str,
    task: &str,
) -> (
    AgentService,
    Server,
    tokio::task::JoinHandle<(u16, serde_json::Value)>,
) {
    let mut svc = AgentService::start().await;
    let server = start(&svc, config).await;
    let c = reqwest::Client::new();
    let in_flight = spawn_post(
        &c,
        &server.url("/orchestrate"),
        json!({"pattern": "sequential", "task": task, "agents": ["slow"]}),
    );
    recv_within(&mut svc.started, WAIT).await;
    server.sigterm();
    (svc, server, in_flight)
}

#[tokio::test]
async fn sigterm_answers_a_plain_run_still_going_at_the_drain_timeout_as_cancelled() {
    let (_svc, mut server, in_flight) =
        sigterm_during_a_slow_run("drain_timeout_ms = 300", "never ends").await;
    let (status, r) = tokio::time::timeout(WAIT, in_flight)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["status"], "cancelled", "{r}");
    assert_eq!(r["error"]["code"], "cancelled", "{r}");
    assert!(server.wait_exit(WAIT).await.success());
}

#[tokio::test]
async fn sigterm_lets_a_run_in_flight_finish_and_refuses_new_connections() {
    let (svc, mut server, in_flight) =
        sigterm_during_a_slow_run("drain_timeout_ms = 20000", "finish me").await;
    // The listener closes: new connections are refused while the run goes on.
    let addr = server.addr;
    eventually(WAIT, || async move {
        tokio::net::TcpStream::connect(addr)
            .await
            .is_err()
            .then_some(())
    })
    .await;
    assert!(!in_flight.is_finished());
    svc.release.notify_one();
    let (status, r) = in_flight.await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(r["status"], "completed");
    assert_eq!(r["output"], "released");
    assert!(server.wait_exit(WAIT).await.success());
}

#[tokio::test]
async fn sigterm_ends_open_streams_with_a_final_event_after_the_drain_timeout() {
    let mut svc = AgentService::start().await;
    let mut server = start(&svc, "drain_timeout_ms = 300").await;
    let c = reqwest::Client::new();
    let r = c
        .post(server.url("/orchestrate/stream"))
        .json(&json!({"pattern": "sequential", "task": "never ends", "agents": ["slow"]}))
        .send()
        .await
        .unwrap();
    let mut events = SseReader::new(r);
    assert_eq!(events.next().await.unwrap().event, "run_started");
    recv_within(&mut svc.started, WAIT).await;
    server.sigterm();
    let rest = tokio::time::timeout(WAIT, events.collect()).await.unwrap();
    let last = rest.last().expect("a final event");
    assert_eq!(last.event, "run_cancelled");
    assert_eq!(last.data["result"]["status"], "cancelled");
    assert!(server.wait_exit(WAIT).await.success());
}

#[tokio::test]
async fn patterns_agents_and_health_describe_the_service() {
    let svc = AgentService::start().await;
    let server = start(&svc, "").await;
    let c = reqwest::Client::new();
    let (status, p) = get_json(&c, &server.url("/patterns")).await;
    assert_eq!(status, 200);
    let names: Vec<&str> = p["patterns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "sequential",
            "concurrent",
            "handoff",
            "group_chat",
            "dynamic"
        ]
    );
    for p in p["patterns"].as_array().unwrap() {
        assert!(!p["description"].as_str().unwrap().is_empty());
        assert!(
            p["options_schema"]["properties"]["timeout_ms"].is_object(),
            "{p}"
        );
    }

    let (_, a) = get_json(&c, &server.url("/agents")).await;
    let find = |n: &str| {
        a["agents"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["name"] == n)
            .cloned()
            .unwrap()
    };
    let researcher = find("researcher");
    assert_eq!(researcher["kind"], "http");
    assert_eq!(researcher["source"], "config");
    assert_eq!(researcher["health"], "down"); // its health_url answers 404
    assert_eq!(find("writer")["health"], "unknown");
    assert_eq!(find("demo_echo")["source"], "builtin");
    assert!(!a.to_string().contains("agent-secret"));

    let (status, h) = get_json(&c, &server.url("/health")).await;
    assert_eq!(status, 200, "{h}");
    assert_eq!(h["status"], "ready");
    assert_eq!(h["store"]["kind"], "memory");
    assert_eq!(h["store"]["status"], "ok");

    // A critical agent whose probe fails makes the service unavailable.
    let critical = Server::start_with_env(
        &format!(
            "[[agents]]\nname = \"rag\"\nkind = \"http\"\nurl = \"{}\"\nhealth_url = \"{}\"\ncritical = true\n",
            svc.url("/echo"),
            svc.url("/missing")
        ),
        &[],
    )
    .await;
    let (status, h) = get_json(&c, &critical.url("/health")).await;
    assert_eq!(status, 503, "{h}");
    assert_eq!(h["status"], "unavailable");
}

#[tokio::test]
async fn the_event_schema_is_served_and_describes_every_event() {
    let server = Server::start("").await;
    let c = reqwest::Client::new();
    let (status, schema) = get_json(&c, &server.url("/schemas/events.json")).await;
    assert_eq!(status, 200);
    assert_eq!(schema, orchestra_core::event::event_schema());
    let text = schema.to_string();
    for t in [
        "run_started",
        "agent_delta",
        "handoff",
        "plan_created",
        "budget_exceeded",
        "run_completed",
    ] {
        assert!(text.contains(&format!("\"{t}\"")), "{t}");
    }
}

#[tokio::test]
async fn the_openapi_document_lists_every_route_and_resolves_every_ref() {
    let server = Server::start("").await;
    let c = reqwest::Client::new();
    let (status, doc) = get_json(&c, &server.url("/openapi.json")).await;
    assert_eq!(status, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let expected = [
        ("/orchestrate", "post"),
        ("/orchestrate/stream", "post"),
        ("/sessions", "get"),
        ("/sessions/{session_id}", "get"),
        ("/sessions/{session_id}", "delete"),
        ("/patterns", "get"),
        ("/schemas/events.json", "get"),
        ("/agents", "get"),
        ("/agents/register", "post"),
        ("/agents/{name}", "delete"),
        ("/runs/{run_id}", "get"),
        ("/runs/{run_id}/input", "post"),
        ("/runs/{run_id}/cancel", "post"),
        ("/runs/{run_id}/stop", "post"),
        ("/runs/{run_id}/events", "get"),
        ("/health", "get"),
        ("/metrics", "get"),
        ("/openapi.json", "get"),
    ];
    let paths = doc["paths"].as_object().unwrap();
    assert_eq!(paths.len(), 17, "{:?}", paths.keys().collect::<Vec<_>>());
    for (path, method) in expected {
        assert!(
            doc["paths"][path][method].is_object(),
            "{method} {path} missing"
        );
    }
    // Every route answers something other than 404/405, so the document and the router agree.
    for (path, method) in expected {
        let url = server.url(
            &path
                .replace("{session_id}", "nope")
                .replace("{name}", "nope")
                .replace("{run_id}", "nope"),
        );
        let r = c
            .request(method.to_uppercase().parse().unwrap(), url)
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        let s = r.status().as_u16();
        let v: Value = r.json().await.unwrap_or(Value::Null);
        assert!(
            s != 405 && !(s == 404 && v["error"]["code"] == "not_found"),
            "{method} {path}: {s}"
        );
    }
    let text = doc.to_string();
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    for name in [
        "RunRequest",
        "RunResult",
        "Session",
        "SessionSummary",
        "OrchestrationEvent",
        "ErrorBody",
    ] {
        assert!(schemas.contains_key(name), "{name}");
    }
    for piece in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
        let name = piece.split('"').next().unwrap();
        assert!(schemas.contains_key(name), "dangling $ref to {name}");
    }
    assert!(doc["components"]["securitySchemes"]["api_key"].is_object());
    // The request bodies of both run routes include the `mode` the server reads.
    let mode = &schemas["OrchestrateRequest"]["properties"]["mode"];
    assert_eq!(mode["enum"], json!(["sync", "async"]), "{mode}");
    assert!(schemas["OrchestrateRequest"]["properties"]["task"].is_object());
    for path in ["/orchestrate", "/orchestrate/stream"] {
        let body = &doc["paths"][path]["post"]["requestBody"]["content"]["application/json"];
        assert_eq!(
            body["schema"]["$ref"], "#/components/schemas/OrchestrateRequest",
            "{path}: {body}"
        );
    }
}
