//! The `orchestra-server` binary: parses configuration and runs the server.
//!
//! ```text
//! orchestra-server                       # demo agents on 0.0.0.0:8001
//! orchestra-server --config orchestra.toml --bind 127.0.0.1:9000
//! ```

use std::{net::SocketAddr, path::PathBuf, process::ExitCode};

use clap::Parser;
use mimalloc::MiMalloc;
use orchestra_server::config::{Config, LogFormat, Overrides};

// Runs allocate many short-lived strings and JSON values across threads;
// mimalloc handles that pattern far better than the system allocator.
#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

/// Orchestra REST server.
#[derive(Debug, Parser)]
#[command(name = "orchestra-server", version, about)]
struct Cli {
    /// TOML configuration file.
    #[arg(long, short, env = "ORCHESTRA_CONFIG")]
    config: Option<PathBuf>,
    /// Address to listen on (default 0.0.0.0:8001).
    #[arg(long)]
    bind: Option<SocketAddr>,
    /// Session store: "memory" or a Redis URL ("redis://127.0.0.1:6379/0").
    #[arg(long)]
    store: Option<String>,
    /// Log format: text or json.
    #[arg(long, value_parser = parse_format)]
    log_format: Option<LogFormat>,
    /// Log filter, e.g. "info" or "orchestra_server=debug".
    #[arg(long)]
    log_level: Option<String>,
    /// Register the built-in demo agents (default: only when no agents are configured).
    #[arg(long)]
    demo_agents: Option<bool>,
}

fn parse_format(s: &str) -> Result<LogFormat, String> {
    match s {
        "text" => Ok(LogFormat::Text),
        "json" => Ok(LogFormat::Json),
        other => Err(format!("unknown log format '{other}' (text or json)")),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let overrides = Overrides {
        bind: cli.bind,
        store: cli.store,
        log_format: cli.log_format,
        log_level: cli.log_level,
        demo_agents: cli.demo_agents,
    };
    let config = match Config::load(cli.config.as_deref(), &overrides) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("orchestra-server: {e}");
            return ExitCode::from(2);
        }
    };
    orchestra_server::telemetry::init(config.log_format, &config.log_level);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("orchestra-server: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(config.bind).await?;
        orchestra_server::serve(config, listener, orchestra_server::shutdown_signal()).await
    });
    orchestra_server::telemetry::shutdown();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "server stopped with an error");
            eprintln!("orchestra-server: {e}");
            ExitCode::FAILURE
        }
    }
}
