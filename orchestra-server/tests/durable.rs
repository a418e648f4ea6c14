//! Durable runs and human input over REST, against the real server binary:
//! a run pauses for a person in every pattern and resumes with
//! `POST /runs/{run_id}/input`; a server killed with SIGKILL mid-run has its
//! run finished from the checkpoint on restart and on another instance,
//! without calling completed agents again; `POST /runs/{run_id}/cancel` on
//! one instance cancels a run executing on another.

mod common;

use std::time::Duration;

use common::{
    AgentService, SHARED_REDIS, Server, eventually, get_json, post_json, recv_within, unique_prefix,
};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(20);

fn agents(svc: &AgentService) -> String {
    format!(
        r#"
[[agents]]
name = "writer"
kind = "http"
description = "writes"
url = "{echo}"

[[agents]]
name = "first"
kind = "http"
description = "does the first part"
url = "{echo}"

[[agents]]
name = "ask"
kind = "http"
description = "asks a person how many"
url = "{ask}"

[[agents]]
name = "triage"
kind = "http"
description = "routes to ask"
url = "{handoff}"

[[agents]]
name = "slow"
kind = "http"
description = "answers when released"
url = "{block}"
timeout_ms = 60000

[[agents]]
name = "editor"
kind = "human"
description = "a person who edits"
"#,
        echo = svc.url("/echo"),
        ask = svc.url("/ask"),
        handoff = svc.url("/handoff/ask"),
        block = svc.url("/block"),
    )
}

/// Requests the echo service saw for `agent`.
fn calls(svc: &AgentService, agent: &str) -> usize {
    svc.requests()
        .iter()
        .filter(|r| r["agent"] == agent)
        .count()
}

async fn wait_status(c: &reqwest::Client, url: &str, status: &str) -> Value {
    eventually(WAIT, || {
        let (c, url) = (c.clone(), url.to_owned());
        let status = status.to_owned();
        async move {
            let (_, run) = get_json(&c, &url).await;
            (run["status"] == status.as_str()).then_some(run)
        }
    })
    .await
}

/// Starts a run, checks it waits with `kind`, answers it, and returns the finished run.
async fn round_trip(
    c: &reqwest::Client,
    server: &Server,
    request: Value,
    kind: &str,
    answer: Value,
) -> Value {
    let (status, paused) = post_json(c, &server.url("/orchestrate"), request.clone()).await;
    assert_eq!(status, 200, "{paused}");
    assert_eq!(paused["status"], "waiting_for_input", "{request}: {paused}");
    assert_eq!(paused["input"]["kind"], kind, "{paused}");
    let run_id = paused["run_id"].as_str().unwrap().to_owned();
    let run_url = server.url(&format!("/runs/{run_id}"));
    let (status, run) = get_json(c, &run_url).await;
    assert_eq!(status, 200, "{run}");
    assert_eq!(run["status"], "waiting_for_input");
    assert_eq!(run["input"]["key"], paused["input"]["key"]);
    assert!(run["checkpoint"]["version"].is_number(), "{run}");

    let (status, accepted) = post_json(
        c,
        &server.url(&format!("/runs/{run_id}/input")),
        json!({"answer": answer}),
    )
    .await;
    assert_eq!(status, 202, "{accepted}");
    assert_eq!(accepted["status"], "running");
    let done = wait_status(c, &run_url, "completed").await;
    // A second answer is refused: the run is no longer waiting.
    let (status, body) = post_json(
        c,
        &server.url(&format!("/runs/{run_id}/input")),
        json!({"answer": answer}),
    )
    .await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (409, &json!("run_not_waiting"))
    );
    done
}

