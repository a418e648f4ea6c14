//! Helpers shared by the integration tests: the real `orchestra-server`
//! binary on a free port, small real agent services on 127.0.0.1, and an
//! SSE reader.

#![allow(dead_code)]

pub mod scripted;

use std::{
    net::{SocketAddr, TcpListener as StdListener},
    path::PathBuf,
    process::{Child, Command, ExitStatus, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU32, Ordering},
    },
    time::{Duration, Instant},
};

use axum::{Json, Router, extract::State, http::StatusCode, response::IntoResponse, routing::post};
use futures::StreamExt;
use serde_json::{Value, json};
use tokio::sync::{Notify, mpsc};

/// The `orchestra-server` binary, started with a config file; killed on drop.
pub struct Server {
    child: Child,
    pub base: String,
    pub addr: SocketAddr,
    config_path: PathBuf,
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

pub fn free_port() -> u16 {
    let l = StdListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().expect("local addr").port()
}

impl Server {
    /// Starts the binary with this TOML config and waits until `/health` answers.
    pub async fn start(config_toml: &str) -> Self {
        Self::start_with_env(config_toml, &[]).await
    }

    pub async fn start_with_env(config_toml: &str, env: &[(&str, &str)]) -> Self {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let config_path = std::env::temp_dir().join(format!(
            "orchestra-server-test-{}-{n}.toml",
            std::process::id()
        ));
        std::fs::write(&config_path, config_toml).expect("write config");
        let port = free_port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_orchestra-server"));
        cmd.arg("--config")
            .arg(&config_path)
            .arg("--bind")
            .arg(addr.to_string())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("start orchestra-server");
        let server = Self {
            child,
            base: format!("http://{addr}"),
            addr,
            config_path,
        };
        server.wait_ready().await;
        server
    }

    async fn wait_ready(&self) {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) = client.get(self.url("/health")).send().await
                && (r.status().is_success() || r.status().as_u16() == 503)
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "orchestra-server did not become ready"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Kills the server process with SIGKILL (no shutdown, no cleanup), as a crash would.
    pub fn kill(&mut self) {
        self.child.kill().expect("kill(SIGKILL)");
        let _ = self.child.wait();
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }

    /// Sends SIGTERM to the server process.
    pub fn sigterm(&self) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("pid fits");
        // SAFETY: kill(2) with a pid we spawned and own; no memory is shared.
        let rc = unsafe { libc::kill(pid, libc::SIGTERM) };
        assert_eq!(rc, 0, "kill(SIGTERM) failed");
    }

    /// Waits (bounded) for the process to exit.
    pub async fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "server did not exit in {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.config_path);
    }
}

/// POSTs JSON and returns status and JSON body.
pub async fn post_json(client: &reqwest::Client, url: &str, body: Value) -> (u16, Value) {
    let r = client.post(url).json(&body).send().await.expect("request");
    let status = r.status().as_u16();
    let body = r.json::<Value>().await.unwrap_or(Value::Null);
    (status, body)
}

pub async fn get_json(client: &reqwest::Client, url: &str) -> (u16, Value) {
    let r = client.get(url).send().await.expect("request");
    let status = r.status().as_u16();
    let body = r.json::<Value>().await.unwrap_or(Value::Null);
    (status, body)
}

/// GETs a text body (the Prometheus page).
pub async fn get_text(client: &reqwest::Client, url: &str) -> String {
    let r = client.get(url).send().await.expect("request");
    r.text().await.expect("text body")
}

/// One parsed SSE event.
#[derive(Debug, Clone)]
pub struct SseEvent {
    pub event: String,
    pub id: String,
    pub data: Value,
}

/// Reads SSE events from a streaming response, one at a time.
pub struct SseReader {
    body: futures::stream::BoxStream<'static, reqwest::Result<bytes_alias::Bytes>>,
    buf: String,
    /// Keep-alive comments seen so far.
    pub comments: usize,
}

mod bytes_alias {
    pub use axum::body::Bytes;
}

