//! `GET /agents`: the agents discovery registered, with their health.
//! `POST /agents/register` and `DELETE /agents/{name}`: agent services
//! registering themselves in Redis with a heartbeat TTL.

use std::time::Duration;

use axum::{
    Json,
    extract::{Path, State},
    http::StatusCode,
};
use orchestra_core::discovery::AgentRegistration;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::{
    discovery::{AgentListing, probe},
    error::{ApiError, ApiJson, ErrorBody},
    state::AppState,
};

/// Longest heartbeat TTL accepted from a registration.
pub const MAX_TTL_SECS: u64 = 24 * 3600;

#[derive(Debug, Serialize, ToSchema)]
pub struct AgentList {
    pub agents: Vec<AgentListing>,
}

/// Lists the registered agents; HTTP agents with a `health_url` are probed.
#[utoipa::path(
    get,
    path = "/agents",
    tag = "agents",
    responses(
        (status = 200, description = "Registered agents", body = AgentList),
        (status = 401, description = "Missing or wrong API key", body = ErrorBody),
    )
)]
pub async fn list_agents(State(state): State<AppState>) -> Json<AgentList> {
    Json(AgentList {
        agents: listings(&state).await,
    })
}

/// Every registered agent with a fresh probe result (probes run concurrently).
pub async fn listings(state: &AppState) -> Vec<AgentListing> {
    let descriptors = state.registry.descriptors();
    let probes = descriptors.iter().map(|d| probe(d, &state.http));
    let results = futures::future::join_all(probes).await;
    let mut circuits: std::collections::HashMap<String, _> = state
        .orch
        .circuit_states()
        .into_iter()
        .map(|s| (s.agent.clone(), s))
        .collect();
    descriptors
        .into_iter()
        .zip(results)
        .map(|(d, (health, health_error))| AgentListing {
            circuit: circuits.remove(&d.name),
            // Agents that describe themselves (A2A cards) fill in what the config left empty.
            description: match (d.description.is_empty(), state.orch.agent(&d.name)) {
                (true, Some(agent)) => agent.description().to_owned(),
                _ => d.description,
            },
            name: d.name,
            kind: d.kind,
            source: d.source,
            capabilities: d.capabilities,
            health,
            health_error,
            critical: d.critical,
        })
        .collect()
}

/// A registration (and each heartbeat: send it again every `ttl_s / 3`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterBody {
    /// 1-128 characters of A-Z a-z 0-9 - _ .
    pub name: String,
    /// "http" (a generic agent service; the only kind accepted).
    #[serde(default = "http_kind")]
    pub kind: String,
    /// Where the service answers (http:// or https://).
    pub url: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub capabilities: Vec<String>,
    /// Seconds the registration lives after this beat (default `discovery.default_ttl_secs`).
    #[serde(default)]
    pub ttl_s: Option<u64>,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub metadata: Map<String, Value>,
}

fn http_kind() -> String {
    "http".into()
}

/// The answer to a registration.
#[derive(Debug, Serialize, ToSchema)]
pub struct Registered {
    pub name: String,
    pub ttl_s: u64,
    /// Send the registration again this often to stay registered.
    pub heartbeat_every_ms: u64,
}

/// Registers an agent service (or renews its registration).
///
/// The agent is routable on this instance at once and on every other
/// instance within `discovery.refresh_ms`; it drops out of `/agents` and of
/// routing within one TTL after its last beat.
#[utoipa::path(
    post,
    path = "/agents/register",
    tag = "agents",
    request_body = RegisterBody,
    responses(
        (status = 200, description = "Registered for `ttl_s` seconds", body = Registered),
        (status = 401, description = "Missing or wrong API key", body = ErrorBody),
        (status = 409, description = "`agent_exists` (a configured agent has this name) or `redis_required`", body = ErrorBody),
        (status = 422, description = "Invalid registration (`invalid_registration`, `invalid_request`)", body = ErrorBody),
        (status = 503, description = "Redis unavailable (`store_unavailable`)", body = ErrorBody),
    )
)]
pub async fn register_agent(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<RegisterBody>,
) -> Result<Json<Registered>, ApiError> {
    let redis = state
        .redis
        .as_ref()
        .ok_or_else(|| ApiError::redis_required("agent registration"))?;
    let invalid =
        |m: String| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_registration", m);
    if body.kind != "http" {
        return Err(invalid(format!(
            "kind '{}' cannot be registered (only \"http\"; configure openai and a2a agents in [[agents]])",
            body.kind
        )));
    }
    if !(body.url.starts_with("http://") || body.url.starts_with("https://")) {
        return Err(invalid("url must start with http:// or https://".into()));
    }
    let ttl_s = body
        .ttl_s
        .unwrap_or(state.config.discovery.default_ttl_secs);
    if ttl_s == 0 || ttl_s > MAX_TTL_SECS {
        return Err(invalid(format!(
            "ttl_s must be between 1 and {MAX_TTL_SECS}"
        )));
    }
    refuse_configured(&state, &body.name)?;
    let registration = AgentRegistration {
        name: body.name,
        kind: body.kind,
        url: body.url,
        description: body.description,
        capabilities: body.capabilities,
        metadata: body.metadata,
    };
    let ttl = Duration::from_secs(ttl_s);
    redis.registry(ttl).register(&registration).await?;
    state.refresh_agents().await;
    Ok(Json(Registered {
        name: registration.name,
        ttl_s,
        heartbeat_every_ms: (ttl / 3).as_millis() as u64,
    }))
}

/// Removes a registration at once (a service shutting down cleanly).
#[utoipa::path(
    delete,
    path = "/agents/{name}",
    tag = "agents",
    params(("name" = String, Path, description = "The registered name")),
    responses(
        (status = 204, description = "Removed"),
        (status = 401, description = "Missing or wrong API key", body = ErrorBody),
        (status = 404, description = "No such registration (`agent_not_found`)", body = ErrorBody),
        (status = 409, description = "`agent_exists` (a configured agent, not a registration) or `redis_required`", body = ErrorBody),
        (status = 503, description = "Redis unavailable (`store_unavailable`)", body = ErrorBody),
    )
)]
pub async fn deregister_agent(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    let redis = state
        .redis
        .as_ref()
        .ok_or_else(|| ApiError::redis_required("agent registration"))?;
    refuse_configured(&state, &name)?;
    let ttl = Duration::from_secs(state.config.discovery.default_ttl_secs);
    let removed = redis.registry(ttl).deregister(&name).await?;
    state.refresh_agents().await;
    if removed {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(
            "agent_not_found",
            format!("no registered agent '{name}'"),
        ))
    }
}

/// Registrations cannot shadow or remove agents from the configuration.
fn refuse_configured(state: &AppState, name: &str) -> Result<(), ApiError> {
    match state.registry.get(name) {
        Some(d) if d.source != "redis" => Err(ApiError::new(
            StatusCode::CONFLICT,
            "agent_exists",
            format!(
                "'{name}' is a {} agent of this server, not a registration",
                d.source
            ),
        )),
        _ => Ok(()),
    }
}
