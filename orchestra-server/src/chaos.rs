//! A chaos agent service: an HTTP agent (the `kind = "http"` wire contract)
//! that misbehaves on request, for tests, demos and game days.
//!
//! The fault is chosen per request, first match wins:
//! 1. the run's metadata: `"chaos": "error"` (every agent) or
//!    `"chaos": {"writer": "hang"}` (by agent name);
//! 2. the path: `POST /fault/{fault}`, e.g. `/fault/slow:500`;
//! 3. the mode of a key: `POST /invoke/{key}` answers as `PUT /mode/{key}`
//!    (body `{"fault": "error"}`) last said, `ok` until then.
//!
//! Faults: `ok`, `error` (500) or `error:503`, `hang` (never answers),
//! `drop` (the connection is dropped mid-response), `garbage` (200 with a
//! body that is not JSON), `slow:MS` (answers after MS milliseconds),
//! `rate_limit:SECS` (429 with `Retry-After: SECS`). The query `?times=N`
//! limits a fault to the first N calls of each run and agent; later calls
//! answer `ok` (a transient fault that a retry gets past).
//!
//! `GET /stats` reports what was served per agent and how many calls were
//! abandoned by the caller (the connection closed while the service was
//! still working); `GET /health` answers 200.
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! use orchestra_server::chaos::{ChaosService, Fault};
//! let chaos = ChaosService::start("127.0.0.1:0".parse().unwrap()).await.unwrap();
//! assert_eq!("slow:250".parse::<Fault>().unwrap(), Fault::Slow(std::time::Duration::from_millis(250)));
//! let r = reqwest::Client::new()
//!     .post(chaos.url("/fault/error:503"))
//!     .json(&serde_json::json!({"agent": "a", "task": "t", "run_id": "r"}))
//!     .send().await.unwrap();
//! assert_eq!(r.status(), 503);
//! assert_eq!(chaos.stats().served["a"]["error:503"], 1);
//! # });
//! ```

use std::{
    collections::{BTreeMap, HashMap},
    net::SocketAddr,
    str::FromStr,
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use axum::{
    Json, Router,
    body::{Body, Bytes},
    extract::{Path, Query, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post, put},
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::{net::TcpListener, sync::Notify, task::JoinHandle};

/// One way to misbehave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    Ok,
    /// Answer with this HTTP status and a JSON error body.
    Error(u16),
    /// Never answer.
    Hang,
    /// Drop the connection mid-response.
    Drop,
    /// 200 with a body that is not JSON.
    Garbage,
    /// Answer correctly after this long.
    Slow(Duration),
    /// 429 with `Retry-After` in seconds.
    RateLimit(u64),
}

/// A fault spec that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown fault '{0}' (ok, error[:STATUS], hang, drop, garbage, slow:MS, rate_limit[:SECS])"
)]
pub struct UnknownFault(pub String);

impl FromStr for Fault {
    type Err = UnknownFault;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || UnknownFault(s.to_owned());
        let (name, arg) = match s.split_once(':') {
            Some((n, a)) => (n, Some(a)),
            None => (s, None),
        };
        let num = |default: u64| -> Result<u64, UnknownFault> {
            arg.map_or(Ok(default), |a| a.trim().parse().map_err(|_| bad()))
        };
        Ok(match name.trim() {
            "ok" => Self::Ok,
            "error" => {
                let code = num(500)?;
                match u16::try_from(code) {
                    Ok(c) if (400..=599).contains(&c) => Self::Error(c),
                    _ => return Err(bad()),
                }
            }
            "hang" => Self::Hang,
            "drop" => Self::Drop,
            "garbage" => Self::Garbage,
            "slow" => Self::Slow(Duration::from_millis(num(1000)?)),
            "rate_limit" => Self::RateLimit(num(1)?),
            _ => return Err(bad()),
        })
    }
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Ok => f.write_str("ok"),
            Self::Error(500) => f.write_str("error"),
            Self::Error(c) => write!(f, "error:{c}"),
            Self::Hang => f.write_str("hang"),
            Self::Drop => f.write_str("drop"),
            Self::Garbage => f.write_str("garbage"),
            Self::Slow(d) => write!(f, "slow:{}", d.as_millis()),
            Self::RateLimit(s) => write!(f, "rate_limit:{s}"),
        }
    }
}

/// What the service did so far.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChaosStats {
    /// Calls per agent name and fault served (`ok` included).
    pub served: BTreeMap<String, BTreeMap<String, u64>>,
    /// Calls whose connection the caller closed before the answer.
    pub abandoned: u64,
    /// Most calls of each agent the service was working on at once.
    pub max_in_flight: BTreeMap<String, u64>,
}

