//! # orchestra-server
//!
//! The REST service of Orchestra: run the five patterns over HTTP, stream
//! their events as Server-Sent Events, keep sessions, list agents and
//! patterns, and expose health, Prometheus metrics and an OpenAPI document.
//!
//! ## Contents
//! - [`router`]: the axum [`Router`] with every route and layer.
//! - [`serve`]: runs a router on a listener with graceful shutdown.
//! - [`config`]: TOML + `ORCHESTRA_*` environment + CLI configuration.
//! - [`state`]: [`AppState`](state::AppState), shared by handlers.
//! - [`discovery`]: where agents come from ([`Discovery`](discovery::Discovery));
//!   [`etcd`]: agents registered in etcd, followed by a watch.
//! - [`demo`]: built-in demo agents for a fresh machine.
//! - [`error`]: [`ApiError`](error::ApiError) and the JSON extractor.
//! - [`worker`]: queue workers executing `"mode": "async"` runs (Redis store).
//! - [`routes`], [`auth`], [`metrics`], [`telemetry`].
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! use orchestra_server::{config::Config, router, state::AppState};
//! use tower::ServiceExt;
//! let app = router(AppState::from_config(Config::default()).await.unwrap());
//! let res = app.oneshot(axum::http::Request::get("/patterns").body(axum::body::Body::empty()).unwrap())
//!     .await.unwrap();
//! assert_eq!(res.status(), 200);
//! # });
//! ```

pub mod auth;
pub mod cancel;
pub mod chaos;
pub mod config;
pub mod demo;
pub mod discovery;
pub mod error;
pub mod etcd;
pub mod metrics;
pub mod policy;
pub mod queue_agents;
pub mod replay;
pub mod routes;
pub mod state;
pub mod store;
pub mod telemetry;
pub mod worker;

use std::{future::Future, time::Duration};

use axum::{
    Router,
    error_handling::HandleErrorLayer,
    extract::DefaultBodyLimit,
    http::{HeaderName, HeaderValue, Method, StatusCode, header},
    middleware,
    routing::{delete, get, post},
};
use tokio::net::TcpListener;
use tower::{BoxError, ServiceBuilder};
use tower_http::{
    cors::{AllowOrigin, CorsLayer},
    request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer},
    trace::{DefaultOnResponse, TraceLayer},
};

use crate::{
    config::Config,
    error::ApiError,
    routes::{agents, health, openapi, orchestrate, patterns, runs, sessions},
    state::{AppState, StartupError},
    telemetry::REQUEST_ID,
};

/// How long open connections get after the drain timeout cancelled their runs.
const FINAL_GRACE: Duration = Duration::from_secs(5);

/// Every route with its layers.
pub fn router(state: AppState) -> Router {
    let config = &state.config;
    // Routes with a request time limit; the SSE route is left out so that
    // long streams are not cut (runs have their own time limits).
    let timed = Router::new()
        .route("/orchestrate", post(orchestrate::orchestrate))
        .route("/sessions", get(sessions::list_sessions))
        .route(
            "/sessions/{session_id}",
            get(sessions::get_session).delete(sessions::delete_session),
        )
        .route("/patterns", get(patterns::list_patterns))
        .route("/schemas/events.json", get(routes::schemas::events_schema))
        .route("/agents", get(agents::list_agents))
        .route("/agents/register", post(agents::register_agent))
        .route("/agents/{name}", delete(agents::deregister_agent))
        .route("/runs/{run_id}", get(runs::get_run))
        .route("/runs/{run_id}/input", post(runs::answer_run))
        .route("/runs/{run_id}/cancel", post(runs::cancel_run))
        .route("/runs/{run_id}/stop", post(runs::stop_run))
        .route("/health", get(health::health))
        .route("/metrics", get(routes::metrics::metrics))
        .route("/openapi.json", get(openapi::openapi_json))
        .layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(timeout_error))
                .timeout(config.request_timeout()),
        );
    let streaming = Router::new()
        .route("/orchestrate/stream", post(orchestrate::orchestrate_stream))
        .route("/runs/{run_id}/events", get(runs::run_events));

    Router::new()
        .merge(timed)
        .merge(streaming)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_api_key,
        ))
        // The web console, merged after the key check: the page holds no
        // secrets, and its API calls carry the key the user enters.
        .merge(routes::ui::router())
        .layer(DefaultBodyLimit::max(config.body_limit_bytes))
        .layer(middleware::from_fn(metrics::http_metrics))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(telemetry::request_span)
                .on_response(DefaultOnResponse::new().level(tracing::Level::INFO)),
        )
        .layer(PropagateRequestIdLayer::new(REQUEST_ID.clone()))
        .layer(SetRequestIdLayer::new(REQUEST_ID.clone(), MakeRequestUuid))
        .layer(tower::util::option_layer(
            (!config.cors.allowed_origins.is_empty()).then(|| cors(config)),
        ))
        .with_state(state)
}

