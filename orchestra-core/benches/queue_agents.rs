//! A 5-agent sequential run whose agents live in other tasks behind HTTP,
//! Redis Streams, core NATS and NATS JetStream, measured side by side, plus
//! one run that mixes all four.
//!
//! Needs Redis at 127.0.0.1:6379 and NATS with JetStream at 127.0.0.1:4222
//! (`scripts/ensure-services`). Keys, subjects and streams go under a fresh
//! prefix and are removed afterwards.
//!
//! ```sh
//! cargo bench -p orchestra-core --features redis,nats,http-agents --bench queue_agents
//! ```
//!
//! Every agent answers at once with a short text, so the figures are the
//! cost of the transport: per run, 5 requests and 5 replies (each carrying
//! the growing conversation) plus the orchestration itself, on the memory
//! store. One worker per agent, in the same process as the orchestrator.

use std::{sync::Arc, time::Duration};

use axum::{Json, Router, routing::post};
use criterion::{Criterion, criterion_group, criterion_main};
use orchestra_core::{
    AgentInput, FnAgent, Orchestrator, RunRequest, RunStatus,
    agents::{
        http::HttpAgent,
        queue::{QueueAgent, QueueConfig, QueueTransport},
    },
    worker::{Worker, WorkerHandle},
};
use serde_json::{Value, json};
use tokio::runtime::Runtime;
use tokio_util::sync::CancellationToken;

const AGENTS: [&str; 5] = ["a", "b", "c", "d", "e"];

/// One HTTP agent service answering every agent name.
async fn http_service() -> String {
    let app = Router::new().route(
        "/invoke",
        post(|Json(body): Json<Value>| async move {
            let agent = body["agent"].as_str().unwrap_or_default().to_owned();
            Json(json!({"content": format!("{agent} done")}))
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/invoke")
}

struct Setup {
    orch: Orchestrator,
    workers: Vec<WorkerHandle>,
    transports: Vec<QueueTransport>,
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
    .unwrap_or_else(|e| panic!("{url} must be running (scripts/ensure-services): {e}"))
}

async fn setup() -> Setup {
    let prefix = format!("bench{}", uuid::Uuid::new_v4().simple());
    let http = http_service().await;
    let redis = transport("redis://127.0.0.1:6379", &prefix, false).await;
    let nats = transport("nats://127.0.0.1:4222", &prefix, false).await;
    let js = transport("nats://127.0.0.1:4222", &prefix, true).await;
    let orch = Orchestrator::new();
    let mut workers = Vec::new();
    for (kind, t) in [("redis", &redis), ("nats", &nats), ("js", &js)] {
        for name in AGENTS {
            let agent_name = format!("{kind}_{name}");
            orch.register(
                QueueAgent::builder(&agent_name, t.clone())
                    .build()
                    .expect("agent"),
            );
            let worker = FnAgent::new(&agent_name, "", move |_: AgentInput, _| async move {
                format!("{name} done")
            });
            workers.push(
                Worker::new(worker, t.clone())
                    .start(CancellationToken::new())
                    .await
                    .expect("worker"),
            );
        }
    }
    for name in AGENTS {
        orch.register(
            HttpAgent::builder(format!("http_{name}"), &http)
                .build()
                .expect("http agent"),
        );
    }
    Setup {
        orch,
        workers,
        transports: vec![redis, nats, js],
    }
}

fn bench(c: &mut Criterion) {
    let rt = Runtime::new().expect("runtime");
    let s = Arc::new(rt.block_on(setup()));
    let mut group = c.benchmark_group("sequential_5_agents");
    group
        .sample_size(30)
        .measurement_time(Duration::from_secs(5))
        .warm_up_time(Duration::from_secs(1));
    let runs: [(&str, [String; 5]); 5] = [
        ("http", AGENTS.map(|a| format!("http_{a}"))),
        ("redis", AGENTS.map(|a| format!("redis_{a}"))),
        ("nats", AGENTS.map(|a| format!("nats_{a}"))),
        ("jetstream", AGENTS.map(|a| format!("js_{a}"))),
        (
            "mixed",
            [
                "http_a".into(),
                "redis_b".into(),
                "nats_c".into(),
                "js_d".into(),
                "http_e".into(),
            ],
        ),
    ];
    for (label, agents) in runs {
        let s = s.clone();
        group.bench_function(label, |b| {
            b.to_async(&rt).iter(|| {
                let s = s.clone();
                let agents = agents.clone();
                async move {
                    let r = s
                        .orch
                        .run(RunRequest::new("sequential", "go").agents(agents))
                        .await
                        .expect("run");
                    assert_eq!(r.status, RunStatus::Completed, "{:?}", r.error);
                }
            });
        });
    }
    group.finish();
    rt.block_on(async {
        let Ok(s) = Arc::try_unwrap(s) else { return };
        for w in &s.workers {
            w.stop();
        }
        for w in s.workers {
            let _ = w.join().await;
        }
        for t in &s.transports {
            for name in AGENTS {
                for kind in ["redis", "nats", "js"] {
                    let _ = t.remove_queue(&format!("{kind}_{name}")).await;
                }
            }
        }
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