impl ChaosStats {
    /// Calls of `agent` that got no good answer (anything but `ok` and `slow`).
    pub fn faults(&self, agent: &str) -> u64 {
        self.served.get(agent).map_or(0, |m| {
            m.iter()
                .filter(|(k, _)| *k != "ok" && !k.starts_with("slow"))
                .map(|(_, v)| v)
                .sum()
        })
    }

    /// Every call of `agent`.
    pub fn calls(&self, agent: &str) -> u64 {
        self.served.get(agent).map_or(0, |m| m.values().sum())
    }
}

#[derive(Default)]
struct Shared {
    stats: Mutex<ChaosStats>,
    modes: Mutex<HashMap<String, Fault>>,
    /// Calls per (run, agent, fault spec), for `times`.
    counts: Mutex<HashMap<String, u32>>,
    /// Calls in progress per agent.
    in_flight: Mutex<HashMap<String, u64>>,
    abandoned: Notify,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

/// A running chaos service; stops when dropped.
pub struct ChaosService {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl Drop for ChaosService {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ChaosService {
    /// Serves on `addr` (port 0 picks a free one) until dropped.
    pub async fn start(addr: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::default());
        let app = router(shared.clone());
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "chaos service stopped");
            }
        });
        Ok(Self { addr, shared, task })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Sets how `POST /invoke/{key}` answers.
    pub fn set_mode(&self, key: &str, fault: Fault) {
        lock(&self.shared.modes).insert(key.to_owned(), fault);
    }

    pub fn stats(&self) -> ChaosStats {
        lock(&self.shared.stats).clone()
    }

    /// Waits until at least `n` calls were abandoned by their callers.
    pub async fn abandoned_at_least(&self, n: u64) {
        loop {
            let notified = self.shared.abandoned.notified();
            if lock(&self.shared.stats).abandoned >= n {
                return;
            }
            notified.await;
        }
    }
}

/// The service's routes, for embedding in another server.
fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/fault/{fault}", post(by_path))
        .route("/invoke/{key}", post(by_mode))
        .route("/mode/{key}", put(set_mode))
        .route("/stats", get(stats))
        .route("/health", get(|| async { "ok" }))
        .with_state(shared)
}

#[derive(Debug, Default, Deserialize)]
struct Params {
    /// Apply the fault to the first `times` calls of each run and agent only.
    times: Option<u32>,
}

async fn by_path(
    State(s): State<Arc<Shared>>,
    Path(spec): Path<String>,
    Query(p): Query<Params>,
    body: Bytes,
) -> Response {
    match spec.parse::<Fault>() {
        Ok(fault) => serve(s, fault, &spec, p.times, body).await,
        Err(e) => (StatusCode::NOT_FOUND, e.to_string()).into_response(),
    }
}

async fn by_mode(
    State(s): State<Arc<Shared>>,
    Path(key): Path<String>,
    Query(p): Query<Params>,
    body: Bytes,
) -> Response {
    let fault = lock(&s.modes).get(&key).copied().unwrap_or(Fault::Ok);
    serve(s, fault, &key, p.times, body).await
}

#[derive(Deserialize)]
struct ModeBody {
    fault: String,
}

