//! Load-benchmark targets: a bare axum JSON echo route, the full orchestra
//! router with in-memory sessions (demo agents), and, when a Redis URL is
//! given, the same router with sessions in Redis, served by one process on
//! separate ports so all are measured under the same conditions.
//!
//! Run: `cargo run --release -p orchestra-server --example bench_targets -- 127.0.0.1:18101 127.0.0.1:18102 [127.0.0.1:18103 redis://127.0.0.1:6379/0]`
//! then point a load generator at `POST /echo` on the first port and
//! `POST /orchestrate` on the others (see `scripts/bench-server`). The Redis
//! target uses a key prefix of its own (`orchestra-bench:{pid}`) whose
//! sessions expire after a minute (a run makes a session of about 5 KB, so
//! a benchmark at thousands of runs per second fills Redis quickly).

use axum::{Json, Router, routing::post};
use orchestra_server::{config::Config, serve_state, state::AppState};
use serde_json::Value;

// The same allocator as the orchestra-server binary.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

async fn echo(Json(body): Json<Value>) -> Json<Value> {
    Json(body)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let bare_addr = args.next().unwrap_or_else(|| "127.0.0.1:18101".into());
    let orch_addr = args.next().unwrap_or_else(|| "127.0.0.1:18102".into());

    let bare = tokio::net::TcpListener::bind(&bare_addr).await?;
    let bare_app = Router::new().route("/echo", post(echo));
    tokio::spawn(async move { axum::serve(bare, bare_app).await });

    if let (Some(redis_addr), Some(redis_url)) = (args.next(), args.next()) {
        let mut config = Config {
            store: redis_url,
            session_ttl_secs: 60,
            ..Config::default()
        };
        config.redis.prefix = format!("orchestra-bench:{}", std::process::id());
        config.queue.workers = 0;
        let state = AppState::from_config(config).await?;
        let listener = tokio::net::TcpListener::bind(&redis_addr).await?;
        println!("orchestra with the Redis store on http://{redis_addr}/orchestrate");
        tokio::spawn(serve_state(
            state,
            listener,
            orchestra_server::shutdown_signal(),
        ));
    }

    let config = Config::default();
    let state = AppState::from_config(config).await?;
    let listener = tokio::net::TcpListener::bind(&orch_addr).await?;
    println!("bare echo on http://{bare_addr}/echo, orchestra on http://{orch_addr}/orchestrate");
    serve_state(state, listener, orchestra_server::shutdown_signal()).await?;
    Ok(())
}
