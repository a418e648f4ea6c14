//! The `orchestra-server` binary: parses configuration and runs the server.
//!
//! ```text
//! orchestra-server                       # demo agents on 0.0.0.0:8001
//! orchestra-server --config orchestra.toml --bind 127.0.0.1:9000
//! orchestra-server replay run.json       # replays a recorded run offline, events as JSON lines
//! orchestra-server replay session.json --run <run_id>
//! ```

use std::{net::SocketAddr, path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};
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
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Replays a recorded run offline (no agent is called) and prints every
    /// event as one JSON line; fails when the replay ends with another
    /// status than the record.
    Replay {
        /// A run record (from POST /orchestrate or a session's `runs`) or a
        /// whole session (from GET /sessions/{id}).
        record: PathBuf,
        /// The run to replay when the file is a session.
        #[arg(long)]
        run: Option<String>,
    },
}

/// `orchestra-server replay`: exit 0 when the replay ends as recorded, 1
/// when it does not, 2 when the file holds no usable run.
fn replay(path: &std::path::Path, run: Option<&str>) -> ExitCode {
    use orchestra_server::replay::{ReplayError, load_record};
    let record = match load_record(path, run) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("orchestra-server replay: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("orchestra-server replay: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    match runtime.block_on(orchestra_server::replay::replay(&record, &mut out)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("orchestra-server replay: {e}");
            match e {
                ReplayError::Input(_) | ReplayError::Start { .. } => ExitCode::from(2),
                ReplayError::Mismatch(_) | ReplayError::Output(_) => ExitCode::FAILURE,
            }
        }
    }
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
    if let Some(Command::Replay { record, run }) = &cli.command {
        return replay(record, run.as_deref());
    }
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
