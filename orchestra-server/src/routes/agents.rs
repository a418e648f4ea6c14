//! `GET /agents`: the agents discovery registered, with their health.

use axum::{Json, extract::State};
use serde::Serialize;
use utoipa::ToSchema;

use crate::{
    discovery::{AgentListing, probe},
    error::ErrorBody,
    state::AppState,
};

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
            name: d.name,
            kind: d.kind,
            description: d.description,
            source: d.source,
            health,
            health_error,
            critical: d.critical,
        })
        .collect()
}
