//! Scripted servers on 127.0.0.1 for the `llm_*` and `a2a_*` tests: an
//! OpenAI-compatible chat-completions server and an A2A JSON-RPC server,
//! both speaking the real wire protocol (JSON bodies, SSE streams) and
//! recording what they were sent.
#![allow(dead_code)]

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    Router,
    body::{Body, Bytes},
    extract::State,
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use futures::StreamExt;
use serde_json::{Value, json};
use tokio::{net::TcpListener, sync::Notify, time::Instant};

/// One scripted answer.
#[derive(Clone)]
pub enum Reply {
    /// 200 with this JSON body.
    Json(Value),
    /// Any status, headers and raw body.
    Raw {
        status: u16,
        headers: Vec<(&'static str, String)>,
        body: String,
    },
    /// An SSE stream of these `data:` payloads, then the end of the body.
    Sse(Vec<String>),
    /// An SSE stream of these payloads, then the connection breaks.
    SseCut(Vec<String>),
    /// An SSE stream of these payloads, then keep-alive comments until the
    /// client goes away (observed through [`Recorded::closed`]).
    SseHang(Vec<String>),
}

/// What a server saw.
#[derive(Default)]
pub struct Recorded {
    pub bodies: Mutex<Vec<Value>>,
    pub headers: Mutex<Vec<HeaderMap>>,
    pub times: Mutex<Vec<Instant>>,
    /// Notified when a hanging stream's client has gone away.
    pub closed: Notify,
    /// Notified on every request.
    pub arrived: Notify,
}

impl Recorded {
    pub fn bodies(&self) -> Vec<Value> {
        self.bodies.lock().unwrap().clone()
    }
    pub fn count(&self) -> usize {
        self.bodies.lock().unwrap().len()
    }
}

type Script = dyn Fn(usize, &Value) -> Reply + Send + Sync;
type CardFn = Box<dyn FnOnce(&str) -> Value>;

#[derive(Clone)]
struct AppState {
    rec: Arc<Recorded>,
    script: Arc<Script>,
    card: Option<Value>,
}

/// A running scripted server.
pub struct Server {
    pub url: String,
    pub rec: Arc<Recorded>,
}

/// Notifies `closed` when dropped: hyper drops a response body when its
/// connection ends, so this is how the server sees a client go away.
struct DropSignal(Arc<Recorded>);
impl Drop for DropSignal {
    fn drop(&mut self) {
        self.0.closed.notify_one();
    }
}

fn sse_response(
    stream: impl futures::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static,
) -> Response {
    Response::builder()
        .status(200)
        .header("content-type", "text/event-stream")
        .header("cache-control", "no-cache")
        .body(Body::from_stream(stream))
        .unwrap()
}

fn event(data: &str) -> Result<Bytes, std::io::Error> {
    Ok(Bytes::from(format!("data: {data}\n\n")))
}

fn render(reply: Reply, rec: Arc<Recorded>) -> Response {
    match reply {
        Reply::Json(v) => (StatusCode::OK, axum::Json(v)).into_response(),
        Reply::Raw {
            status,
            headers,
            body,
        } => {
            let mut b = Response::builder()
                .status(status)
                .header("content-type", "application/json");
            for (k, v) in headers {
                b = b.header(k, v);
            }
            b.body(Body::from(body)).unwrap()
        }
        Reply::Sse(events) => {
            let items: Vec<_> = events.iter().map(|e| event(e)).collect();
            sse_response(futures::stream::iter(items))
        }
        Reply::SseCut(events) => {
            let items: Vec<_> = events.iter().map(|e| event(e)).collect();
            // Yielding once lets hyper flush what was sent so far; the error
            // then aborts the connection mid-body.
            let cut = futures::stream::once(async {
                tokio::task::yield_now().await;
                Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionReset,
                    "scripted cut",
                ))
            });
            sse_response(futures::stream::iter(items).chain(cut))
        }
        Reply::SseHang(events) => {
            let items: Vec<_> = events.iter().map(|e| event(e)).collect();
            let guard = Arc::new(DropSignal(rec));
            let pings = futures::stream::unfold(guard, |g| async move {
                tokio::time::sleep(Duration::from_millis(20)).await;
                Some((Ok(Bytes::from_static(b": ping\n\n")), g))
            });
            sse_response(futures::stream::iter(items).chain(pings))
        }
    }
}

