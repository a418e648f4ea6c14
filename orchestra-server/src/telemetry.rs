//! Logging: a tracing subscriber writing text or JSON lines, and the
//! per-request span that carries the request id and the matched route.
//!
//! Request ids come from the caller's `x-request-id` header or are generated
//! (UUID v4); the same id is returned in the response's `x-request-id`.
//!
//! With the `otel` feature, spans are also exported over OTLP/HTTP when the
//! standard environment asks for it: `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, or `OTEL_TRACES_EXPORTER=otlp`);
//! `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_EXPORTER_OTLP_HEADERS`
//! and the other `OTEL_EXPORTER_OTLP_*` variables are honoured;
//! `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none` turn it off. Spans
//! follow the GenAI semantic conventions (`orchestrate {pattern}`,
//! `invoke_agent {agent}`, `chat {model}`, `execute_tool {tool}`), an
//! incoming `traceparent` becomes the request's parent, and HTTP agent calls
//! carry the `traceparent` of their `invoke_agent` span.

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
    let registry = tracing_subscriber::registry()
        .with(filter)
        .with(otel::layer());
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
    let span = tracing::info_span!(
        "request",
        method = %req.method(),
        route,
        request_id,
    );
    otel::set_remote_parent(&span, req.headers());
    span
}

/// Flushes spans not yet exported (call once, before the process exits).
pub fn shutdown() {
    otel::shutdown();
}

#[cfg(feature = "otel")]
mod otel {
    use std::sync::OnceLock;

    use axum::http::HeaderMap;
    use opentelemetry::{
        propagation::{Extractor, TextMapPropagator},
        trace::TracerProvider,
    };
    use opentelemetry_sdk::{
        Resource, propagation::TraceContextPropagator, trace::SdkTracerProvider,
    };
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    use tracing_subscriber::registry::LookupSpan;

    static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();

    fn env(name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.trim().is_empty())
    }

    /// Whether the OTEL_* environment asks for OTLP export.
    pub fn wanted() -> bool {
        if env("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
            return false;
        }
        match env("OTEL_TRACES_EXPORTER") {
            Some(v) if v.eq_ignore_ascii_case("none") => false,
            Some(v) if v.eq_ignore_ascii_case("otlp") => true,
            _ => {
                env("OTEL_EXPORTER_OTLP_ENDPOINT").is_some()
                    || env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_some()
            }
        }
    }

    /// The OTLP layer, when the environment asks for export.
    pub fn layer<S>()
    -> Option<tracing_opentelemetry::OpenTelemetryLayer<S, opentelemetry_sdk::trace::SdkTracer>>
    where
        S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    {
        if !wanted() {
            return None;
        }
        let exporter = match opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .build()
        {
            Ok(e) => e,
            Err(e) => {
                eprintln!("orchestra-server: OpenTelemetry export disabled: {e}");
                return None;
            }
        };
        let mut resource = Resource::builder();
        if env("OTEL_SERVICE_NAME").is_none() {
            resource = resource.with_service_name("orchestra-server");
        }
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource.build())
            .build();
        let tracer = provider.tracer("orchestra");
        opentelemetry::global::set_tracer_provider(provider.clone());
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
        let _ = PROVIDER.set(provider);
        Some(tracing_opentelemetry::layer().with_tracer(tracer))
    }

    struct Headers<'a>(&'a HeaderMap);

    impl Extractor for Headers<'_> {
        fn get(&self, key: &str) -> Option<&str> {
            self.0.get(key).and_then(|v| v.to_str().ok())
        }
        fn keys(&self) -> Vec<&str> {
            self.0.keys().map(|k| k.as_str()).collect()
        }
    }

    /// Makes an incoming W3C `traceparent` the parent of `span`.
    pub fn set_remote_parent(span: &tracing::Span, headers: &HeaderMap) {
        if PROVIDER.get().is_none() || !headers.contains_key("traceparent") {
            return;
        }
        let cx = TraceContextPropagator::new().extract(&Headers(headers));
        if let Err(e) = span.set_parent(cx) {
            tracing::debug!(error = %e, "could not adopt the caller's trace context");
        }
    }

    pub fn shutdown() {
        if let Some(p) = PROVIDER.get()
            && let Err(e) = p.shutdown()
        {
            eprintln!("orchestra-server: flushing OpenTelemetry spans failed: {e}");
        }
    }
}

#[cfg(not(feature = "otel"))]
mod otel {
    use axum::http::HeaderMap;

    pub fn layer() -> tracing_subscriber::layer::Identity {
        tracing_subscriber::layer::Identity::new()
    }

    pub fn set_remote_parent(_span: &tracing::Span, _headers: &HeaderMap) {}

    pub fn shutdown() {}
}
