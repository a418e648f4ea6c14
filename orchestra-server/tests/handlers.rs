//! Handler tests: the router driven in-process with `oneshot`, no sockets.

use axum::{
    Router,
    body::{Body, to_bytes},
    http::{Request, StatusCode, header},
};
use orchestra_server::{config::Config, router, state::AppState};
use serde_json::{Value, json};
use tower::ServiceExt;

async fn app(toml: &str) -> Router {
    let config = Config::from_toml_str(toml).unwrap();
    router(AppState::from_config(config).await.unwrap())
}

async fn send(app: &Router, req: Request<Body>) -> (StatusCode, axum::http::HeaderMap, Value) {
    let res = app.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let bytes = to_bytes(res.into_body(), 1 << 20).await.unwrap();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, headers, body)
}

fn post(path: &str, body: &Value) -> Request<Body> {
    Request::post(path)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

#[tokio::test]
async fn orchestrate_runs_the_demo_agents_and_returns_the_result() {
    let app = app("").await;
    let (status, headers, body) = send(
        &app,
        post(
            "/orchestrate",
            &json!({"pattern": "sequential", "task": "tides", "agents": ["demo_researcher", "demo_writer"]}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "completed");
    assert!(
        body["output"]
            .as_str()
            .unwrap()
            .starts_with("Draft: a short article built from: Research notes on 'tides'")
    );
    assert_eq!(
        headers["x-orchestra-run-id"],
        body["run_id"].as_str().unwrap()
    );
    assert_eq!(
        headers["x-orchestra-session-id"],
        body["session_id"].as_str().unwrap()
    );
}

#[tokio::test]
async fn request_ids_are_generated_or_echoed() {
    let app = app("").await;
    let (_, headers, _) = send(&app, Request::get("/patterns").body(Body::empty()).unwrap()).await;
    assert_eq!(headers["x-request-id"].to_str().unwrap().len(), 36);
    let req = Request::get("/patterns")
        .header("x-request-id", "abc-123")
        .body(Body::empty())
        .unwrap();
    let (_, headers, _) = send(&app, req).await;
    assert_eq!(headers["x-request-id"], "abc-123");
}

#[tokio::test]
async fn json_rejections_become_api_errors() {
    let app = app("body_limit_bytes = 64").await;
    let req = Request::post("/orchestrate")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from("[1,"))
        .unwrap();
    let (status, _, body) = send(&app, req).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (StatusCode::BAD_REQUEST, &json!("invalid_json"))
    );

    let req = Request::post("/orchestrate")
        .body(Body::from("{}"))
        .unwrap();
    let (status, _, body) = send(&app, req).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(body["error"]["code"], "unsupported_media_type");

    let (status, _, body) = send(
        &app,
        post("/orchestrate", &json!({"task": "x".repeat(100)})),
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(body["error"]["code"], "payload_too_large");

    let (status, _, body) = send(&app, post("/orchestrate", &json!({"task": "t"}))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("pattern"),
        "{body}"
    );
}

#[tokio::test]
async fn cors_preflight_allows_configured_origins_only() {
    let app = app("[cors]\nallowed_origins = [\"https://app.example\"]").await;
    let preflight = |origin: &str| {
        Request::options("/orchestrate")
            .header(header::ORIGIN, origin)
            .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
            .body(Body::empty())
            .unwrap()
    };
    let (_, headers, _) = send(&app, preflight("https://app.example")).await;
    assert_eq!(
        headers[header::ACCESS_CONTROL_ALLOW_ORIGIN],
        "https://app.example"
    );
    let (_, headers, _) = send(&app, preflight("https://evil.example")).await;
    assert!(headers.get(header::ACCESS_CONTROL_ALLOW_ORIGIN).is_none());
    // With no origins configured there is no CORS layer at all: a preflight
    // is just an OPTIONS request the route does not accept.
    let closed = self::app("").await;
    let (status, headers, body) = send(&closed, preflight("https://app.example")).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(body["error"]["code"], "method_not_allowed");
    assert!(headers.get(header::ACCESS_CONTROL_ALLOW_ORIGIN).is_none());
}

#[tokio::test]
async fn health_reports_the_store_and_agents() {
    let app = app("").await;
    let (status, _, body) = send(&app, Request::get("/health").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["status"], "ready");
    assert_eq!(body["store"]["kind"], "memory");
    assert!(
        body["agents"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["name"] == "demo_triage")
    );
}

#[tokio::test]
async fn an_http_agent_without_a_url_stops_start_up() {
    let config = Config::from_toml_str("[[agents]]\nname = \"x\"\nkind = \"http\"\n").unwrap();
    let err = AppState::from_config(config).await.err().unwrap();
    assert!(err.to_string().contains("needs a url"), "{err}");
    // An unknown store is a configuration error, before anything starts.
    let err = Config::from_toml_str("store = \"cassandra\"").unwrap_err();
    assert!(err.to_string().contains("cassandra"), "{err}");
}

/// The example config with its optional sections uncommented and the Redis
/// store set, as its comments tell a reader to do.
fn example_with_every_section() -> String {
    let text = include_str!("../../examples/server/orchestra.toml");
    let (head, optional) = text
        .split_once("# ---- Optional sections: uncomment to use ----")
        .expect("the example marks its optional sections");
    let head = head.replace("store = \"memory\"", "store = \"redis://127.0.0.1:6379/0\"");
    let settings: Vec<&str> = optional
        .lines()
        .filter(|l| !l.starts_with("##"))
        .map(|l| l.strip_prefix("# ").unwrap_or(l.trim_start_matches('#')))
        .collect();
    format!("{head}\n{}\n", settings.join("\n"))
}

#[test]
fn the_example_configs_optional_sections_parse_when_uncommented() {
    let config = Config::from_toml_str(&example_with_every_section()).unwrap();
    assert!(matches!(
        config.store_kind().unwrap(),
        orchestra_server::config::StoreKind::Redis(_)
    ));
    assert_eq!(config.redis.prefix, "orchestra");
    assert_eq!(config.queue.workers, 2);
    assert_eq!(config.queue.max_deliveries, 5);
    let etcd = config.discovery.etcd.as_ref().expect("[discovery.etcd]");
    assert_eq!(etcd.endpoints, ["http://127.0.0.1:2379"]);
    assert!(
        config
            .agents
            .iter()
            .any(|a| a.kind == "openai" && a.name == "assistant")
    );
    assert_eq!(config.managers.len(), 1);
    assert_eq!(config.planners.len(), 1);
}

#[tokio::test]
async fn the_example_config_parses_and_starts_with_its_secrets_set() {
    let text = include_str!("../../examples/server/orchestra.toml");
    let config = Config::from_toml_str(text).unwrap();
    assert_eq!(config.agents.len(), 2);
    assert!(config.demo_agents_enabled());
    // Without its secrets the example refuses to start, naming the variable.
    if std::env::var_os("WIKI_SEARCH_TOKEN").is_none() {
        let err = AppState::from_config(config).await.err().unwrap();
        assert!(err.to_string().contains("WIKI_SEARCH_TOKEN"), "{err}");
    }
}
