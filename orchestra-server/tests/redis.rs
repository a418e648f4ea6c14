//! Several real `orchestra-server` processes on one real Redis: shared
//! sessions, the run queue across instances, a worker killed mid-run,
//! agent registration with heartbeat expiry, and Redis itself going away
//! and coming back. Each test uses a key prefix of its own.

mod common;

use std::time::Duration;

use common::{
    AgentService, RedisServer, SHARED_REDIS, Server, SseReader, eventually, get_json, post_json,
    recv_within, unique_prefix,
};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(15);

/// A config on `redis_url` with `prefix`, the echo and block agents of
/// `svc`, and `extra` settings.
fn config(redis_url: &str, prefix: &str, svc: &AgentService, extra: &str) -> String {
    format!(
        r#"
store = "{redis_url}"
{extra}

[redis]
prefix = "{prefix}"

[[agents]]
name = "researcher"
kind = "http"
description = "researches facts"
url = "{echo}"

[[agents]]
name = "writer"
kind = "http"
description = "writes"
url = "{echo}"

[[agents]]
name = "slow"
kind = "http"
description = "answers when released"
url = "{block}"
timeout_ms = 60000
"#,
        echo = svc.url("/echo"),
        block = svc.url("/block"),
    )
}

/// Runs `redis-cli` against the shared Redis; answers its trimmed output.
fn redis_cli(args: &[&str]) -> String {
    let out = std::process::Command::new("redis-cli")
        .args(["-u", SHARED_REDIS])
        .args(args)
        .output()
        .expect("redis-cli");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn queue(workers: usize, claim_idle_ms: u64) -> String {
    format!("[queue]\nworkers = {workers}\nclaim_idle_ms = {claim_idle_ms}\n")
}

async fn read_events(
    c: &reqwest::Client,
    url: &str,
    last_event_id: Option<&str>,
) -> Vec<common::SseEvent> {
    let mut req = c.get(url);
    if let Some(id) = last_event_id {
        req = req.header("Last-Event-ID", id);
    }
    let r = req.send().await.expect("events request");
    assert_eq!(r.status(), 200);
    tokio::time::timeout(WAIT, SseReader::new(r).collect())
        .await
        .expect("the event stream ended")
}

#[tokio::test]
async fn a_session_created_on_one_instance_is_continued_and_read_on_another() {
    let svc = AgentService::start().await;
    let prefix = unique_prefix("sessions");
    let cfg = config(SHARED_REDIS, &prefix, &svc, &queue(0, 30_000));
    let (a, b) = (Server::start(&cfg).await, Server::start(&cfg).await);
    let c = reqwest::Client::new();

    let (status, h) = get_json(&c, &a.url("/health")).await;
    assert_eq!(status, 200, "{h}");
    assert_eq!(h["store"]["kind"], "redis");
    assert_eq!(h["store"]["status"], "ok");

    let (status, first) = post_json(
        &c,
        &a.url("/orchestrate"),
        json!({"pattern": "sequential", "task": "tides", "agents": ["researcher"]}),
    )
    .await;
    assert_eq!(status, 200, "{first}");
    let sid = first["session_id"].as_str().unwrap().to_owned();
    // A new session named by the server is written once, at the run's end,
    // and the run is found by id from the other instance.
    let (_, s) = get_json(&c, &b.url(&format!("/sessions/{sid}"))).await;
    assert_eq!(s["version"], 1, "{s}");
    let run_url = format!("/runs/{}", first["run_id"].as_str().unwrap());
    let (status, run) = get_json(&c, &b.url(&run_url)).await;
    assert_eq!(status, 200, "{run}");
    assert_eq!(run["status"], "completed", "{run}");

    let (status, second) = post_json(
        &c,
        &b.url("/orchestrate"),
        json!({"pattern": "sequential", "task": "more", "agents": ["writer"], "session_id": sid}),
    )
    .await;
    assert_eq!(status, 200, "{second}");
    assert_eq!(second["status"], "completed");
    // B's agent saw the conversation A started.
    assert_eq!(svc.requests()[1]["messages"].as_array().unwrap().len(), 3);

    for server in [&a, &b] {
        let (status, s) = get_json(&c, &server.url(&format!("/sessions/{sid}"))).await;
        assert_eq!(status, 200, "{s}");
        let runs: Vec<&str> = s["runs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["run_id"].as_str().unwrap())
            .collect();
        assert_eq!(
            runs,
            [
                first["run_id"].as_str().unwrap(),
                second["run_id"].as_str().unwrap()
            ]
        );
        assert_eq!(s["messages"].as_array().unwrap().len(), 4);
        assert_eq!(s["state"]["researcher"], true);
        assert_eq!(s["state"]["writer"], true);
    }
    let (_, list) = get_json(&c, &b.url("/sessions")).await;
    assert_eq!(list["sessions"][0]["id"], sid.as_str());

    let r = c
        .delete(b.url(&format!("/sessions/{sid}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let (status, _) = get_json(&c, &a.url(&format!("/sessions/{sid}"))).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn an_async_run_submitted_to_one_instance_is_run_and_streamed_by_another() {
    let svc = AgentService::start().await;
    let prefix = unique_prefix("async");
    // A only takes requests; B only runs workers.
    let a = Server::start(&config(SHARED_REDIS, &prefix, &svc, &queue(0, 30_000))).await;
    let b = Server::start(&config(SHARED_REDIS, &prefix, &svc, &queue(1, 30_000))).await;
    let c = reqwest::Client::new();

    let r = c
        .post(a.url("/orchestrate"))
        .json(
            &json!({"pattern": "sequential", "task": "tides", "agents": ["researcher", "writer"],
                      "mode": "async"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    let accepted: Value = r.json().await.unwrap();
    let run_id = accepted["run_id"].as_str().unwrap().to_owned();
    let sid = accepted["session_id"].as_str().unwrap().to_owned();
    assert_eq!(accepted["status"], "queued");
    assert_eq!(location, format!("/runs/{run_id}"));

    let events = read_events(&c, &b.url(&format!("/runs/{run_id}/events")), None).await;
    let kinds: Vec<&str> = events.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(kinds.first(), Some(&"run_started"), "{kinds:?}");
    assert_eq!(kinds.last(), Some(&"run_completed"), "{kinds:?}");
    let ids: Vec<u64> = events.iter().map(|e| e.id.parse().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    let last = &events.last().unwrap().data;
    assert_eq!(last["result"]["output"], "writer: researcher: tides");
    assert_eq!(last["run_id"], run_id.as_str());
    assert_eq!(last["session_id"], sid.as_str());

    // Resumable from any instance: after the second event, the rest.
    let rest = read_events(
        &c,
        &a.url(&format!("/runs/{run_id}/events")),
        Some(&events[1].id),
    )
    .await;
    assert_eq!(rest.len(), events.len() - 2);
    assert_eq!(rest[0].id, events[2].id);

    let (status, run) = get_json(&c, &a.url(&format!("/runs/{run_id}"))).await;
    assert_eq!(status, 200, "{run}");
    assert_eq!(run["status"], "completed");
    assert_eq!(run["session_id"], sid.as_str());
    assert_eq!(run["attempts"], 1);
    assert_eq!(run["result"]["status"], "completed");
    assert_eq!(run["result"]["run_id"], run_id.as_str());
    // The queued run is an ordinary run of its session, under the queue's id.
    let (_, s) = get_json(&c, &a.url(&format!("/sessions/{sid}"))).await;
    assert_eq!(s["runs"][0]["run_id"], run_id.as_str());
    assert_eq!(s["runs"][0]["status"], "completed");

    // `Prefer: respond-async` works the same; a reused run id is refused.
    let r = c
        .post(a.url("/orchestrate"))
        .header("Prefer", "respond-async")
        .json(&json!({"pattern": "sequential", "task": "again", "agents": ["writer"], "run_id": run_id}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "duplicate_run");
    // Invalid requests are refused before anything is queued.
    let (status, body) = post_json(
        &c,
        &a.url("/orchestrate"),
        json!({"pattern": "sequential", "task": "x", "agents": ["ghost"], "mode": "async"}),
    )
    .await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (400, &json!("unknown_agent"))
    );
    let (status, body) = get_json(&c, &b.url("/runs/no-such-run")).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (404, &json!("run_not_found"))
    );
    let r = c
        .get(b.url("/runs/no-such-run/events"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn async_mode_on_the_memory_store_is_refused_with_a_clear_code() {
    let server = Server::start("").await;
    let c = reqwest::Client::new();
    let (status, body) = post_json(
        &c,
        &server.url("/orchestrate"),
        json!({"pattern": "sequential", "task": "x", "agents": ["demo_echo"], "mode": "async"}),
    )
    .await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (409, &json!("redis_required"))
    );
    // Runs are still looked up by id (in the memory store); this one is unknown.
    let (status, body) = get_json(&c, &server.url("/runs/abc")).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (404, &json!("run_not_found"))
    );
    let (status, body) = post_json(
        &c,
        &server.url("/orchestrate"),
        json!({"pattern": "sequential", "task": "x", "agents": ["demo_echo"], "mode": "later"}),
    )
    .await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (422, &json!("invalid_request"))
    );
}

#[tokio::test]
async fn a_run_whose_worker_is_killed_mid_run_is_finished_by_the_other_instance() {
    let mut svc = AgentService::start().await;
    let prefix = unique_prefix("reclaim");
    let cfg = config(SHARED_REDIS, &prefix, &svc, &queue(1, 1500));
    let mut a = Server::start(&cfg).await;
    let c = reqwest::Client::new();

    let (status, accepted) = post_json(
        &c,
        &a.url("/orchestrate"),
        json!({"pattern": "sequential", "task": "long job", "agents": ["slow"], "mode": "async"}),
    )
    .await;
    assert_eq!(status, 202, "{accepted}");
    let run_id = accepted["run_id"].as_str().unwrap().to_owned();
    let sid = accepted["session_id"].as_str().unwrap().to_owned();
    // A's worker is inside the agent call.
    let first = recv_within(&mut svc.started, WAIT).await;
    assert_eq!(first["run_id"], run_id.as_str());
    let (_, run) = get_json(&c, &a.url(&format!("/runs/{run_id}"))).await;
    assert_eq!(run["status"], "running");

    // B joins, then A dies without a word.
    let b = Server::start(&cfg).await;
    a.kill();
    let aborted = recv_within(&mut svc.aborted, WAIT).await;
    assert_eq!(aborted, run_id);

    // B reclaims the run after the idle timeout and calls the agent again.
    let second = recv_within(&mut svc.started, WAIT).await;
    assert_eq!(second["run_id"], run_id.as_str());
    svc.release.notify_one();

    let run = eventually(WAIT, || {
        let (c, url) = (c.clone(), b.url(&format!("/runs/{run_id}")));
        async move {
            let (_, run) = get_json(&c, &url).await;
            (run["status"] == "completed").then_some(run)
        }
    })
    .await;
    assert_eq!(run["attempts"], 2);
    assert_eq!(run["result"]["status"], "completed");
    assert_eq!(run["result"]["output"], "released");
    assert!(run["worker"].is_string());

    // The session holds one record of the run (the dead attempt's was replaced).
    let (_, s) = get_json(&c, &b.url(&format!("/sessions/{sid}"))).await;
    let runs = s["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1, "{s}");
    assert_eq!(runs[0]["run_id"], run_id.as_str());
    assert_eq!(runs[0]["status"], "completed");
    assert_eq!(s["messages"].as_array().unwrap().len(), 2);

    // The stream has both attempts (the second resumes the first from its
    // checkpoint) and ends with the one terminal event.
    let events = read_events(&c, &b.url(&format!("/runs/{run_id}/events")), None).await;
    let kinds: Vec<&str> = events.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(
        kinds.iter().filter(|k| **k == "run_started").count(),
        1,
        "{kinds:?}"
    );
    assert_eq!(
        kinds.iter().filter(|k| **k == "run_resumed").count(),
        1,
        "{kinds:?}"
    );
    assert_eq!(
        kinds
            .iter()
            .filter(|k| k.starts_with("run_") && !matches!(**k, "run_started" | "run_resumed"))
            .count(),
        1,
        "{kinds:?}"
    );
    assert_eq!(kinds.last(), Some(&"run_completed"));
    // A completed run is not executed again: no third call.
    assert!(svc.started.try_recv().is_err());
}

#[tokio::test]
async fn a_registration_that_stops_beating_drops_out_of_agents_and_routing() {
    let svc = AgentService::start().await;
    let prefix = unique_prefix("registry");
    let cfg = config(
        SHARED_REDIS,
        &prefix,
        &svc,
        &format!("{}\n[discovery]\nrefresh_ms = 200\n", queue(0, 30_000)),
    );
    let (a, b) = (Server::start(&cfg).await, Server::start(&cfg).await);
    let c = reqwest::Client::new();
    let listed = |server: &Server| {
        let (c, url) = (c.clone(), server.url("/agents"));
        async move {
            let (_, body) = get_json(&c, &url).await;
            body["agents"].as_array().cloned().unwrap_or_default()
        }
    };

    let (status, reg) = post_json(
        &c,
        &a.url("/agents/register"),
        json!({"name": "reg_echo", "url": svc.url("/echo"), "description": "echoes, registered",
               "capabilities": ["echo"], "ttl_s": 1}),
    )
    .await;
    assert_eq!(status, 200, "{reg}");
    assert_eq!(reg["heartbeat_every_ms"], 333);
    // Routable at once on the instance that took the registration…
    let agents = listed(&a).await;
    let entry = agents
        .iter()
        .find(|x| x["name"] == "reg_echo")
        .expect("listed");
    assert_eq!(entry["source"], "redis");
    assert_eq!(entry["kind"], "http");
    assert_eq!(entry["capabilities"], json!(["echo"]));
    assert!(
        agents
            .iter()
            .any(|x| x["name"] == "researcher" && x["source"] == "config")
    );
    // …and on the other within a refresh.
    eventually(WAIT, || {
        let f = listed(&b);
        async move {
            f.await
                .iter()
                .any(|x| x["name"] == "reg_echo")
                .then_some(())
        }
    })
    .await;
    let run = json!({"pattern": "sequential", "task": "hi", "agents": ["reg_echo"]});
    let (status, r) = post_json(&c, &b.url("/orchestrate"), run.clone()).await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["output"], "reg_echo: hi");

    // No more beats: it drops out of both listings and of routing.
    for server in [&a, &b] {
        eventually(WAIT, || {
            let f = listed(server);
            async move { (!f.await.iter().any(|x| x["name"] == "reg_echo")).then_some(()) }
        })
        .await;
        let (status, r) = post_json(&c, &server.url("/orchestrate"), run.clone()).await;
        assert_eq!(
            (status, &r["error"]["code"]),
            (400, &json!("unknown_agent"))
        );
    }

    // Deregistration is immediate; configured agents cannot be shadowed or removed.
    let (status, _) = post_json(
        &c,
        &a.url("/agents/register"),
        json!({"name": "reg_two", "url": svc.url("/echo"), "ttl_s": 60}),
    )
    .await;
    assert_eq!(status, 200);
    assert!(listed(&a).await.iter().any(|x| x["name"] == "reg_two"));
    let r = c.delete(a.url("/agents/reg_two")).send().await.unwrap();
    assert_eq!(r.status(), 204);
    assert!(!listed(&a).await.iter().any(|x| x["name"] == "reg_two"));
    let r = c.delete(a.url("/agents/reg_two")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let (status, body) = post_json(
        &c,
        &a.url("/agents/register"),
        json!({"name": "researcher", "url": "http://127.0.0.1:9/evil"}),
    )
    .await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (409, &json!("agent_exists"))
    );
    let r = c.delete(a.url("/agents/researcher")).send().await.unwrap();
    assert_eq!(r.status(), 409);
    let (status, body) = post_json(
        &c,
        &a.url("/agents/register"),
        json!({"name": "bad name", "url": svc.url("/echo")}),
    )
    .await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (422, &json!("invalid_registration"))
    );
}

#[tokio::test]
async fn while_redis_is_down_requests_get_503_and_the_server_recovers_when_it_returns() {
    let svc = AgentService::start().await;
    let mut redis = RedisServer::start().await;
    let port = redis.port;
    let prefix = unique_prefix("fault");
    let extra = format!("{}\n[discovery]\nrefresh_ms = 200\n", queue(1, 30_000));
    let mut cfg = config(&redis.url(), &prefix, &svc, &extra);
    cfg = cfg.replace(
        &format!("prefix = \"{prefix}\""),
        &format!("prefix = \"{prefix}\"\nconnect_timeout_ms = 200\nresponse_timeout_ms = 500"),
    );
    let mut server = Server::start(&cfg).await;
    let c = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let run = json!({"pattern": "sequential", "task": "tides", "agents": ["researcher", "writer"]});
    let (status, r) = post_json(&c, &server.url("/orchestrate"), run.clone()).await;
    assert_eq!(status, 200, "{r}");
    let sid = r["session_id"].as_str().unwrap().to_owned();

    // Traffic while Redis dies: every answer is 200 or 503 store_unavailable.
    let traffic = {
        let (c, url, run) = (c.clone(), server.url("/orchestrate"), run.clone());
        tokio::spawn(async move {
            let mut seen = Vec::new();
            // Until a few 503s came back (Redis is gone), within a bound.
            let deadline = std::time::Instant::now() + WAIT;
            while std::time::Instant::now() < deadline {
                let (status, body) = post_json(&c, &url, run.clone()).await;
                seen.push((status, body["error"]["code"].clone()));
                if status == 503 && seen.iter().filter(|(s, _)| *s == 503).count() >= 3 {
                    break;
                }
            }
            seen
        })
    };
    // Kill once the traffic has shown a success, so the kill lands mid-stream.
    eventually(WAIT, || {
        let (c, url) = (c.clone(), server.url("/metrics"));
        async move {
            let text = c.get(url).send().await.ok()?.text().await.ok()?;
            text.lines()
                .any(|l| l.starts_with("orchestra_runs_total") && !l.ends_with(" 1"))
                .then_some(())
        }
    })
    .await;
    redis.kill();
    let seen = traffic.await.unwrap();
    assert!(seen.iter().any(|(s, _)| *s == 503), "{seen:?}");
    for (status, code) in &seen {
        assert!(
            *status == 200 || (*status == 503 && code == "store_unavailable"),
            "{seen:?}"
        );
    }

    let (status, h) = get_json(&c, &server.url("/health")).await;
    assert_eq!(status, 503, "{h}");
    assert_eq!(h["store"]["status"], "down");
    for path in [format!("/sessions/{sid}"), "/sessions".to_owned()] {
        let (status, body) = get_json(&c, &server.url(&path)).await;
        assert_eq!(
            (status, &body["error"]["code"]),
            (503, &json!("store_unavailable")),
            "{path}"
        );
    }
    let (status, body) = post_json(
        &c,
        &server.url("/orchestrate"),
        json!({"pattern": "sequential", "task": "x", "agents": ["writer"], "session_id": sid}),
    )
    .await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (503, &json!("store_unavailable"))
    );
    let r = c
        .post(server.url("/orchestrate/stream"))
        .json(&run)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    let (status, body) = post_json(
        &c,
        &server.url("/orchestrate"),
        json!({"pattern": "sequential", "task": "x", "agents": ["writer"], "mode": "async"}),
    )
    .await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (503, &json!("store_unavailable"))
    );
    // Configured agents stay routable through the outage (only the store is down).
    let (_, agents) = get_json(&c, &server.url("/agents")).await;
    assert_eq!(agents["agents"].as_array().unwrap().len(), 3);
    assert!(server.is_running(), "the server died with Redis");

    // Redis comes back on the same port (empty: it had no persistence).
    let _redis = RedisServer::start_on(port).await;
    eventually(WAIT, || {
        let (c, url) = (c.clone(), server.url("/health"));
        async move {
            let (status, _) = get_json(&c, &url).await;
            (status == 200).then_some(())
        }
    })
    .await;
    let (status, r) = post_json(&c, &server.url("/orchestrate"), run.clone()).await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["status"], "completed");
    let sid = r["session_id"].as_str().unwrap();
    let (status, s) = get_json(&c, &server.url(&format!("/sessions/{sid}"))).await;
    assert_eq!(status, 200);
    assert_eq!(s["runs"].as_array().unwrap().len(), 1);
    assert_eq!(s["messages"].as_array().unwrap().len(), 3);
    // The queue works again too (its consumer group is re-created).
    let (status, accepted) = post_json(
        &c,
        &server.url("/orchestrate"),
        json!({"pattern": "sequential", "task": "after", "agents": ["writer"], "mode": "async"}),
    )
    .await;
    assert_eq!(status, 202, "{accepted}");
    let url = server.url(&format!("/runs/{}", accepted["run_id"].as_str().unwrap()));
    eventually(WAIT, || {
        let (c, url) = (c.clone(), url.clone());
        async move {
            let (_, run) = get_json(&c, &url).await;
            (run["status"] == "completed").then_some(())
        }
    })
    .await;
    assert!(server.is_running());
}

#[tokio::test]
async fn a_run_that_keeps_failing_is_dead_lettered_and_a_failed_run_is_a_result() {
    let svc = AgentService::start().await;
    let prefix = unique_prefix("dead");
    let extra = format!(
        "{}max_deliveries = 2\n\n[[agents]]\nname = \"broken\"\nkind = \"http\"\nurl = \"{}\"\n",
        queue(1, 300),
        svc.url("/status/500")
    );
    let server = Server::start(&config(SHARED_REDIS, &prefix, &svc, &extra)).await;
    let c = reqwest::Client::new();

    // An agent failing is how the run ends: recorded once, not retried.
    let (status, accepted) = post_json(
        &c,
        &server.url("/orchestrate"),
        json!({"pattern": "sequential", "task": "x", "agents": ["broken"], "mode": "async"}),
    )
    .await;
    assert_eq!(status, 202, "{accepted}");
    let url = server.url(&format!("/runs/{}", accepted["run_id"].as_str().unwrap()));
    let run = eventually(WAIT, || {
        let (c, url) = (c.clone(), url.clone());
        async move {
            let (_, run) = get_json(&c, &url).await;
            (run["queue_status"] == "completed").then_some(run)
        }
    })
    .await;
    assert_eq!(
        run["status"], "failed",
        "the run's own status; the queue's says it ended"
    );
    assert_eq!(run["attempts"], 1);
    assert_eq!(run["result"]["status"], "failed");
    assert_eq!(run["result"]["error"]["code"], "agent_failed");

    // A queue entry no worker can execute (written straight into the stream,
    // as another producer might) is retried, then dead-lettered.
    redis_cli(&[
        "XADD",
        &format!("{prefix}:runs:queue"),
        "*",
        "run_id",
        "unreadable-1",
        "request",
        r#"{"pattern":"sequential"}"#,
    ]);
    let url = server.url("/runs/unreadable-1");
    let run = eventually(WAIT, || {
        let (c, url) = (c.clone(), url.clone());
        async move {
            let (_, run) = get_json(&c, &url).await;
            (run["status"] == "dead").then_some(run)
        }
    })
    .await;
    assert_eq!(run["attempts"], 2, "{run}");
    assert!(
        run["error"].as_str().unwrap().contains("cannot be read"),
        "{run}"
    );
    assert_eq!(redis_cli(&["XLEN", &format!("{prefix}:runs:dead")]), "1");
    // Its event stream ends (no terminal event: it never ran).
    let events = read_events(&c, &server.url("/runs/unreadable-1/events"), None).await;
    assert!(events.is_empty(), "{events:?}");
}

#[tokio::test]
async fn the_index_entries_of_expired_sessions_are_swept_without_a_listing() {
    let svc = AgentService::start().await;
    let prefix = unique_prefix("sweep");
    let extra = format!("session_ttl_secs = 1\n{}", queue(0, 30_000));
    let cfg = config(SHARED_REDIS, &prefix, &svc, &extra).replace(
        &format!("prefix = \"{prefix}\""),
        &format!("prefix = \"{prefix}\"\nsweep_interval_secs = 1"),
    );
    let server = Server::start(&cfg).await;
    let c = reqwest::Client::new();
    let index = format!("{prefix}:sessions");
    let index_len = || {
        redis_cli(&["ZCARD", &index])
            .parse::<u64>()
            .expect("a count")
    };
    let run = || async {
        let (status, body) = post_json(
            &c,
            &server.url("/orchestrate"),
            json!({"pattern": "sequential", "task": "tides", "agents": ["researcher"]}),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        body["session_id"].as_str().unwrap().to_owned()
    };
    let mut old = Vec::new();
    for _ in 0..3 {
        old.push(run().await);
    }
    assert!(index_len() > 0, "the last run's session was just written");
    for sid in &old {
        let url = server.url(&format!("/sessions/{sid}"));
        eventually(WAIT, || async {
            (get_json(&c, &url).await.0 == 404).then_some(())
        })
        .await;
    }
    // Nobody lists; the next write, a sweep interval later, starts the
    // sweep that drops the expired sessions' entries.
    let new = run().await;
    eventually(WAIT, || async { (index_len() == 1).then_some(()) }).await;
    assert_eq!(redis_cli(&["ZRANGE", &index, "0", "-1"]), new);
}