async fn handle(State(s): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let value: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let n = {
        let mut b = s.rec.bodies.lock().unwrap();
        b.push(value.clone());
        s.rec.headers.lock().unwrap().push(headers);
        s.rec.times.lock().unwrap().push(Instant::now());
        b.len() - 1
    };
    s.rec.arrived.notify_one();
    render((s.script)(n, &value), s.rec.clone())
}

async fn card(State(s): State<AppState>) -> Response {
    match s.card {
        Some(c) => axum::Json(c).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn serve(script: Arc<Script>, card_for: Option<CardFn>) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let rec = Arc::new(Recorded::default());
    let state = AppState {
        rec: rec.clone(),
        script,
        card: card_for.map(|f| f(&url)),
    };
    let app = Router::new()
        .route("/v1/chat/completions", post(handle))
        .route("/rpc", post(handle))
        .route("/.well-known/agent-card.json", get(card))
        .with_state(state);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Server { url, rec }
}

impl Server {
    /// An OpenAI-compatible server answering request `n` with `script[n]`
    /// (a 500 once the script is used up). Its base URL is `{url}/v1`.
    pub async fn openai(script: Vec<Reply>) -> Self {
        Self::openai_with(move |n, _| {
            script.get(n).cloned().unwrap_or(Reply::Raw {
                status: 500,
                headers: vec![],
                body: r#"{"error":{"message":"script exhausted"}}"#.into(),
            })
        })
        .await
    }

    /// An OpenAI-compatible server answering with `f(request_index, body)`.
    pub async fn openai_with(f: impl Fn(usize, &Value) -> Reply + Send + Sync + 'static) -> Self {
        serve(Arc::new(f), None).await
    }

    /// An A2A server: the card is built from the server's base URL; JSON-RPC
    /// requests to `{url}/rpc` are answered by `f(request_index, body)`.
    pub async fn a2a(
        card: impl FnOnce(&str) -> Value + 'static,
        f: impl Fn(usize, &Value) -> Reply + Send + Sync + 'static,
    ) -> Self {
        serve(Arc::new(f), Some(Box::new(card))).await
    }

    pub fn base_url(&self) -> String {
        format!("{}/v1", self.url)
    }
}

/// A non-streamed chat completion with text and usage.
pub fn completion(text: &str, prompt: u64, completion: u64) -> Value {
    json!({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
    })
}

/// A non-streamed completion calling tools: (id, name, arguments JSON text).
pub fn tool_calls(calls: &[(&str, &str, &str)]) -> Value {
    let calls: Vec<Value> = calls
        .iter()
        .map(|(id, name, args)| json!({"id": id, "type": "function", "function": {"name": name, "arguments": args}}))
        .collect();
    json!({
        "id": "chatcmpl-2", "object": "chat.completion", "created": 1, "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": null, "tool_calls": calls},
                     "finish_reason": "tool_calls"}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
    })
}

/// A streamed chunk carrying text.
pub fn text_chunk(text: &str) -> String {
    json!({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
           "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": null}]})
    .to_string()
}

/// A streamed chunk with a finish reason.
pub fn finish_chunk(reason: &str) -> String {
    json!({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
           "choices": [{"index": 0, "delta": {}, "finish_reason": reason}]})
    .to_string()
}

/// The final usage-only chunk of `stream_options.include_usage`.
pub fn usage_chunk(prompt: u64, completion: u64) -> String {
    json!({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": [],
           "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}})
    .to_string()
}

/// A whole streamed text answer: chunks, finish, usage, `[DONE]`.
pub fn streamed_text(pieces: &[&str], prompt: u64, completion: u64) -> Reply {
    let mut events: Vec<String> = pieces.iter().map(|p| text_chunk(p)).collect();
    events.push(finish_chunk("stop"));
    events.push(usage_chunk(prompt, completion));
    events.push("[DONE]".into());
    Reply::Sse(events)
}

/// A JSON-RPC success response.
pub fn rpc_result(request: &Value, result: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": request["id"].clone(), "result": result})
}

/// Waits (bounded) for a notification; panics if it never comes.
pub async fn within(what: &str, fut: impl std::future::Future<Output = ()>) {
    tokio::time::timeout(Duration::from_secs(10), fut)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"));
}
