//! Span levels shared by the core's instrumentation.
//!
//! Per-call spans (`invoke_agent`, …) follow the OpenTelemetry GenAI naming.
//! With the `otel` feature they are INFO, so an OTLP exporter sees them under
//! the usual filters; without it they are DEBUG, so a service logging at INFO
//! does not pay for a span per agent call.

/// The level of the core's per-call spans.
pub const SPAN_LEVEL: tracing::Level = if cfg!(feature = "otel") {
    tracing::Level::INFO
} else {
    tracing::Level::DEBUG
};
