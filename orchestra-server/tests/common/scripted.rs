//! Scripted servers on 127.0.0.1 speaking real wire protocols: an
//! OpenAI-compatible chat-completions server and an A2A JSON-RPC server.
//! Each answers request `n` with `script(n, body)` and records what it got.

use std::sync::{Arc, Mutex};

use axum::{
    Router,
    body::{Body, Bytes},
    extract::State,
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde_json::{Value, json};

/// One scripted answer.
#[derive(Clone)]
pub enum Reply {
    /// 200 with this JSON body.
    Json(Value),
    /// An SSE stream of these `data:` payloads.
    Sse(Vec<String>),
}

type Script = dyn Fn(usize, &Value) -> Reply + Send + Sync;

#[derive(Clone)]
struct AppState {
    bodies: Arc<Mutex<Vec<Value>>>,
    headers: Arc<Mutex<Vec<HeaderMap>>>,
    script: Arc<Script>,
    card: Option<Value>,
}

/// A running scripted server.
pub struct Scripted {
    pub url: String,
    bodies: Arc<Mutex<Vec<Value>>>,
    headers: Arc<Mutex<Vec<HeaderMap>>>,
}

impl Scripted {
    /// An OpenAI-compatible server; its base URL is [`base_url`](Self::base_url).
    pub async fn openai(f: impl Fn(usize, &Value) -> Reply + Send + Sync + 'static) -> Self {
        serve(Arc::new(f), None).await
    }

    /// An A2A server whose card is built from its base URL; JSON-RPC goes to `{url}/rpc`.
    pub async fn a2a(
        card: impl FnOnce(&str) -> Value,
        f: impl Fn(usize, &Value) -> Reply + Send + Sync + 'static,
    ) -> Self {
        serve(Arc::new(f), Some(Box::new(card))).await
    }

    pub fn base_url(&self) -> String {
        format!("{}/v1", self.url)
    }

    pub fn bodies(&self) -> Vec<Value> {
        self.bodies.lock().expect("lock").clone()
    }

    pub fn header(&self, n: usize, name: &str) -> Option<String> {
        let headers = self.headers.lock().expect("lock");
        headers.get(n)?.get(name)?.to_str().ok().map(str::to_owned)
    }
}

async fn handle(State(s): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let value: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let n = {
        let mut b = s.bodies.lock().expect("lock");
        b.push(value.clone());
        s.headers.lock().expect("lock").push(headers);
        b.len() - 1
    };
    match (s.script)(n, &value) {
        Reply::Json(v) => (StatusCode::OK, axum::Json(v)).into_response(),
        Reply::Sse(events) => {
            let text: String = events.iter().map(|e| format!("data: {e}\n\n")).collect();
            Response::builder()
                .status(200)
                .header("content-type", "text/event-stream")
                .body(Body::from(text))
                .expect("response")
        }
    }
}

async fn card(State(s): State<AppState>) -> Response {
    match s.card {
        Some(c) => axum::Json(c).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

type CardFn<'a> = Box<dyn FnOnce(&str) -> Value + 'a>;

async fn serve(script: Arc<Script>, card_for: Option<CardFn<'_>>) -> Scripted {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let state = AppState {
        bodies: Arc::default(),
        headers: Arc::default(),
        script,
        card: card_for.map(|f| f(&url)),
    };
    let scripted = Scripted {
        url,
        bodies: state.bodies.clone(),
        headers: state.headers.clone(),
    };
    let app = Router::new()
        .route("/v1/chat/completions", post(handle))
        .route("/rpc", post(handle))
        .route("/.well-known/agent-card.json", get(card))
        .with_state(state);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    scripted
}

/// A non-streamed chat completion with text and usage.
pub fn completion(text: &str, prompt: u64, completion: u64) -> Value {
    json!({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
    })
}

/// A whole streamed text answer: chunks, finish, usage, `[DONE]`.
pub fn streamed_text(pieces: &[&str], prompt: u64, completion: u64) -> Reply {
    let chunk = |delta: Value, finish: Value| {
        json!({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
               "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
        .to_string()
    };
    let mut events: Vec<String> = pieces
        .iter()
        .map(|p| chunk(json!({"content": p}), Value::Null))
        .collect();
    events.push(chunk(json!({}), json!("stop")));
    events.push(
        json!({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": [],
               "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                         "total_tokens": prompt + completion}})
        .to_string(),
    );
    events.push("[DONE]".into());
    Reply::Sse(events)
}

/// A JSON-RPC success response.
pub fn rpc_result(request: &Value, result: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": request["id"].clone(), "result": result})
}

/// An A2A v0.3 agent card.
pub fn v03_card(name: &str, description: &str) -> impl FnOnce(&str) -> Value {
    let (name, description) = (name.to_owned(), description.to_owned());
    move |base: &str| {
        json!({
            "name": name, "description": description,
            "url": format!("{base}/rpc"), "version": "1.0.0", "protocolVersion": "0.3.0",
            "preferredTransport": "JSONRPC",
            "capabilities": {"streaming": false},
            "defaultInputModes": ["text/plain"], "defaultOutputModes": ["text/plain"],
            "skills": []
        })
    }
}

/// A completed A2A v0.3 task with one text artifact.
pub fn completed_task(id: &str, text: &str) -> Value {
    json!({"kind": "task", "id": id, "contextId": "ctx-1",
           "status": {"state": "completed"},
           "artifacts": [{"artifactId": "a1", "parts": [{"kind": "text", "text": text}]}]})
}
