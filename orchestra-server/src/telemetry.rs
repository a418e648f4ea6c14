//! Logging: a tracing subscriber writing text or JSON lines, and the
//! per-request span that carries the request id and the matched route.
//!
//! Request ids come from the caller's `x-request-id` header or are generated
//! (UUID v4); the same id is returned in the response's `x-request-id`.

use axum::{
    extract::{MatchedPath, Request},
    http::HeaderName,
};
use tracing_subscriber::{EnvFilter, fmt, prelude::*};

use crate::config::LogFormat;

/// The request id header, read and written.
pub static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Installs the global subscriber. `RUST_LOG` wins over `level` when set.
/// Returns `false` if a subscriber was already installed.
pub fn init(format: LogFormat, level: &str) -> bool {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    match format {
        LogFormat::Json => registry
            .with(
                fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true),
            )
            .try_init()
            .is_ok(),
        LogFormat::Text => registry.with(fmt::layer()).try_init().is_ok(),
    }
}

/// The span of one HTTP request.
pub fn request_span(req: &Request) -> tracing::Span {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str);
    let request_id = req
        .headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    tracing::info_span!(
        "request",
        method = %req.method(),
        route,
        request_id,
    )
}