#[tokio::test]
async fn every_pattern_pauses_for_a_person_and_resumes_over_rest() {
    let svc = AgentService::start().await;
    let server = Server::start(&agents(&svc)).await;
    let c = reqwest::Client::new();

    // Sequential: an HTTP agent asks; a bad answer is refused and the run keeps waiting.
    let (status, paused) = post_json(
        &c,
        &server.url("/orchestrate"),
        json!({"pattern": "sequential", "task": "count", "agents": ["first", "ask", "writer"]}),
    )
    .await;
    assert_eq!(
        (status, &paused["status"]),
        (200, &json!("waiting_for_input"))
    );
    assert_eq!(paused["input"]["prompt"], "How many?");
    let run_id = paused["run_id"].as_str().unwrap();
    let input_url = server.url(&format!("/runs/{run_id}/input"));
    let (status, body) = post_json(&c, &input_url, json!({"answer": "many"})).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (422, &json!("invalid_answer"))
    );
    let (status, body) = post_json(&c, &input_url, json!({"wrong": 1})).await;
    assert_eq!(status, 422, "{body}");
    let (_, run) = get_json(&c, &server.url(&format!("/runs/{run_id}"))).await;
    assert_eq!(run["status"], "waiting_for_input");
    let (status, _) = post_json(&c, &input_url, json!({"answer": 3})).await;
    assert_eq!(status, 202);
    let done = wait_status(&c, &server.url(&format!("/runs/{run_id}")), "completed").await;
    assert_eq!(done["result"]["output"], "writer: heard 3");
    assert_eq!(
        calls(&svc, "first"),
        1,
        "the completed step did not run again"
    );
    assert_eq!(calls(&svc, "ask"), 2);

    // Concurrent: the other branches are kept while one waits.
    let done = round_trip(
        &c,
        &server,
        json!({"pattern": "concurrent", "task": "t", "agents": ["writer", "ask"]}),
        "agent",
        json!(4),
    )
    .await;
    assert!(
        done["result"]["output"]
            .as_str()
            .unwrap()
            .contains("heard 4"),
        "{done}"
    );

    // Handoff: the agent handed the task to asks.
    let done = round_trip(
        &c,
        &server,
        json!({"pattern": "handoff", "task": "t", "agents": ["triage", "ask"]}),
        "agent",
        json!(5),
    )
    .await;
    assert_eq!(done["result"]["output"], "heard 5");

    // Group chat: a human participant takes a turn.
    let done = round_trip(
        &c,
        &server,
        json!({"pattern": "group_chat", "task": "draft", "agents": ["writer", "editor"],
               "options": {"max_rounds": 3}}),
        "human",
        json!("shorter, please"),
    )
    .await;
    let steps = done["result"]["steps"].as_array().unwrap();
    assert_eq!(steps[1]["agent"], "editor");
    assert_eq!(steps[1]["output"]["content"], "shorter, please");

    // Dynamic: the plan is approved before it runs.
    let done = round_trip(
        &c,
        &server,
        json!({"pattern": "dynamic", "task": "write it", "agents": ["writer"],
               "options": {"approve_plan": true}}),
        "plan",
        json!({"approved": true}),
    )
    .await;
    assert_eq!(done["result"]["status"], "completed");

    // A named agent acts only when approved; a refusal fails the run.
    let (_, paused) = post_json(
        &c,
        &server.url("/orchestrate"),
        json!({"pattern": "sequential", "task": "t", "agents": ["first", "writer"],
               "options": {"approve_agents": ["writer"]}}),
    )
    .await;
    assert_eq!(paused["input"]["kind"], "approval", "{paused}");
    let run_id = paused["run_id"].as_str().unwrap();
    let writes = calls(&svc, "writer");
    let (status, _) = post_json(
        &c,
        &server.url(&format!("/runs/{run_id}/input")),
        json!({"answer": {"approved": false, "reason": "not today"}}),
    )
    .await;
    assert_eq!(status, 202);
    let failed = wait_status(&c, &server.url(&format!("/runs/{run_id}")), "failed").await;
    assert_eq!(failed["result"]["error"]["code"], "approval_denied");
    assert_eq!(calls(&svc, "writer"), writes);

    // A waiting run can be cancelled; unknown runs are 404.
    let (_, paused) = post_json(
        &c,
        &server.url("/orchestrate"),
        json!({"pattern": "sequential", "task": "t", "agents": ["ask"]}),
    )
    .await;
    let run_id = paused["run_id"].as_str().unwrap();
    let (status, body) = post_json(
        &c,
        &server.url(&format!("/runs/{run_id}/cancel")),
        json!({}),
    )
    .await;
    assert_eq!((status, &body["status"]), (202, &json!("cancelled")));
    let (_, run) = get_json(&c, &server.url(&format!("/runs/{run_id}"))).await;
    assert_eq!(run["status"], "cancelled");
    let (status, body) = post_json(
        &c,
        &server.url(&format!("/runs/{run_id}/cancel")),
        json!({}),
    )
    .await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (409, &json!("run_finished"))
    );
    let (status, body) = get_json(&c, &server.url("/runs/no-such-run")).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (404, &json!("run_not_found"))
    );
    let (status, body) = post_json(
        &c,
        &server.url("/runs/no-such-run/input"),
        json!({"answer": 1}),
    )
    .await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (404, &json!("run_not_found"))
    );
}