impl SseReader {
    pub fn new(response: reqwest::Response) -> Self {
        Self {
            body: response.bytes_stream().boxed(),
            buf: String::new(),
            comments: 0,
        }
    }

    /// The next event, or `None` when the stream ends.
    pub async fn next(&mut self) -> Option<SseEvent> {
        loop {
            while let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let mut event = String::new();
                let mut id = String::new();
                let mut data = String::new();
                let mut comment_only = true;
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        event = v.trim().to_owned();
                        comment_only = false;
                    } else if let Some(v) = line.strip_prefix("id:") {
                        id = v.trim().to_owned();
                        comment_only = false;
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.strip_prefix(' ').unwrap_or(v));
                        comment_only = false;
                    }
                }
                if comment_only {
                    self.comments += 1;
                    continue;
                }
                let data = serde_json::from_str(&data).expect("SSE data is JSON");
                return Some(SseEvent { event, id, data });
            }
            match self.body.next().await {
                Some(Ok(chunk)) => self.buf.push_str(&String::from_utf8_lossy(&chunk)),
                Some(Err(_)) | None => return None,
            }
        }
    }

    /// Every remaining event.
    pub async fn collect(mut self) -> Vec<SseEvent> {
        let mut out = Vec::new();
        while let Some(e) = self.next().await {
            out.push(e);
        }
        out
    }
}

/// What the test agent services saw.
#[derive(Default)]
pub struct Seen {
    pub requests: Mutex<Vec<Value>>,
}

/// A real HTTP agent service on 127.0.0.1 with several behaviours, one per path:
///
/// - `/echo`: `{"content": "<name>: <task>", "data": {"metadata": ..}, "state_patch": {"<name>": true}}`
/// - `/approve`: `APPROVED`
/// - `/handoff/{to}`: hands off to `to`
/// - `/status/{code}`: answers with that HTTP status
/// - `/garbage`: not JSON
/// - `/block`: reports the call on `started`, then waits for `release`
///   (reports on `aborted` if the call is dropped first)
pub struct AgentService {
    pub addr: SocketAddr,
    pub seen: Arc<Seen>,
    pub started: mpsc::UnboundedReceiver<Value>,
    pub aborted: mpsc::UnboundedReceiver<String>,
    pub release: Arc<Notify>,
}

#[derive(Clone)]
struct ServiceState {
    seen: Arc<Seen>,
    started: mpsc::UnboundedSender<Value>,
    aborted: mpsc::UnboundedSender<String>,
    release: Arc<Notify>,
}

struct AbortGuard {
    tx: Option<mpsc::UnboundedSender<String>>,
    run_id: String,
}

impl Drop for AbortGuard {
    fn drop(&mut self) {
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(self.run_id.clone());
        }
    }
}

