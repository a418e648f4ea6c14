//! Where agents come from. A [`Discovery`] returns [`AgentDescriptor`]s;
//! [`sync_agents`] turns them into registered agents. Static configuration
//! ([`StaticDiscovery`]) is the only source today; registries (Redis
//! registration with heartbeats, A2A agent cards) implement the same trait.
//!
//! Agent URLs come only from here, never from request bodies: a request names
//! agents, and only agents that discovery registered can be named.
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! use orchestra_server::{config::Config, discovery::{Discovery, StaticDiscovery}};
//! let found = StaticDiscovery::from_config(&Config::default()).discover().await.unwrap();
//! assert!(found.iter().any(|a| a.name == "demo_writer" && a.source == "builtin"));
//! # });
//! ```

use std::{collections::HashSet, sync::RwLock, time::Duration};

use async_trait::async_trait;
use orchestra_core::{AgentRef, Orchestrator, agents::http::HttpAgent};
use serde::Serialize;
use utoipa::ToSchema;

use crate::{
    config::{AgentConfig, Config, resolve_secret},
    demo,
};

/// Why agents could not be discovered or built.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    #[error("agent '{agent}': {message}")]
    InvalidAgent { agent: String, message: String },
    #[error("discovery source '{source_name}' failed: {message}")]
    Source {
        source_name: String,
        message: String,
    },
}

/// An agent as a discovery source describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentDescriptor {
    pub name: String,
    /// "http" or "demo" (more kinds come with more agent types).
    pub kind: String,
    pub description: String,
    /// Which source found it: "config", "builtin", "redis", ...
    pub source: String,
    pub url: Option<String>,
    pub timeout: Option<Duration>,
    /// Header name and value; values may be `env:NAME` references.
    pub headers: Vec<(String, String)>,
    pub health_url: Option<String>,
    pub critical: bool,
}

impl AgentDescriptor {
    fn from_config(c: &AgentConfig) -> Self {
        Self {
            name: c.name.clone(),
            kind: c.kind.clone(),
            description: c.description.clone(),
            source: "config".into(),
            url: c.url.clone(),
            timeout: c.timeout_ms.map(Duration::from_millis),
            headers: c
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            health_url: c.health_url.clone(),
            critical: c.critical,
        }
    }
}

/// A source of agents.
///
/// Implemented by [`StaticDiscovery`]; registry-backed sources (Redis, A2A
/// cards) implement it too. `discover` may be called repeatedly (at start-up
/// and on refresh) and concurrently, and returns the full current set.
#[async_trait]
pub trait Discovery: Send + Sync {
    /// A short name for logs and health output.
    fn name(&self) -> &str;
    async fn discover(&self) -> Result<Vec<AgentDescriptor>, DiscoveryError>;
}

/// Agents listed in the configuration, plus the demo agents when enabled.
#[derive(Debug, Clone, Default)]
pub struct StaticDiscovery {
    agents: Vec<AgentDescriptor>,
}

impl StaticDiscovery {
    pub fn from_config(config: &Config) -> Self {
        let mut agents: Vec<AgentDescriptor> = config
            .agents
            .iter()
            .map(AgentDescriptor::from_config)
            .collect();
        if config.demo_agents_enabled() {
            let configured: HashSet<String> = agents.iter().map(|a| a.name.clone()).collect();
            for (name, description) in demo::DEMO_AGENTS {
                if !configured.contains(*name) {
                    agents.push(AgentDescriptor {
                        name: (*name).to_owned(),
                        kind: "demo".into(),
                        description: (*description).to_owned(),
                        source: "builtin".into(),
                        url: None,
                        timeout: None,
                        headers: Vec::new(),
                        health_url: None,
                        critical: false,
                    });
                }
            }
        }
        Self { agents }
    }
}

#[async_trait]
impl Discovery for StaticDiscovery {
    fn name(&self) -> &str {
        "static"
    }

    async fn discover(&self) -> Result<Vec<AgentDescriptor>, DiscoveryError> {
        Ok(self.agents.clone())
    }
}

