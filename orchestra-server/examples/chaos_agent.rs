//! A chaos agent service for demos and game days: an HTTP agent that fails
//! on request (500, hang, dropped connection, garbage JSON, slow answers,
//! 429 with Retry-After). See `orchestra_server::chaos` for the faults.
//!
//! ```text
//! cargo run -p orchestra-server --example chaos_agent -- 127.0.0.1:7070
//! ```
//!
//! Then point agents at it in the server's configuration:
//!
//! ```toml
//! [[agents]]
//! name = "flaky"
//! kind = "http"
//! url = "http://127.0.0.1:7070/fault/error?times=1"   # fails once per run, then answers
//!
//! [[agents]]
//! name = "switchable"
//! kind = "http"
//! url = "http://127.0.0.1:7070/invoke/switchable"     # answers as PUT /mode/switchable says
//! ```
//!
//! and flip a fault at run time:
//! `curl -X PUT localhost:7070/mode/switchable -H 'content-type: application/json' -d '{"fault":"hang"}'`,
//! or per run with `"metadata": {"chaos": {"flaky": "drop"}}` in the request.

use std::net::SocketAddr;

use orchestra_server::chaos::ChaosService;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().with_env_filter("info").init();
    let addr: SocketAddr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:7070".to_owned())
        .parse()?;
    let chaos = ChaosService::start(addr).await?;
    println!("chaos agent service on {}", chaos.url(""));
    println!(
        "  POST {}  (ok, error[:STATUS], hang, drop, garbage, slow:MS, rate_limit:SECS; ?times=N)",
        chaos.url("/fault/{fault}")
    );
    println!(
        "  POST {}  (mode set by PUT /mode/{{key}})",
        chaos.url("/invoke/{key}")
    );
    println!("  GET  {}", chaos.url("/stats"));
    tokio::signal::ctrl_c().await?;
    println!("{}", serde_json::to_string_pretty(&chaos.stats())?);
    Ok(())
}
