//! The run queue in `/metrics`: the depth, pending and dead-letter gauges
//! read from the shared Redis at scrape time, and the enqueued, completed
//! and failed-attempt counters of each instance. Needs the shared Redis
//! (`scripts/ensure-services`); each test uses a key prefix of its own.

mod common;

use std::time::Duration;

use common::{AgentService, SHARED_REDIS, Server, eventually, get_json, post_json, unique_prefix};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(20);

fn config(prefix: &str, svc: &AgentService, workers: usize) -> String {
    format!(
        r#"
store = "{SHARED_REDIS}"

[redis]
prefix = "{prefix}"

[queue]
workers = {workers}
claim_idle_ms = 300
max_deliveries = 1

[[agents]]
name = "echo"
kind = "http"
url = "{}"
"#,
        svc.url("/echo")
    )
}

/// The value of one sample (`name` with its labels, as rendered), if present.
async fn sample(c: &reqwest::Client, server: &Server, name: &str) -> Option<f64> {
    let text = c
        .get(server.url("/metrics"))
        .send()
        .await
        .expect("scrape")
        .text()
        .await
        .expect("metrics text");
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

async fn until_sample(c: &reqwest::Client, server: &Server, name: &str, value: f64) {
    eventually(WAIT, || async move {
        (sample(c, server, name).await == Some(value)).then_some(())
    })
    .await;
}

#[tokio::test]
async fn queue_depth_pending_dead_letters_and_run_counts_are_in_metrics() {
    let svc = AgentService::start().await;
    let prefix = unique_prefix("queue-metrics");
    let api = Server::start(&config(&prefix, &svc, 0)).await;
    let c = reqwest::Client::new();

    until_sample(&c, &api, "orchestra_queue_depth", 0.0).await;
    let mut runs = Vec::new();
    for task in ["one", "two"] {
        let (status, accepted) = post_json(
            &c,
            &api.url("/orchestrate"),
            json!({"pattern": "sequential", "task": task, "agents": ["echo"], "mode": "async"}),
        )
        .await;
        assert_eq!(status, 202, "{accepted}");
        runs.push(accepted["run_id"].as_str().unwrap().to_owned());
    }
    // No worker on this instance: both wait in the queue.
    assert_eq!(sample(&c, &api, "orchestra_queue_depth").await, Some(2.0));
    assert_eq!(sample(&c, &api, "orchestra_queue_pending").await, Some(0.0));
    assert_eq!(
        sample(&c, &api, "orchestra_queue_dead_letters").await,
        Some(0.0)
    );
    assert_eq!(
        sample(&c, &api, "orchestra_queue_runs_enqueued_total").await,
        Some(2.0)
    );

    // A worker instance takes and finishes them.
    let worker = Server::start(&config(&prefix, &svc, 1)).await;
    for run in &runs {
        eventually(WAIT, || async {
            let (_, r) = get_json(&c, &api.url(&format!("/runs/{run}"))).await;
            (r["status"] == "completed").then_some(())
        })
        .await;
    }
    until_sample(&c, &api, "orchestra_queue_depth", 0.0).await;
    assert_eq!(
        sample(
            &c,
            &worker,
            "orchestra_queue_runs_completed_total{status=\"completed\"}"
        )
        .await,
        Some(2.0)
    );
    assert_eq!(
        sample(
            &c,
            &api,
            "orchestra_queue_runs_completed_total{status=\"completed\"}"
        )
        .await,
        None,
        "the API-only instance executed nothing"
    );

    // An entry no worker can execute fails its only allowed attempt and is
    // dead-lettered.
    let out = std::process::Command::new("redis-cli")
        .args([
            "-u",
            SHARED_REDIS,
            "XADD",
            &format!("{prefix}:runs:queue"),
            "*",
        ])
        .args([
            "run_id",
            "unreadable-1",
            "request",
            r#"{"pattern":"sequential"}"#,
        ])
        .output()
        .expect("redis-cli");
    assert!(out.status.success(), "{out:?}");
    until_sample(&c, &api, "orchestra_queue_dead_letters", 1.0).await;
    assert_eq!(sample(&c, &api, "orchestra_queue_depth").await, Some(0.0));
    assert_eq!(
        sample(&c, &worker, "orchestra_queue_attempts_failed_total").await,
        Some(1.0)
    );
}
