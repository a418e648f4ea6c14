//! Cancellation and deadlines reach the wire: when a run is cancelled or
//! times out, the HTTP request of an `HttpAgent` or an `LlmAgent` is
//! dropped, and the service sees its connection close (its handler future is
//! dropped mid-request).
#![cfg(feature = "http-agents")]

use std::{sync::Arc, time::Duration};

use axum::{Json, Router, routing::post};
use futures::StreamExt;
use orchestra_core::{
    Orchestrator, RunRequest, RunStatus,
    agents::{
        http::HttpAgent,
        openai::{OpenAiChatModel, OpenAiConfig},
    },
    llm::LlmAgent,
};
use serde_json::Value;
use tokio::sync::mpsc;

/// Reports on `closed` when dropped before `done`.
struct Watch {
    closed: mpsc::UnboundedSender<&'static str>,
    done: bool,
}

impl Drop for Watch {
    fn drop(&mut self) {
        if !self.done {
            let _ = self.closed.send("closed");
        }
    }
}

/// A service on 127.0.0.1 whose every route accepts a call, reports it on
/// `started` and never answers.
async fn hanging_service() -> (
    String,
    mpsc::UnboundedReceiver<Value>,
    mpsc::UnboundedReceiver<&'static str>,
) {
    let (started_tx, started) = mpsc::unbounded_channel();
    let (closed_tx, closed) = mpsc::unbounded_channel();
    let handler = move |Json(body): Json<Value>| {
        let started = started_tx.clone();
        let closed = closed_tx.clone();
        async move {
            let mut watch = Watch {
                closed,
                done: false,
            };
            let _ = started.send(body);
            std::future::pending::<()>().await;
            watch.done = true;
            Json(Value::Null)
        }
    };
    let app = Router::new()
        .route("/invoke", post(handler.clone()))
        .route("/v1/chat/completions", post(handler));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), started, closed)
}

async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), f)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

fn orchestrator(base: &str) -> Orchestrator {
    let orch = Orchestrator::new();
    orch.register(
        HttpAgent::builder("service", format!("{base}/invoke"))
            .build()
            .expect("http agent"),
    );
    let mut config = OpenAiConfig::new(format!("{base}/v1"), "m");
    config.stream = false;
    let model = Arc::new(OpenAiChatModel::new(config).expect("model"));
    orch.register(LlmAgent::new("llm", "asks a model", model));
    orch
}

#[tokio::test]
async fn a_cancelled_run_closes_the_agent_request() {
    let (base, mut started, mut closed) = hanging_service().await;
    let orch = orchestrator(&base);
    for agent in ["service", "llm"] {
        let mut stream = orch
            .stream(RunRequest::new("sequential", "t").agents([agent]))
            .expect("stream");
        let body = within("the request to arrive", started.recv()).await;
        assert!(body.is_some(), "{agent}");
        stream.cancel();
        assert_eq!(
            within("the connection to close", closed.recv()).await,
            Some("closed"),
            "{agent}"
        );
        let mut last = None;
        while let Some(ev) = stream.next().await {
            last = ev.kind.result().map(|r| r.status);
        }
        assert_eq!(last, Some(RunStatus::Cancelled), "{agent}");
    }
}

#[tokio::test]
async fn a_run_past_its_deadline_closes_the_agent_request() {
    let (base, mut started, mut closed) = hanging_service().await;
    let orch = orchestrator(&base);
    for agent in ["service", "llm"] {
        let run = orch.run(
            RunRequest::new("sequential", "t")
                .agents([agent])
                .option("timeout_ms", 300),
        );
        let r = within("the run to time out", run).await.expect("run");
        assert_eq!(r.status, RunStatus::TimedOut, "{agent}");
        assert!(started.try_recv().is_ok(), "{agent}: the request was sent");
        assert_eq!(
            within("the connection to close", closed.recv()).await,
            Some("closed"),
            "{agent}"
        );
    }
}