impl AgentService {
    pub async fn start() -> Self {
        let (started_tx, started) = mpsc::unbounded_channel();
        let (aborted_tx, aborted) = mpsc::unbounded_channel();
        let state = ServiceState {
            seen: Arc::new(Seen::default()),
            started: started_tx,
            aborted: aborted_tx,
            release: Arc::new(Notify::new()),
        };
        let app = Router::new()
            .route("/echo", post(echo))
            .route("/approve", post(approve))
            .route("/ask", post(ask))
            .route("/handoff/{to}", post(handoff))
            .route("/status/{code}", post(status))
            .route("/garbage", post(garbage))
            .route("/block", post(block))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind agent service");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            addr,
            seen: state.seen,
            started,
            aborted,
            release: state.release,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn requests(&self) -> Vec<Value> {
        self.seen.requests.lock().expect("lock").clone()
    }
}

async fn echo(State(s): State<ServiceState>, Json(body): Json<Value>) -> Json<Value> {
    s.seen.requests.lock().expect("lock").push(body.clone());
    let name = body["agent"].as_str().unwrap_or("?").to_owned();
    Json(json!({
        "content": format!("{name}: {}", body["task"].as_str().unwrap_or("")),
        "data": {"metadata": body["metadata"], "messages_seen": body["messages"].as_array().map_or(0, Vec::len)},
        "state_patch": {name: true},
        "usage": {"prompt_tokens": 3, "completion_tokens": 4}
    }))
}

async fn approve(State(s): State<ServiceState>, Json(body): Json<Value>) -> Json<Value> {
    s.seen.requests.lock().expect("lock").push(body);
    Json(json!({"content": "APPROVED"}))
}

/// Asks a person for a number, then answers with it.
async fn ask(State(s): State<ServiceState>, Json(body): Json<Value>) -> Json<Value> {
    s.seen.requests.lock().expect("lock").push(body.clone());
    match body.get("answer") {
        Some(answer) => Json(json!({"content": format!("heard {answer}")})),
        None => Json(json!({
            "input_required": {"prompt": "How many?", "schema": {"type": "integer"}}
        })),
    }
}

async fn handoff(
    State(s): State<ServiceState>,
    axum::extract::Path(to): axum::extract::Path<String>,
    Json(body): Json<Value>,
) -> Json<Value> {
    s.seen.requests.lock().expect("lock").push(body);
    Json(json!({"handoff": {"to": to, "reason": "specialist needed"}}))
}

async fn status(axum::extract::Path(code): axum::extract::Path<u16>) -> impl IntoResponse {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        Json(json!({"error": {"message": format!("test failure {code}")}})),
    )
}

async fn garbage() -> &'static str {
    "this is not json"
}

async fn block(State(s): State<ServiceState>, Json(body): Json<Value>) -> Json<Value> {
    let mut guard = AbortGuard {
        tx: Some(s.aborted.clone()),
        run_id: body["run_id"].as_str().unwrap_or("").to_owned(),
    };
    let _ = s.started.send(body.clone());
    s.release.notified().await;
    guard.tx = None;
    Json(json!({"content": "released"}))
}

/// Receives from a channel with a bound, failing the test if nothing comes.
pub async fn recv_within<T>(rx: &mut mpsc::UnboundedReceiver<T>, within: Duration) -> T {
    tokio::time::timeout(within, rx.recv())
        .await
        .expect("timed out waiting for a message")
        .expect("channel closed")
}

/// Polls `f` until it returns `Some`, for at most `within`.
pub async fn eventually<T, F, Fut>(within: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "condition not met in {within:?}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A key prefix no other test (or earlier run) uses.
pub fn unique_prefix(test: &str) -> String {
    format!("orchestra-test:{test}:{}", uuid::Uuid::new_v4().simple())
}

/// The shared Redis of the machine (started by `.ci/run` when absent).
pub const SHARED_REDIS: &str = "redis://127.0.0.1:6379/0";

/// A `redis-server` of the test's own on a free port, with no persistence;
/// killed on drop.
pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
}

impl RedisServer {
    pub async fn start() -> Self {
        Self::start_on(free_port()).await
    }

    /// Starts redis-server on `port` and waits (bounded) until it answers PING.
    pub async fn start_on(port: u16) -> Self {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server (apt-get install redis-server)");
        let server = Self {
            child: Some(child),
            port,
        };
        eventually(Duration::from_secs(10), || async move {
            redis_ping(port).await.then_some(())
        })
        .await;
        server
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Kills it with SIGKILL and waits for the process to end.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Whether a Redis on 127.0.0.1:`port` answers PING (raw RESP over TCP).
pub async fn redis_ping(port: u16) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(Ok(mut s)) = tokio::time::timeout(
        Duration::from_millis(500),
        tokio::net::TcpStream::connect(("127.0.0.1", port)),
    )
    .await
    else {
        return false;
    };
    if s.write_all(b"PING\r\n").await.is_err() {
        return false;
    }
    let mut buf = [0u8; 16];
    matches!(
        tokio::time::timeout(Duration::from_millis(500), s.read(&mut buf)).await,
        Ok(Ok(n)) if buf[..n].starts_with(b"+PONG")
    )
}
