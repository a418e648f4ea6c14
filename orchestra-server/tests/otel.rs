//! OpenTelemetry (feature `otel`): spans follow the GenAI semantic
//! conventions and HTTP agent calls carry the W3C `traceparent` of their
//! `invoke_agent` span. Spans are collected in memory through the same
//! tracing-opentelemetry layer the server installs.
//!
//! `cargo test -p orchestra-server --features otel --test otel`
#![cfg(feature = "otel")]

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU32, Ordering},
    },
};

use async_trait::async_trait;
use axum::{Json, Router, http::HeaderMap, routing::post};
use opentelemetry::{Value as OtelValue, trace::TracerProvider};
use opentelemetry_sdk::{
    error::OTelSdkResult,
    trace::{SdkTracerProvider, SpanData, SpanExporter},
};
use orchestra_core::{
    AgentError, Orchestrator, RunRequest, RunStatus, Usage,
    agents::http::HttpAgent,
    llm::{ChatCall, ChatModel, ChatRequest, ChatResponse, LlmAgent, Tool, ToolCall},
};
use serde_json::{Value, json};
use tracing_subscriber::prelude::*;

#[derive(Debug, Clone, Default)]
struct Collect(Arc<Mutex<Vec<SpanData>>>);

impl SpanExporter for Collect {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        self.0.lock().expect("spans").extend(batch);
        Ok(())
    }
}

/// Installs a collecting tracer for this thread; returns the spans' store.
fn collect_spans() -> (
    Collect,
    SdkTracerProvider,
    tracing::subscriber::DefaultGuard,
) {
    let spans = Collect::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(spans.clone())
        .build();
    let tracer = provider.tracer("test");
    let subscriber =
        tracing_subscriber::registry().with(tracing_opentelemetry::layer().with_tracer(tracer));
    let guard = tracing::subscriber::set_default(subscriber);
    (spans, provider, guard)
}

fn named<'a>(spans: &'a [SpanData], name: &str) -> &'a SpanData {
    spans.iter().find(|s| s.name == name).unwrap_or_else(|| {
        panic!(
            "no span '{name}' among {:?}",
            spans.iter().map(|s| &s.name).collect::<Vec<_>>()
        )
    })
}

fn attrs(span: &SpanData) -> HashMap<String, OtelValue> {
    span.attributes
        .iter()
        .map(|kv| (kv.key.as_str().to_owned(), kv.value.clone()))
        .collect()
}

#[tokio::test]
async fn an_http_agent_call_carries_the_traceparent_of_its_invoke_agent_span() {
    let (spans, provider, _guard) = collect_spans();
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let s = seen.clone();
    let app = Router::new().route(
        "/invoke",
        post(move |headers: HeaderMap, Json(_): Json<Value>| {
            let s = s.clone();
            async move {
                let tp = headers
                    .get("traceparent")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_owned();
                s.lock().expect("seen").push(tp);
                Json(json!({"content": "found", "usage": {"prompt_tokens": 5, "completion_tokens": 7}}))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });

    let orch = Orchestrator::new();
    orch.register(
        HttpAgent::builder("search", format!("http://{addr}/invoke"))
            .build()
            .expect("agent"),
    );
    let r = orch
        .run(RunRequest::new("sequential", "tides").agents(["search"]))
        .await
        .expect("run");
    assert_eq!(r.status, RunStatus::Completed);
    provider.force_flush().expect("flush");
    let spans = spans.0.lock().expect("spans").clone();

    let invoke = named(&spans, "invoke_agent search");
    let run = named(&spans, "orchestrate sequential");
    assert_eq!(invoke.parent_span_id, run.span_context.span_id());
    let a = attrs(invoke);
    assert_eq!(a["gen_ai.operation.name"].as_str(), "invoke_agent");
    assert_eq!(a["gen_ai.agent.name"].as_str(), "search");
    assert_eq!(a["gen_ai.conversation.id"].as_str(), r.session_id.as_str());
    assert_eq!(a["orchestra.run_id"].as_str(), r.run_id.as_str());
    assert_eq!(a["gen_ai.usage.input_tokens"], OtelValue::I64(5));
    assert_eq!(a["gen_ai.usage.output_tokens"], OtelValue::I64(7));

    let expected = format!(
        "00-{:032x}-{:016x}-01",
        invoke.span_context.trace_id(),
        invoke.span_context.span_id()
    );
    assert_eq!(seen.lock().expect("seen").as_slice(), [expected]);
}

/// Calls the `clock` tool once, then answers.
struct ToolThenAnswer(AtomicU32);

#[async_trait]
impl ChatModel for ToolThenAnswer {
    fn model(&self) -> &str {
        "scripted-1"
    }

    async fn chat(
        &self,
        _request: &ChatRequest,
        _call: ChatCall<'_>,
    ) -> Result<ChatResponse, AgentError> {
        if self.0.fetch_add(1, Ordering::SeqCst) == 0 {
            return Ok(ChatResponse {
                tool_calls: vec![ToolCall {
                    id: "call-1".into(),
                    name: "clock".into(),
                    arguments: "{}".into(),
                }],
                finish_reason: Some("tool_calls".into()),
                usage: Usage::new(10, 2),
                ..ChatResponse::default()
            });
        }
        Ok(ChatResponse {
            usage: Usage::new(12, 4),
            ..ChatResponse::text("noon")
        })
    }
}

#[tokio::test]
async fn an_llm_agent_emits_chat_and_execute_tool_spans_inside_invoke_agent() {
    let (spans, provider, _guard) = collect_spans();
    let orch = Orchestrator::new();
    orch.register(
        LlmAgent::new(
            "timekeeper",
            "tells the time",
            Arc::new(ToolThenAnswer(AtomicU32::new(0))),
        )
        .tool(Tool::new(
            "clock",
            "the time",
            json!({"type": "object"}),
            |_| async { Ok(json!("12:00")) },
        )),
    );
    let r = orch
        .run(RunRequest::new("sequential", "time?").agents(["timekeeper"]))
        .await
        .expect("run");
    assert_eq!(r.output.as_deref(), Some("noon"));
    provider.force_flush().expect("flush");
    let spans = spans.0.lock().expect("spans").clone();

    let invoke = named(&spans, "invoke_agent timekeeper");
    let chats: Vec<&SpanData> = spans
        .iter()
        .filter(|s| s.name == "chat scripted-1")
        .collect();
    assert_eq!(chats.len(), 2);
    for c in &chats {
        assert_eq!(c.parent_span_id, invoke.span_context.span_id());
        let a = attrs(c);
        assert_eq!(a["gen_ai.operation.name"].as_str(), "chat");
        assert_eq!(a["gen_ai.request.model"].as_str(), "scripted-1");
    }
    assert_eq!(
        attrs(chats[0])["gen_ai.usage.input_tokens"],
        OtelValue::I64(10)
    );
    assert_eq!(
        attrs(chats[0])["gen_ai.response.finish_reasons"].as_str(),
        "tool_calls"
    );
    let tool = named(&spans, "execute_tool clock");
    assert_eq!(tool.parent_span_id, invoke.span_context.span_id());
    let a = attrs(tool);
    assert_eq!(a["gen_ai.tool.name"].as_str(), "clock");
    assert_eq!(a["gen_ai.tool.call.id"].as_str(), "call-1");
    // The agent span adds up the usage of both model calls.
    assert_eq!(
        attrs(invoke)["gen_ai.usage.input_tokens"],
        OtelValue::I64(22)
    );
    assert_eq!(
        attrs(invoke)["gen_ai.usage.output_tokens"],
        OtelValue::I64(6)
    );
}