fn redis_config(svc: &AgentService, prefix: &str, workers: usize) -> String {
    format!(
        "store = \"{SHARED_REDIS}\"\n[redis]\nprefix = \"{prefix}\"\n[queue]\nworkers = {workers}\nclaim_idle_ms = 1000\n{}",
        agents(svc)
    )
}

async fn submit(c: &reqwest::Client, server: &Server, agents: Value) -> String {
    let (status, accepted) = post_json(
        c,
        &server.url("/orchestrate"),
        json!({"pattern": "sequential", "task": "job", "agents": agents, "mode": "async"}),
    )
    .await;
    assert_eq!(status, 202, "{accepted}");
    accepted["run_id"].as_str().unwrap().to_owned()
}

/// `first → slow → writer` on instance A; A is killed inside `slow`; the
/// run is finished by `next` (a restarted A, or another instance) from
/// its checkpoint: `first` is not called again.
async fn kill_mid_run_then_finish(restart: bool) {
    let mut svc = AgentService::start().await;
    let prefix = unique_prefix(if restart { "restart" } else { "takeover" });
    let cfg = redis_config(&svc, &prefix, 1);
    let mut a = Server::start(&cfg).await;
    let c = reqwest::Client::new();
    let run_id = submit(&c, &a, json!(["first", "slow", "writer"])).await;
    let first = recv_within(&mut svc.started, WAIT).await;
    assert_eq!(first["run_id"], run_id.as_str());
    assert_eq!(calls(&svc, "first"), 1);
    let (_, run) = get_json(&c, &a.url(&format!("/runs/{run_id}"))).await;
    assert_eq!(run["checkpoint"]["steps"], 1, "{run}");

    let other = if restart {
        None
    } else {
        Some(Server::start(&cfg).await)
    };
    a.kill();
    let next = match other {
        Some(b) => b,
        None => Server::start(&cfg).await,
    };
    // The run is taken over after the claim timeout and goes on at `slow`.
    let second = recv_within(&mut svc.started, WAIT).await;
    assert_eq!(second["run_id"], run_id.as_str());
    svc.release.notify_one();
    let run = wait_status(&c, &next.url(&format!("/runs/{run_id}")), "completed").await;
    assert_eq!(run["result"]["output"], "writer: released");
    assert_eq!(run["result"]["steps"].as_array().unwrap().len(), 3);
    assert_eq!(
        calls(&svc, "first"),
        1,
        "a completed step runs exactly once"
    );
    assert_eq!(calls(&svc, "writer"), 1);
    assert_eq!(run["result"]["checkpoint"]["resumes"], 1, "{run}");
}

#[tokio::test]
async fn a_run_killed_mid_step_finishes_on_restart_from_its_checkpoint() {
    kill_mid_run_then_finish(true).await;
}

#[tokio::test]
async fn a_run_killed_mid_step_finishes_on_another_instance_from_its_checkpoint() {
    kill_mid_run_then_finish(false).await;
}

