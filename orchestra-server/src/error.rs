//! [`ApiError`]: every error response, as `{"error":{"code","message"}}` with
//! a stable snake_case code, and [`ApiJson`], the JSON body extractor that
//! turns every rejection into one.
//!
//! Status codes: malformed JSON 400 `invalid_json`; a body of the wrong shape
//! (wrong types, missing or unknown fields) 422 `invalid_request`; a request
//! the core refuses (unknown pattern or agent, bad options, bad session id)
//! 400 with the core's code; wrong content type 415; body over the limit 413;
//! missing or wrong API key 401. 5xx bodies never carry internal details.

use axum::{
    Json,
    body::Bytes,
    extract::{FromRequest, Request, rejection::BytesRejection},
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use orchestra_core::{OrchestraError, StoreError, discovery::DiscoveryError, queue::QueueError};
use serde::{Serialize, de::DeserializeOwned};
use utoipa::ToSchema;

/// An error answer.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

/// The JSON body of every error response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable snake_case code, e.g. `unknown_agent`, `invalid_json`, `session_not_found`.
    pub code: String,
    /// Human-readable explanation; never contains internal details for 5xx.
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }

    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid API key is required: send 'Authorization: Bearer <key>'",
        )
    }

    pub fn internal(context: &str, error: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %error, "{context}");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "internal server error",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let message = if self.status.is_server_error() {
            // The details went to the log; the client gets the code only.
            match self.status {
                StatusCode::SERVICE_UNAVAILABLE => "service temporarily unavailable".to_owned(),
                StatusCode::GATEWAY_TIMEOUT => "request timed out".to_owned(),
                _ => "internal server error".to_owned(),
            }
        } else {
            self.message
        };
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_owned(),
                message,
            },
        };
        let mut response = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl From<OrchestraError> for ApiError {
    fn from(e: OrchestraError) -> Self {
        if e.is_invalid_request() {
            return Self::new(StatusCode::BAD_REQUEST, e.code(), e.to_string());
        }
        let status = match &e {
            OrchestraError::InvalidAnswer { .. } => Some(StatusCode::UNPROCESSABLE_ENTITY),
            OrchestraError::UnknownRun { .. } => Some(StatusCode::NOT_FOUND),
            OrchestraError::RunState { .. } | OrchestraError::InputExpired { .. } => {
                Some(StatusCode::CONFLICT)
            }
            _ => None,
        };
        if let Some(status) = status {
            return Self::new(status, e.code(), e.to_string());
        }
        match e {
            OrchestraError::Store(s) => s.into(),
            other => {
                tracing::error!(error = %other, code = other.code(), "request failed");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    other.code(),
                    other.to_string(),
                )
            }
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, code = e.code(), "session store failed");
        let status = match e {
            StoreError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            StoreError::Conflict { .. } => StatusCode::CONFLICT,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Self::new(status, e.code(), e.to_string())
    }
}

impl From<QueueError> for ApiError {
    fn from(e: QueueError) -> Self {
        match e {
            QueueError::Store(s) => s.into(),
            QueueError::InvalidRunId(_) => {
                Self::new(StatusCode::BAD_REQUEST, "invalid_run_id", e.to_string())
            }
            QueueError::DuplicateRun(_) => {
                Self::new(StatusCode::CONFLICT, "duplicate_run", e.to_string())
            }
            QueueError::UnknownRun(_) => Self::not_found("run_not_found", e.to_string()),
            other => Self::internal("run queue failed", &other),
        }
    }
}

impl From<DiscoveryError> for ApiError {
    fn from(e: DiscoveryError) -> Self {
        match e {
            DiscoveryError::Store(s) => s.into(),
            DiscoveryError::InvalidRegistration(_) => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_registration",
                e.to_string(),
            ),
            other => Self::internal("agent registry failed", &other),
        }
    }
}

impl ApiError {
    /// A feature that needs the Redis store, asked of a server on the memory store.
    pub fn redis_required(what: &str) -> Self {
        Self::new(
            StatusCode::CONFLICT,
            "redis_required",
            format!(
                "{what} needs the Redis store (store = \"redis://…\"); this server keeps state in memory"
            ),
        )
    }
}

/// A JSON body whose rejections are [`ApiError`]s with stable codes.
#[derive(Debug, Clone)]
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json(&req) {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "expected 'Content-Type: application/json'",
            ));
        }
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(bytes_rejection)?;
        Ok(Self(parse_json(&bytes)?))
    }
}

fn is_json(req: &Request) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(str::trim)
        .is_some_and(|mime| {
            mime.eq_ignore_ascii_case("application/json")
                || (mime.starts_with("application/") && mime.ends_with("+json"))
        })
}

fn bytes_rejection(r: BytesRejection) -> ApiError {
    if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "request body is larger than the server's limit",
        )
    } else {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_body",
            format!("could not read the request body: {}", r.body_text()),
        )
    }
}

/// Parses in two stages so syntax errors (400) and shape errors (422) get
/// different codes, and shape errors name the offending field.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            format!("request body is not valid JSON: {e}"),
        )
    })?;
    parse_value(value)
}

/// The shape stage of [`parse_json`], for a body already parsed as JSON.
pub fn parse_value<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." { "body".into() } else { path };
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
            format!("invalid request: {field}: {}", e.into_inner()),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        task: String,
        agents: Option<Vec<String>>,
    }

    #[test]
    fn syntax_errors_are_400_and_shape_errors_422_naming_the_field() {
        let e = parse_json::<Body>(b"{\"task\":").unwrap_err();
        assert_eq!(
            (e.status, e.code),
            (StatusCode::BAD_REQUEST, "invalid_json")
        );
        let e = parse_json::<Body>(br#"{"task":"t","agents":[1]}"#).unwrap_err();
        assert_eq!(e.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(e.message.contains("agents[0]"), "{}", e.message);
    }

    #[test]
    fn server_errors_hide_their_message() {
        let e = ApiError::from(StoreError::Backend("password=hunter2 at 10.0.0.3".into()));
        let response = e.into_response();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body =
            futures::executor::block_on(axum::body::to_bytes(response.into_body(), 4096)).unwrap();
        let text = String::from_utf8_lossy(&body);
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("store_error"), "{text}");
    }

    #[test]
    fn invalid_core_requests_are_400_with_the_core_code() {
        let e = ApiError::from(OrchestraError::UnknownAgent {
            name: "ghost".into(),
        });
        assert_eq!(
            (e.status, e.code),
            (StatusCode::BAD_REQUEST, "unknown_agent")
        );
    }
}
