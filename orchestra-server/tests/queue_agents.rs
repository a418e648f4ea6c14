//! The real server binary with agents of kind "queue": configured on Redis
//! Streams and on NATS JetStream, and found through a worker's registration
//! in Redis discovery. Workers are `orchestra_core::worker` in this process.
//!
//! Needs Redis at 127.0.0.1:6379 and NATS with JetStream at 127.0.0.1:4222
//! (`scripts/ensure-services` starts both).

mod common;

use std::time::Duration;

use common::{SHARED_REDIS, Server, eventually, get_json, post_json};
use orchestra_core::{
    AgentInput, FnAgent, RedisStore, RedisStoreConfig,
    agents::queue::{QueueConfig, QueueTransport},
    discovery::RedisAgentRegistry,
    worker::{Worker, WorkerHandle},
};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

fn tag(name: &'static str) -> impl orchestra_core::Agent {
    FnAgent::new(name, format!("{name} agent"), move |i: AgentInput, _| {
        futures::future::ready(format!("{name}({})", i.task))
    })
}

async fn transport(url: &str, prefix: &str, jetstream: bool) -> QueueTransport {
    QueueTransport::connect(
        url,
        QueueConfig::default()
            .prefix(prefix)
            .jetstream(jetstream)
            .block(Duration::from_millis(200)),
    )
    .await
    .unwrap_or_else(|e| panic!("{url} must be running (see scripts/ensure-services): {e}"))
}

async fn stop(workers: Vec<WorkerHandle>) {
    for w in &workers {
        w.stop();
    }
    for w in workers {
        w.join().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_queue_agents_on_redis_and_jetstream_run_and_are_listed() {
    let prefix = format!("srvq{}", uuid::Uuid::new_v4().simple());
    let redis = transport(SHARED_REDIS, &prefix, false).await;
    let nats = transport("nats://127.0.0.1:4222", &prefix, true).await;
    let workers = vec![
        Worker::new(tag("researcher"), redis.clone())
            .start(CancellationToken::new())
            .await
            .unwrap(),
        Worker::new(tag("writer"), nats.clone())
            .start(CancellationToken::new())
            .await
            .unwrap(),
    ];
    let server = Server::start(&format!(
        r#"
[[agents]]
name = "researcher"
kind = "queue"
description = "researches over Redis"
transport = "{SHARED_REDIS}"
prefix = "{prefix}"
timeout_ms = 10000

[[agents]]
name = "writer"
kind = "queue"
description = "writes over NATS"
transport = "nats://127.0.0.1:4222"
jetstream = true
prefix = "{prefix}"
timeout_ms = 10000
"#
    ))
    .await;
    let c = reqwest::Client::new();
    let (status, body) = post_json(
        &c,
        &server.url("/orchestrate"),
        json!({"pattern": "sequential", "task": "tides", "agents": ["researcher", "writer"]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["output"], "writer(researcher(tides))", "{body}");

    let (status, listed) = get_json(&c, &server.url("/agents")).await;
    assert_eq!(status, 200);
    let agents = listed["agents"].as_array().cloned().unwrap_or_default();
    for name in ["researcher", "writer"] {
        let a = agents
            .iter()
            .find(|a| a["name"] == name)
            .unwrap_or_else(|| panic!("{name} listed: {listed}"));
        assert_eq!(a["kind"], "queue", "{a}");
        assert_eq!(a["source"], "config", "{a}");
        assert_eq!(a["health"], "ok", "{a}");
    }
    stop(workers).await;
    redis.remove_queue("researcher").await.unwrap();
    nats.remove_queue("writer").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_registered_in_redis_is_listed_and_routed_to() {
    let prefix = format!("srvd{}", uuid::Uuid::new_v4().simple());
    let store = RedisStore::connect(SHARED_REDIS, RedisStoreConfig::default().prefix(&prefix))
        .await
        .expect("Redis must be running at 127.0.0.1:6379");
    let registry = RedisAgentRegistry::new(&store, Duration::from_secs(3));
    let queue = transport("nats://127.0.0.1:4222", &prefix, false).await;
    let worker = Worker::new(tag("summarizer"), queue)
        .register(registry.clone())
        .start(CancellationToken::new())
        .await
        .unwrap();
    let server = Server::start(&format!(
        r#"
store = "{SHARED_REDIS}"
[redis]
prefix = "{prefix}"
[discovery]
refresh_ms = 200
"#
    ))
    .await;
    let c = reqwest::Client::new();
    let listed: Value = eventually(Duration::from_secs(10), || {
        let (c, url) = (c.clone(), server.url("/agents"));
        async move {
            let (_, body) = get_json(&c, &url).await;
            let found = body["agents"]
                .as_array()?
                .iter()
                .find(|a| a["name"] == "summarizer")
                .cloned()?;
            Some(found)
        }
    })
    .await;
    assert_eq!(listed["kind"], "queue", "{listed}");
    assert_eq!(listed["source"], "redis", "{listed}");
    assert_eq!(listed["health"], "ok", "{listed}");
    let (status, body) = post_json(
        &c,
        &server.url("/orchestrate"),
        json!({"pattern": "sequential", "task": "notes", "agents": ["summarizer"]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["output"], "summarizer(notes)", "{body}");

    // A stopped worker deregisters and drops out of /agents.
    stop(vec![worker]).await;
    eventually(Duration::from_secs(10), || {
        let (c, url) = (c.clone(), server.url("/agents"));
        async move {
            let (_, body) = get_json(&c, &url).await;
            let gone = body["agents"]
                .as_array()?
                .iter()
                .all(|a| a["name"] != "summarizer");
            gone.then_some(())
        }
    })
    .await;
}