fn cors(config: &Config) -> CorsLayer {
    let origins = &config.cors.allowed_origins;
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    CorsLayer::new()
        .allow_origin(allow)
        .allow_methods([Method::GET, Method::POST, Method::DELETE])
        .allow_headers([
            header::CONTENT_TYPE,
            header::AUTHORIZATION,
            REQUEST_ID.clone(),
            // Async runs (`Prefer: respond-async`) and resumed event streams.
            HeaderName::from_static("prefer"),
            HeaderName::from_static("last-event-id"),
        ])
        .expose_headers([
            REQUEST_ID.clone(),
            HeaderName::from_static("x-orchestra-run-id"),
            HeaderName::from_static("x-orchestra-session-id"),
            header::LOCATION,
        ])
        .max_age(Duration::from_secs(config.cors.max_age_secs))
}

async fn timeout_error(e: BoxError) -> ApiError {
    if e.is::<tower::timeout::error::Elapsed>() {
        ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            "request_timeout",
            "the request took longer than the server's limit",
        )
    } else {
        ApiError::internal("middleware failed", &e)
    }
}

async fn not_found() -> ApiError {
    ApiError::not_found("not_found", "no such route")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not accept that method",
    )
}

/// Builds the state from `config` and serves until `shutdown` resolves.
pub async fn serve(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartupError> {
    let state = AppState::from_config(config).await?;
    serve_state(state, listener, shutdown).await
}

/// Serves `state` until `shutdown` resolves, then drains: the listener
/// closes at once, requests and streams in flight go on for up to
/// `drain_timeout_ms`, after which their runs are cancelled (streams end with
/// `run_cancelled`), and after a last short grace the server returns.
///
/// Also runs the background work: the periodic agent refresh and, with
/// the Redis store, `queue.workers` queue workers. On shutdown the workers
/// take no new runs and finish the ones in hand within the same drain
/// timeout; a run still going then is left for another instance.
pub async fn serve_state(
    state: AppState,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartupError> {
    let addr = listener.local_addr()?;
    let drain_timeout = state.config.drain_timeout();
    let shutting_down = state.shutting_down.clone();
    let drain_expired = state.drain_expired.clone();
    let signal = {
        let shutting_down = shutting_down.clone();
        async move {
            shutdown.await;
            shutting_down.cancel();
        }
    };
    let background_stop = shutting_down.child_token();
    let mut workers = worker::spawn_workers(&state, &background_stop);
    if state.redis.is_some() {
        workers.push(tokio::spawn(cancel::listen(
            state.clone(),
            background_stop.clone(),
        )));
    }
    let refresher = tokio::spawn(state.clone().refresh_loop(background_stop.clone()));
    let app = router(state);
    tracing::info!(%addr, "orchestra-server listening");
    let server = axum::serve(listener, app).with_graceful_shutdown(signal);
    let mut server = std::pin::pin!(server.into_future());
    tokio::select! {
        r = &mut server => {
            background_stop.cancel();
            refresher.abort();
            for w in &workers {
                w.abort();
            }
            return Ok(r?);
        }
        () = shutting_down.cancelled() => {}
    }
    tracing::info!(
        ?drain_timeout,
        "shutting down: no new connections; draining requests and queued runs in flight"
    );
    let everything = async {
        let r = (&mut server).await;
        futures::future::join_all(workers).await;
        r
    };
    let mut everything = std::pin::pin!(everything);
    if let Ok(r) = tokio::time::timeout(drain_timeout, &mut everything).await {
        tracing::info!("drained");
        return Ok(r?);
    }
    tracing::warn!("drain timeout passed; cancelling runs still in flight");
    drain_expired.cancel();
    match tokio::time::timeout(FINAL_GRACE, &mut everything).await {
        Ok(r) => Ok(r?),
        Err(_) => {
            tracing::warn!("connections still open after the grace period; stopping anyway");
            Ok(())
        }
    }
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("received SIGINT"),
        () = terminate => tracing::info!("received SIGTERM"),
    }
}
