//! The web console at `/ui`: the embedded page and assets through the whole
//! router (auth included), driven in-process with `oneshot`.

use axum::{
    Router,
    body::{Body, to_bytes},
    http::{HeaderMap, Request, StatusCode, header},
};
use orchestra_server::{config::Config, router, routes::ui, state::AppState};
use tower::ServiceExt;

async fn app(toml: &str) -> Router {
    let config = Config::from_toml_str(toml).unwrap();
    router(AppState::from_config(config).await.unwrap())
}

async fn get(
    app: &Router,
    path: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, HeaderMap, Vec<u8>) {
    let mut req = Request::get(path);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let res = app
        .clone()
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let bytes = to_bytes(res.into_body(), 1 << 22).await.unwrap();
    (status, headers, bytes.to_vec())
}

/// The page's script and stylesheet paths, read from the served index.html.
fn asset_paths(html: &str) -> Vec<String> {
    html.split('"')
        .filter(|s| s.starts_with("/ui/assets/"))
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn ui_serves_index_html_at_every_page_path() {
    let app = app("").await;
    for path in [
        "/ui",
        "/ui/",
        "/ui/sessions",
        "/ui/sessions/abc-1",
        "/ui/runs/r1",
    ] {
        let (status, headers, body) = get(&app, path, &[]).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert_eq!(
            headers[header::CONTENT_TYPE],
            "text/html; charset=utf-8",
            "{path}"
        );
        assert_eq!(headers[header::CACHE_CONTROL], "no-cache", "{path}");
        assert!(headers.contains_key(header::ETAG), "{path}");
        assert!(
            headers[header::CONTENT_SECURITY_POLICY]
                .to_str()
                .unwrap()
                .contains("default-src 'self'"),
            "{path}"
        );
        let html = String::from_utf8(body).unwrap();
        assert!(html.contains("<div id=\"app\"></div>"), "{path}: {html}");
        assert!(html.contains("<title>Orchestra console</title>"));
    }
}

#[tokio::test]
async fn ui_assets_have_their_content_type_and_are_cached_as_immutable() {
    let app = app("").await;
    let (_, _, body) = get(&app, "/ui", &[]).await;
    let paths = asset_paths(&String::from_utf8(body).unwrap());
    let js = paths.iter().find(|p| p.ends_with(".js")).expect("a script");
    let css = paths
        .iter()
        .find(|p| p.ends_with(".css"))
        .expect("a stylesheet");

    let (status, headers, body) = get(&app, js, &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        headers[header::CONTENT_TYPE],
        "text/javascript; charset=utf-8"
    );
    assert_eq!(
        headers[header::CACHE_CONTROL],
        "public, max-age=31536000, immutable"
    );
    assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    assert_eq!(
        Some(body.as_slice()),
        ui::asset(js.trim_start_matches("/ui/")).map(|a| a.0)
    );

    let (status, headers, _) = get(&app, css, &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "text/css; charset=utf-8");

    let (status, headers, body) = get(&app, "/ui/favicon.svg", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "image/svg+xml");
    assert_eq!(headers[header::CACHE_CONTROL], "no-cache");
    assert!(String::from_utf8(body).unwrap().starts_with("<svg"));
}

#[tokio::test]
async fn a_missing_asset_is_404_not_the_page() {
    let app = app("").await;
    let (status, headers, body) = get(&app, "/ui/assets/index-gone.js", &[]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(headers[header::CONTENT_TYPE], "application/json");
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["error"]["code"], "not_found");
}

#[tokio::test]
async fn ui_answers_304_when_the_etag_matches() {
    let app = app("").await;
    let (_, headers, _) = get(&app, "/ui", &[]).await;
    let etag = headers[header::ETAG].to_str().unwrap().to_owned();
    let (status, headers, body) = get(&app, "/ui/", &[("if-none-match", &etag)]).await;
    assert_eq!(status, StatusCode::NOT_MODIFIED);
    assert_eq!(headers[header::ETAG], etag.as_str());
    assert!(body.is_empty());
    let (status, _, _) = get(&app, "/ui/", &[("if-none-match", "\"other\"")]).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn ui_is_open_without_an_api_key_while_the_api_is_not() {
    let app = app("[auth]\napi_keys = [\"k1\"]\n").await;
    let (status, _, _) = get(&app, "/ui", &[]).await;
    assert_eq!(status, StatusCode::OK);
    let (_, _, body) = get(&app, "/ui", &[]).await;
    for asset in asset_paths(&String::from_utf8(body).unwrap()) {
        let (status, _, _) = get(&app, &asset, &[]).await;
        assert_eq!(status, StatusCode::OK, "{asset}");
    }
    let (status, _, _) = get(&app, "/patterns", &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, _) = get(&app, "/patterns", &[("authorization", "Bearer k1")]).await;
    assert_eq!(status, StatusCode::OK);
    // Paths that only look like the console stay protected.
    let (status, _, _) = get(&app, "/uix", &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn ui_refuses_other_methods() {
    let app = app("").await;
    let req = Request::post("/ui/sessions").body(Body::empty()).unwrap();
    let res = app.oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED);
}