#[tokio::test]
async fn cancel_on_one_instance_stops_a_run_on_another() {
    let mut svc = AgentService::start().await;
    let prefix = unique_prefix("remote-cancel");
    let a = Server::start(&redis_config(&svc, &prefix, 1)).await;
    let b = Server::start(&redis_config(&svc, &prefix, 0)).await;
    let c = reqwest::Client::new();
    let run_id = submit(&c, &a, json!(["slow", "writer"])).await;
    recv_within(&mut svc.started, WAIT).await;

    let (status, body) = post_json(&c, &b.url(&format!("/runs/{run_id}/cancel")), json!({})).await;
    assert_eq!(
        (status, &body["status"]),
        (202, &json!("cancelling")),
        "{body}"
    );
    // A aborts the agent call in flight and records the run as cancelled.
    let aborted = recv_within(&mut svc.aborted, WAIT).await;
    assert_eq!(aborted, run_id);
    let run = wait_status(&c, &b.url(&format!("/runs/{run_id}")), "cancelled").await;
    assert_eq!(run["result"]["status"], "cancelled");
    assert_eq!(calls(&svc, "writer"), 0);
}

#[tokio::test]
async fn a_run_paused_on_one_instance_is_answered_on_another() {
    let svc = AgentService::start().await;
    let prefix = unique_prefix("answer-elsewhere");
    let a = Server::start(&redis_config(&svc, &prefix, 1)).await;
    let b = Server::start(&redis_config(&svc, &prefix, 1)).await;
    let c = reqwest::Client::new();
    let run_id = submit(&c, &a, json!(["first", "ask", "writer"])).await;
    let run = wait_status(&c, &b.url(&format!("/runs/{run_id}")), "waiting_for_input").await;
    assert_eq!(run["input"]["prompt"], "How many?");
    let (status, accepted) = post_json(
        &c,
        &b.url(&format!("/runs/{run_id}/input")),
        json!({"answer": 8}),
    )
    .await;
    assert_eq!(status, 202, "{accepted}");
    let events_url = accepted["events_url"].as_str().unwrap().to_owned();
    let run = wait_status(&c, &a.url(&format!("/runs/{run_id}")), "completed").await;
    assert_eq!(run["result"]["output"], "writer: heard 8");
    assert_eq!(calls(&svc, "first"), 1);
    // The continuation's events start with run_resumed.
    let r = c.get(b.url(&events_url)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let events = tokio::time::timeout(WAIT, common::SseReader::new(r).collect())
        .await
        .unwrap();
    let kinds: Vec<&str> = events.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(kinds.first(), Some(&"run_resumed"), "{kinds:?}");
    assert_eq!(kinds.last(), Some(&"run_completed"), "{kinds:?}");
}

#[tokio::test]
async fn stop_on_one_instance_ends_a_run_on_another_cleanly() {
    let mut svc = AgentService::start().await;
    let prefix = unique_prefix("remote-stop");
    let a = Server::start(&redis_config(&svc, &prefix, 1)).await;
    let b = Server::start(&redis_config(&svc, &prefix, 0)).await;
    let c = reqwest::Client::new();
    let run_id = submit(&c, &a, json!(["slow", "writer"])).await;
    recv_within(&mut svc.started, WAIT).await;

    let (status, body) = post_json(
        &c,
        &b.url(&format!("/runs/{run_id}/stop")),
        json!({"reason": "enough"}),
    )
    .await;
    assert_eq!(
        (status, &body["status"]),
        (202, &json!("stopping")),
        "{body}"
    );
    // The step in flight finishes; the run ends there, completed.
    svc.release.notify_one();
    let run = wait_status(&c, &b.url(&format!("/runs/{run_id}")), "completed").await;
    assert_eq!(run["result"]["termination"], "stopped: enough");
    assert_eq!(run["result"]["output"], "released");
    assert_eq!(calls(&svc, "writer"), 0);

    let (status, body) = post_json(&c, &b.url(&format!("/runs/{run_id}/stop")), json!({})).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (409, &json!("run_not_running"))
    );
    let (status, body) = post_json(&c, &b.url("/runs/nope/stop"), json!({})).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (404, &json!("run_not_found"))
    );
}