async fn set_mode(
    State(s): State<Arc<Shared>>,
    Path(key): Path<String>,
    Json(body): Json<ModeBody>,
) -> Response {
    match body.fault.parse::<Fault>() {
        Ok(f) => {
            lock(&s.modes).insert(key, f);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => (StatusCode::UNPROCESSABLE_ENTITY, e.to_string()).into_response(),
    }
}

async fn stats(State(s): State<Arc<Shared>>) -> Json<ChaosStats> {
    Json(lock(&s.stats).clone())
}

/// Counts the call in flight while it lives, and as abandoned if dropped
/// before `done`.
struct Abandon {
    shared: Arc<Shared>,
    agent: String,
    done: bool,
}

impl Abandon {
    fn new(shared: Arc<Shared>, agent: String) -> Self {
        let now = {
            let mut in_flight = lock(&shared.in_flight);
            let n = in_flight.entry(agent.clone()).or_insert(0);
            *n += 1;
            *n
        };
        let mut stats = lock(&shared.stats);
        let max = stats.max_in_flight.entry(agent.clone()).or_insert(0);
        *max = (*max).max(now);
        drop(stats);
        Self {
            shared,
            agent,
            done: false,
        }
    }
}

impl Drop for Abandon {
    fn drop(&mut self) {
        if let Some(n) = lock(&self.shared.in_flight).get_mut(&self.agent) {
            *n = n.saturating_sub(1);
        }
        if !self.done {
            lock(&self.shared.stats).abandoned += 1;
            self.shared.abandoned.notify_waiters();
        }
    }
}

async fn serve(
    s: Arc<Shared>,
    fault: Fault,
    key: &str,
    times: Option<u32>,
    body: Bytes,
) -> Response {
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let agent = request["agent"].as_str().unwrap_or("unknown").to_owned();
    let run_id = request["run_id"].as_str().unwrap_or("");
    let chosen = match &request["metadata"]["chaos"] {
        Value::String(f) => f.parse().ok(),
        Value::Object(m) => m
            .get(&agent)
            .and_then(Value::as_str)
            .and_then(|f| f.parse().ok()),
        _ => None,
    };
    let mut fault = chosen.unwrap_or(fault);
    if let Some(limit) = times {
        let mut counts = lock(&s.counts);
        let n = counts.entry(format!("{run_id}/{agent}/{key}")).or_insert(0);
        *n += 1;
        if *n > limit {
            fault = Fault::Ok;
        }
    }
    *lock(&s.stats)
        .served
        .entry(agent.clone())
        .or_default()
        .entry(fault.to_string())
        .or_insert(0) += 1;
    let mut guard = Abandon::new(s.clone(), agent.clone());
    let response = match fault {
        Fault::Ok => answer(&agent, &request),
        Fault::Error(code) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            (
                status,
                Json(json!({"error": {"message": format!("chaos: {code}")}})),
            )
                .into_response()
        }
        Fault::Hang => std::future::pending().await,
        Fault::Drop => {
            let broken = futures::stream::once(async {
                Err::<Bytes, std::io::Error>(std::io::Error::other("chaos: connection dropped"))
            });
            Response::builder()
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from_stream(broken))
                .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
        }
        Fault::Garbage => (
            [(header::CONTENT_TYPE, "application/json")],
            "{\"content\": this is not json",
        )
            .into_response(),
        Fault::Slow(d) => {
            tokio::time::sleep(d).await;
            answer(&agent, &request)
        }
        Fault::RateLimit(secs) => (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, secs.to_string())],
            Json(json!({"error": {"message": "chaos: slow down"}})),
        )
            .into_response(),
    };
    guard.done = true;
    response
}

fn answer(agent: &str, request: &Value) -> Response {
    Json(json!({
        "content": format!("{agent}: {}", request["task"].as_str().unwrap_or("")),
        "usage": {"prompt_tokens": 2, "completion_tokens": 3}
    }))
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_specs_round_trip() {
        for s in [
            "ok",
            "error",
            "error:503",
            "hang",
            "drop",
            "garbage",
            "slow:20",
            "rate_limit:2",
        ] {
            assert_eq!(s.parse::<Fault>().unwrap().to_string(), s);
        }
        assert!("error:200".parse::<Fault>().is_err());
        assert!("slow:soon".parse::<Fault>().is_err());
        assert!("explode".parse::<Fault>().is_err());
    }

    #[tokio::test]
    async fn each_fault_is_served_as_chosen() {
        let chaos = ChaosService::start(([127, 0, 0, 1], 0).into())
            .await
            .unwrap();
        let c = reqwest::Client::new();
        let body =
            |meta: Value| json!({"agent": "a", "task": "t", "run_id": "r", "metadata": meta});
        let r = c
            .post(chaos.url("/fault/rate_limit:7"))
            .json(&body(json!({})))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 429);
        assert_eq!(r.headers()["retry-after"], "7");
        let r = c
            .post(chaos.url("/fault/garbage"))
            .json(&body(json!({})))
            .send()
            .await
            .unwrap();
        assert!(r.json::<Value>().await.is_err());
        let r = c
            .post(chaos.url("/fault/drop"))
            .json(&body(json!({})))
            .send()
            .await;
        assert!(match r {
            Ok(r) => r.bytes().await.is_err(),
            Err(_) => true,
        });
        // Metadata wins over the path; `times` lets later calls through.
        let r = c
            .post(chaos.url("/fault/ok"))
            .json(&body(json!({"chaos": {"a": "error:502"}})))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 502);
        for expected in [500, 200] {
            let r = c
                .post(chaos.url("/fault/error?times=1"))
                .json(&body(json!({})))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), expected);
        }
        chaos.set_mode("k", Fault::Error(503));
        let r = c
            .post(chaos.url("/invoke/k"))
            .json(&body(json!({})))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 503);
        // A hanging call is counted as abandoned when the caller gives up.
        let hung = c
            .post(chaos.url("/fault/hang"))
            .json(&body(json!({})))
            .timeout(Duration::from_millis(100))
            .send()
            .await;
        assert!(hung.is_err());
        tokio::time::timeout(Duration::from_secs(5), chaos.abandoned_at_least(1))
            .await
            .unwrap();
        let s = chaos.stats();
        assert_eq!(s.served["a"]["ok"], 1);
        assert_eq!(s.faults("a"), 7);
    }
}