/// Builds the agent a descriptor describes. `client` is shared by all HTTP
/// agents so they share one connection pool.
pub fn build_agent(
    d: &AgentDescriptor,
    client: &reqwest::Client,
) -> Result<AgentRef, DiscoveryError> {
    let invalid = |message: String| DiscoveryError::InvalidAgent {
        agent: d.name.clone(),
        message,
    };
    match d.kind.as_str() {
        "http" => {
            let url = d
                .url
                .as_deref()
                .ok_or_else(|| invalid("kind \"http\" needs a url".into()))?;
            let mut b = HttpAgent::builder(&d.name, url)
                .description(&d.description)
                .client(client.clone());
            if let Some(t) = d.timeout {
                b = b.timeout(t);
            }
            for (name, value) in &d.headers {
                let value = resolve_secret(value).map_err(|e| invalid(e.to_string()))?;
                b = b.header(name, &value).map_err(|e| invalid(e.to_string()))?;
            }
            Ok(std::sync::Arc::new(
                b.build().map_err(|e| invalid(e.to_string()))?,
            ))
        }
        "demo" => demo::demo_agent(&d.name).ok_or_else(|| {
            invalid(format!(
                "no built-in demo agent is called '{}' (known: {})",
                d.name,
                demo::DEMO_AGENTS
                    .iter()
                    .map(|(n, _)| *n)
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        }),
        other => Err(invalid(format!(
            "unknown kind '{other}' (expected \"http\" or \"demo\")"
        ))),
    }
}

/// An agent as `GET /agents` lists it.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct AgentListing {
    pub name: String,
    pub kind: String,
    pub description: String,
    /// Which discovery source found it ("config", "builtin", ...).
    pub source: String,
    /// "ok", "down" (its health probe failed) or "unknown" (no probe configured).
    pub health: String,
    /// Why the probe failed, when it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health_error: Option<String>,
    /// Whether `/health` depends on this agent.
    pub critical: bool,
    /// Its circuit breaker (and concurrency limit, when one is set).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub circuit: Option<orchestra_core::CircuitStatus>,
}

/// The descriptors of the registered agents, for listings and probes.
#[derive(Default)]
pub struct AgentRegistry {
    agents: RwLock<Vec<AgentDescriptor>>,
}

impl AgentRegistry {
    pub fn descriptors(&self) -> Vec<AgentDescriptor> {
        match self.agents.read() {
            Ok(a) => a.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    fn replace(&self, agents: Vec<AgentDescriptor>) {
        match self.agents.write() {
            Ok(mut a) => *a = agents,
            Err(p) => *p.into_inner() = agents,
        }
    }
}

/// Registers what `discovery` returns and removes agents it no longer lists.
/// Any invalid agent fails the whole sync, so a bad configuration is noticed
/// at start-up rather than at the first run that names the agent.
pub async fn sync_agents(
    discovery: &dyn Discovery,
    orch: &Orchestrator,
    registry: &AgentRegistry,
    client: &reqwest::Client,
) -> Result<usize, DiscoveryError> {
    let found = discovery.discover().await?;
    let built = found
        .iter()
        .map(|d| build_agent(d, client))
        .collect::<Result<Vec<_>, _>>()?;
    let names: HashSet<&str> = found.iter().map(|d| d.name.as_str()).collect();
    for old in registry.descriptors() {
        if !names.contains(old.name.as_str()) {
            orch.remove_agent(&old.name);
        }
    }
    for agent in built {
        orch.register_arc(agent);
    }
    let count = found.len();
    tracing::info!(
        source = discovery.name(),
        agents = count,
        "agents registered"
    );
    registry.replace(found);
    Ok(count)
}

/// Probes an agent's `health_url` (if any) with a short GET.
pub async fn probe(d: &AgentDescriptor, client: &reqwest::Client) -> (String, Option<String>) {
    if d.kind == "demo" {
        return ("ok".into(), None);
    }
    let Some(url) = &d.health_url else {
        return ("unknown".into(), None);
    };
    match client.get(url).timeout(Duration::from_secs(2)).send().await {
        Ok(r) if r.status().is_success() => ("ok".into(), None),
        Ok(r) => (
            "down".into(),
            Some(format!("health probe answered {}", r.status())),
        ),
        Err(e) => ("down".into(), Some(format!("health probe failed: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_agents_need_a_url_and_set_env_secrets() {
        let client = reqwest::Client::new();
        let mut d = AgentDescriptor::from_config(&AgentConfig {
            name: "search".into(),
            kind: "http".into(),
            description: "searches".into(),
            url: None,
            timeout_ms: None,
            headers: Default::default(),
            health_url: None,
            critical: false,
            policy: None,
        });
        let e = build_agent(&d, &client).err().unwrap();
        assert!(e.to_string().contains("needs a url"), "{e}");
        d.url = Some("http://127.0.0.1:9/invoke".into());
        d.headers = vec![("authorization".into(), "env:ORCHESTRA_SURELY_UNSET".into())];
        let e = build_agent(&d, &client).err().unwrap();
        assert!(e.to_string().contains("ORCHESTRA_SURELY_UNSET"), "{e}");
        d.headers.clear();
        assert_eq!(build_agent(&d, &client).unwrap().name(), "search");
    }

    #[test]
    fn configured_agents_turn_the_demo_agents_off() {
        let config = Config::from_toml_str(
            "[[agents]]\nname = \"w\"\nkind = \"http\"\nurl = \"http://127.0.0.1:9/\"\n",
        )
        .unwrap();
        let d = StaticDiscovery::from_config(&config);
        assert_eq!(d.agents.len(), 1);
        assert_eq!(d.agents[0].source, "config");
    }
}
