//! `GET /ui` and `GET /ui/*`: the web console, a single-page app whose built
//! files (`orchestra-server/ui/dist/`) are embedded in the binary at compile
//! time by `build.rs`, so serving it needs no Node and no files on disk.
//!
//! - `/ui`, `/ui/` and every path that is not a file answer `index.html`, so
//!   the console's own paths (`/ui/sessions/{id}`, …) survive a reload.
//! - Files under `/ui/assets/` have content-hashed names: they are cached for
//!   a year as immutable; a missing one is a 404, never the page.
//! - Everything else (`index.html`, `favicon.svg`) is `no-cache` and
//!   revalidated with its ETag (`If-None-Match` answers 304).
//!
//! The router mounts these routes outside the API-key check: the page holds
//! no secrets, and the API calls it makes carry the key the user enters.
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! use tower::ServiceExt;
//! let app: axum::Router = orchestra_server::routes::ui::router();
//! let res = app.oneshot(axum::http::Request::get("/ui").body(axum::body::Body::empty()).unwrap())
//!     .await.unwrap();
//! assert_eq!(res.headers()["content-type"], "text/html; charset=utf-8");
//! # });
//! ```

use axum::{
    Router,
    extract::Path,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{MethodRouter, get},
};

use crate::error::ApiError;

include!(concat!(env!("OUT_DIR"), "/ui_assets.rs"));

/// Where the console is served.
pub const UI_PATH: &str = "/ui";

const INDEX: &str = "index.html";
const IMMUTABLE: &str = "public, max-age=31536000, immutable";
const REVALIDATE: &str = "no-cache";
/// Only this origin's scripts, styles and API; inline `style` attributes are
/// used for per-agent colours.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
                   img-src 'self' data:; connect-src 'self'; base-uri 'none'; \
                   frame-ancestors 'none'; form-action 'self'";

/// The console's routes. Stateless, so it merges into any router.
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route(UI_PATH, page())
        .route("/ui/", page())
        .route("/ui/{*path}", get(file).fallback(method_not_allowed))
}

fn page<S: Clone + Send + Sync + 'static>() -> MethodRouter<S> {
    get(|headers: HeaderMap| async move { serve("", &headers) }).fallback(method_not_allowed)
}

async fn file(Path(path): Path<String>, headers: HeaderMap) -> Response {
    serve(&path, &headers)
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "the console only answers GET and HEAD",
    )
}

/// The embedded file at `path` (relative to `/ui/`), if there is one.
pub fn asset(path: &str) -> Option<(&'static [u8], &'static str)> {
    UI_ASSETS
        .iter()
        .find(|(p, _, _)| *p == path)
        .map(|(_, bytes, etag)| (*bytes, *etag))
}

fn serve(path: &str, headers: &HeaderMap) -> Response {
    let path = path.trim_start_matches('/');
    let (name, found) = match asset(path) {
        Some(found) if !path.is_empty() => (path, found),
        // Hashed assets are never substituted: a stale page asking for an
        // old bundle gets a clear 404 rather than HTML parsed as script.
        _ if path.starts_with("assets/") => {
            return ApiError::not_found("not_found", format!("no console file '/ui/{path}'"))
                .into_response();
        }
        _ => match asset(INDEX) {
            Some(found) => (INDEX, found),
            None => {
                return ApiError::not_found(
                    "ui_not_built",
                    "this binary was built without the console: run scripts/build-ui, then rebuild",
                )
                .into_response();
            }
        },
    };
    let (bytes, etag) = found;
    let cache = if name.starts_with("assets/") {
        IMMUTABLE
    } else {
        REVALIDATE
    };
    let mut out = HeaderMap::new();
    out.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    out.insert(header::ETAG, HeaderValue::from_static(etag));
    out.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    let not_modified = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    if not_modified {
        return (StatusCode::NOT_MODIFIED, out).into_response();
    }
    out.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type(name)),
    );
    if name == INDEX {
        out.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        );
        out.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
    }
    (out, bytes).into_response()
}

/// The media type of a console file, from its extension.
pub fn content_type(path: &str) -> &'static str {
    let ext = path.rsplit_once('.').map_or("", |(_, e)| e);
    match ext.to_ascii_lowercase().as_str() {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types_follow_the_extension() {
        assert_eq!(content_type("index.html"), "text/html; charset=utf-8");
        assert_eq!(
            content_type("assets/index-AbC.js"),
            "text/javascript; charset=utf-8"
        );
        assert_eq!(content_type("assets/x.CSS"), "text/css; charset=utf-8");
        assert_eq!(content_type("favicon.svg"), "image/svg+xml");
        assert_eq!(content_type("LICENSE"), "application/octet-stream");
    }

    #[test]
    fn the_built_console_is_embedded_with_its_page_and_a_bundle() {
        assert!(asset(INDEX).is_some(), "ui/dist/index.html is not embedded");
        assert!(
            UI_ASSETS
                .iter()
                .any(|(p, _, _)| p.starts_with("assets/") && p.ends_with(".js")),
            "no script bundle embedded"
        );
        for (path, _, etag) in UI_ASSETS {
            assert!(
                etag.starts_with('"') && etag.ends_with('"'),
                "{path}: {etag}"
            );
        }
    }
}
