//! Optional Bearer API keys. With no keys configured every route is open;
//! otherwise every route needs `Authorization: Bearer <key>`, except
//! `/health` and `/metrics` unless `auth.protect_health` / `auth.protect_metrics`.

use axum::{
    extract::{Request, State},
    http::header,
    middleware::Next,
    response::{IntoResponse, Response},
};

use crate::{error::ApiError, state::AppState};

pub async fn require_api_key(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if state.api_keys.is_empty() || is_open(&state, req.uri().path()) {
        return next.run(req).await;
    }
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, key) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| key.trim())
        });
    match presented {
        Some(key)
            if state
                .api_keys
                .iter()
                .any(|k| constant_time_eq(k.as_bytes(), key.as_bytes())) =>
        {
            next.run(req).await
        }
        _ => ApiError::unauthorized().into_response(),
    }
}

fn is_open(state: &AppState, path: &str) -> bool {
    let auth = &state.config.auth;
    (path == "/health" && !auth.protect_health) || (path == "/metrics" && !auth.protect_metrics)
}

/// Compares without an early exit, so timing does not reveal how much of a key matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_compare_exactly() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
    }
}
