//! Where agents come from. A [`Discovery`] returns [`AgentDescriptor`]s;
//! [`sync_agents`] turns them into registered agents. Sources:
//! [`StaticDiscovery`] (the configuration and the demo agents) and
//! [`RedisDiscovery`] (agent services registered in Redis with a heartbeat
//! TTL), combined by [`MergedDiscovery`]. The server refreshes the set every
//! `discovery.refresh_ms` ([`refresh_agents`]), so registrations that stop
//! beating drop out of `/agents` and out of routing.
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

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex, RwLock},
    time::Duration,
};

use async_trait::async_trait;
use orchestra_core::{
    AgentRef, Orchestrator,
    agents::{
        a2a::{A2aAgent, A2aAgentConfig},
        http::HttpAgent,
        openai::OpenAiAgentConfig,
    },
    discovery::{RedisAgentRegistry, RegisteredAgent},
};
use serde::{Serialize, de::DeserializeOwned};
use serde_json::{Map, Value};
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
    /// "http", "openai", "a2a" or "demo".
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
    /// What a registered service says it can do.
    pub capabilities: Vec<String>,
    /// Kind-specific keys ("openai", "a2a").
    pub settings: Map<String, Value>,
}

impl AgentDescriptor {
    pub fn from_config(c: &AgentConfig) -> Self {
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
            capabilities: Vec::new(),
            settings: c.settings.clone(),
        }
    }

    /// An agent service registered in Redis (kind "http"), or a queue
    /// worker (kind "queue": the URL is its transport).
    pub fn from_registration(r: &RegisteredAgent) -> Self {
        let reg = &r.registration;
        if reg.kind == "queue" {
            return Self {
                name: reg.name.clone(),
                kind: reg.kind.clone(),
                description: reg.description.clone(),
                source: "redis".into(),
                url: None,
                timeout: None,
                headers: Vec::new(),
                health_url: None,
                critical: false,
                capabilities: reg.capabilities.clone(),
                settings: crate::queue_agents::registration_settings(&reg.url, &reg.metadata),
            };
        }
        Self {
            name: reg.name.clone(),
            kind: reg.kind.clone(),
            description: reg.description.clone(),
            source: "redis".into(),
            url: Some(reg.url.clone()),
            timeout: None,
            headers: Vec::new(),
            health_url: None,
            critical: false,
            capabilities: reg.capabilities.clone(),
            settings: Map::new(),
        }
    }

    fn invalid(&self, message: impl Into<String>) -> DiscoveryError {
        DiscoveryError::InvalidAgent {
            agent: self.name.clone(),
            message: message.into(),
        }
    }

    /// Checks the kind-specific keys without reading the environment, so a
    /// typo is reported when the configuration is loaded.
    pub fn check_settings(&self) -> Result<(), DiscoveryError> {
        match self.kind.as_str() {
            "openai" => self.openai_config(false).map(|_| ()),
            "a2a" => self.a2a_config(false).map(|_| ()),
            "queue" => crate::queue_agents::check_settings(self),
            kind => match self.settings.keys().next() {
                Some(key) => Err(self.invalid(format!(
                    "unknown key '{key}' for kind \"{kind}\" (keys: name, kind, description, \
                     url, timeout_ms, headers, health_url, critical)"
                ))),
                None => Ok(()),
            },
        }
    }

    fn headers_value(&self, resolve: bool) -> Result<Value, DiscoveryError> {
        let mut headers = Map::new();
        for (k, v) in &self.headers {
            let v = if resolve {
                resolve_secret(v).map_err(|e| self.invalid(e.to_string()))?
            } else {
                v.clone()
            };
            headers.insert(k.clone(), Value::String(v));
        }
        Ok(Value::Object(headers))
    }

    /// The core configuration of a kind "openai" agent.
    pub fn openai_config(&self, resolve: bool) -> Result<OpenAiAgentConfig, DiscoveryError> {
        if self.url.is_some() {
            return Err(self.invalid(
                "kind \"openai\" takes base_url (the API root, e.g. http://localhost:11434/v1), not url",
            ));
        }
        let mut map = self.settings.clone();
        map.insert("name".into(), Value::String(self.name.clone()));
        map.insert(
            "description".into(),
            Value::String(self.description.clone()),
        );
        if !self.headers.is_empty() {
            map.insert("headers".into(), self.headers_value(resolve)?);
        }
        if let Some(t) = self.timeout {
            map.insert("timeout_ms".into(), Value::from(t.as_millis() as u64));
        }
        self.parse(map)
    }

    /// The core configuration of a kind "a2a" agent (`card_url`, or `url`
    /// as the agent's base URL).
    pub fn a2a_config(&self, resolve: bool) -> Result<A2aAgentConfig, DiscoveryError> {
        let mut map = self.settings.clone();
        if let Some(url) = &self.url {
            if map.contains_key("card_url") {
                return Err(self.invalid("set card_url or url, not both"));
            }
            map.insert("card_url".into(), Value::String(url.clone()));
        }
        map.insert("name".into(), Value::String(self.name.clone()));
        if !self.description.is_empty() {
            map.insert(
                "description".into(),
                Value::String(self.description.clone()),
            );
        }
        if !self.headers.is_empty() {
            map.insert("headers".into(), self.headers_value(resolve)?);
        }
        if let Some(t) = self.timeout {
            map.insert("timeout_ms".into(), Value::from(t.as_millis() as u64));
        }
        self.parse(map)
    }

    fn parse<T: DeserializeOwned>(&self, map: Map<String, Value>) -> Result<T, DiscoveryError> {
        serde_path_to_error::deserialize(Value::Object(map)).map_err(|e| {
            let path = e.path().to_string();
            self.invalid(format!(
                "kind \"{}\": {path}: {}",
                self.kind,
                e.into_inner()
            ))
        })
    }
}

/// A source of agents.
///
/// Implemented by [`StaticDiscovery`], [`RedisDiscovery`],
/// [`EtcdDiscovery`](crate::etcd::EtcdDiscovery) and [`MergedDiscovery`].
/// `discover` may be called repeatedly (at start-up and on refresh) and
/// concurrently, and returns the full current set.
#[async_trait]
pub trait Discovery: Send + Sync {
    /// A short name for logs and health output.
    fn name(&self) -> &str;
    async fn discover(&self) -> Result<Vec<AgentDescriptor>, DiscoveryError>;

    /// Resolves when the source knows its set changed, so the server
    /// refreshes at once instead of at the next `discovery.refresh_ms` tick.
    /// Sources that are not watched never resolve (the periodic refresh
    /// covers them). One caller at a time.
    async fn changed(&self) {
        std::future::pending::<()>().await;
    }
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
        // The price table fills in prices of LLM agents by model.
        for a in agents.iter_mut().filter(|a| a.kind == "openai") {
            let price = a
                .settings
                .get("model")
                .and_then(Value::as_str)
                .and_then(|m| config.prices.get(m));
            if let (Some(price), false) = (price, a.settings.contains_key("price")) {
                a.settings.insert("price".into(), serde_json::json!(price));
            }
        }
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
                        capabilities: Vec::new(),
                        settings: Map::new(),
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

/// Agent services registered in Redis (`POST /agents/register`, or the key
/// layout of [`RedisAgentRegistry`]). Only kind "http" is routed; other
/// kinds are skipped with a warning.
#[derive(Debug, Clone)]
pub struct RedisDiscovery {
    registry: RedisAgentRegistry,
}

impl RedisDiscovery {
    pub fn new(registry: RedisAgentRegistry) -> Self {
        Self { registry }
    }
}

#[async_trait]
impl Discovery for RedisDiscovery {
    fn name(&self) -> &str {
        "redis"
    }

    async fn discover(&self) -> Result<Vec<AgentDescriptor>, DiscoveryError> {
        let live = self
            .registry
            .list()
            .await
            .map_err(|e| DiscoveryError::Source {
                source_name: "redis".into(),
                message: e.to_string(),
            })?;
        Ok(live
            .iter()
            .filter(|r| {
                let routable = matches!(r.registration.kind.as_str(), "http" | "queue");
                if !routable {
                    tracing::warn!(
                        agent = %r.registration.name,
                        kind = %r.registration.kind,
                        "skipping a registration of a kind other than \"http\" or \"queue\""
                    );
                }
                routable
            })
            .map(AgentDescriptor::from_registration)
            .collect())
    }
}

/// A primary source (the configuration: its errors are errors) followed by
/// secondary sources (registries: while one fails, its last answer is kept,
/// so a Redis outage does not empty the agent set). On a name clash the
/// earlier source wins: a registration cannot replace a configured agent.
pub struct MergedDiscovery {
    primary: Arc<dyn Discovery>,
    secondary: Vec<Arc<dyn Discovery>>,
    last: Mutex<HashMap<usize, Vec<AgentDescriptor>>>,
}

impl MergedDiscovery {
    pub fn new(primary: Arc<dyn Discovery>, secondary: Vec<Arc<dyn Discovery>>) -> Self {
        Self {
            primary,
            secondary,
            last: Mutex::new(HashMap::new()),
        }
    }
}

#[async_trait]
impl Discovery for MergedDiscovery {
    fn name(&self) -> &str {
        "merged"
    }

    async fn discover(&self) -> Result<Vec<AgentDescriptor>, DiscoveryError> {
        let mut all = self.primary.discover().await?;
        let mut names: HashSet<String> = all.iter().map(|a| a.name.clone()).collect();
        for (i, source) in self.secondary.iter().enumerate() {
            let found = match source.discover().await {
                Ok(found) => {
                    let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
                    last.insert(i, found.clone());
                    found
                }
                Err(e) => {
                    tracing::warn!(source = source.name(), error = %e, "discovery source failed; keeping its last answer");
                    let last = self.last.lock().unwrap_or_else(|p| p.into_inner());
                    last.get(&i).cloned().unwrap_or_default()
                }
            };
            for d in found {
                if names.insert(d.name.clone()) {
                    all.push(d);
                } else {
                    tracing::debug!(agent = %d.name, source = source.name(), "name taken by an earlier source; skipped");
                }
            }
        }
        Ok(all)
    }

    async fn changed(&self) {
        let sources = std::iter::once(&self.primary).chain(&self.secondary);
        futures::future::select_all(sources.map(|s| s.changed())).await;
    }
}

/// Builds the agent a descriptor describes. `client` is shared by all HTTP
/// agents so they share one connection pool. A2A agents read their agent
/// card here.
pub async fn build_agent(
    d: &AgentDescriptor,
    client: &reqwest::Client,
) -> Result<AgentRef, DiscoveryError> {
    match d.kind.as_str() {
        "http" => {
            d.check_settings()?;
            let url = d
                .url
                .as_deref()
                .ok_or_else(|| d.invalid("kind \"http\" needs a url"))?;
            let mut b = HttpAgent::builder(&d.name, url)
                .description(&d.description)
                .client(client.clone());
            if let Some(t) = d.timeout {
                b = b.timeout(t);
            }
            for (name, value) in &d.headers {
                let value = resolve_secret(value).map_err(|e| d.invalid(e.to_string()))?;
                b = b
                    .header(name, &value)
                    .map_err(|e| d.invalid(e.to_string()))?;
            }
            Ok(Arc::new(b.build().map_err(|e| d.invalid(e.to_string()))?))
        }
        "openai" => {
            let config = d.openai_config(true)?;
            let agent = config.build().map_err(|e| d.invalid(e.to_string()))?;
            Ok(Arc::new(agent))
        }
        "a2a" => {
            let config = d.a2a_config(true)?;
            let agent = A2aAgent::connect(config)
                .await
                .map_err(|e| d.invalid(format!("cannot read the A2A agent card: {e}")))?;
            Ok(Arc::new(agent))
        }
        "queue" => crate::queue_agents::build(d).await,
        "human" => {
            d.check_settings()?;
            Ok(Arc::new(orchestra_core::HumanAgent::new(
                &d.name,
                &d.description,
            )))
        }
        "demo" => {
            d.check_settings()?;
            demo::demo_agent(&d.name).ok_or_else(|| {
                d.invalid(format!(
                    "no built-in demo agent is called '{}' (known: {})",
                    d.name,
                    demo::DEMO_AGENTS
                        .iter()
                        .map(|(n, _)| *n)
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })
        }
        other => Err(d.invalid(format!(
            "unknown kind '{other}' (expected \"http\", \"openai\", \"a2a\", \"queue\", \"human\" or \"demo\")"
        ))),
    }
}

/// An agent as `GET /agents` lists it.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct AgentListing {
    pub name: String,
    pub kind: String,
    pub description: String,
    /// Which discovery source found it: "config", "redis", "etcd" or
    /// "builtin" (demo agents).
    #[schema(value_type = AgentSource)]
    pub source: String,
    /// What a registered service says it can do.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub capabilities: Vec<String>,
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

/// Where a listed agent came from (the values of [`AgentListing::source`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum AgentSource {
    /// `[[agents]]` in the configuration.
    Config,
    /// Registered in Redis with a heartbeat TTL (`POST /agents/register`).
    Redis,
    /// Registered in etcd under `discovery.etcd.prefix` with a lease.
    Etcd,
    /// A built-in demo agent.
    Builtin,
}

/// The descriptors of the registered agents, for listings and probes.
#[derive(Default)]
pub struct AgentRegistry {
    agents: RwLock<Vec<AgentDescriptor>>,
    /// One sync at a time, so a refresh and a registration do not interleave.
    syncing: tokio::sync::Mutex<()>,
}

impl AgentRegistry {
    pub fn descriptors(&self) -> Vec<AgentDescriptor> {
        match self.agents.read() {
            Ok(a) => a.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// The registered agent with this name.
    pub fn get(&self, name: &str) -> Option<AgentDescriptor> {
        let agents = self.agents.read().unwrap_or_else(|p| p.into_inner());
        agents.iter().find(|a| a.name == name).cloned()
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
    apply(discovery, orch, registry, client, true).await
}

/// Like [`sync_agents`], for the periodic refresh: an agent that cannot be
/// built is skipped (and logged) rather than failing the refresh, and
/// agents whose description did not change are kept as they are.
pub async fn refresh_agents(
    discovery: &dyn Discovery,
    orch: &Orchestrator,
    registry: &AgentRegistry,
    client: &reqwest::Client,
) -> Result<usize, DiscoveryError> {
    apply(discovery, orch, registry, client, false).await
}

async fn apply(
    discovery: &dyn Discovery,
    orch: &Orchestrator,
    registry: &AgentRegistry,
    client: &reqwest::Client,
    strict: bool,
) -> Result<usize, DiscoveryError> {
    let _one_at_a_time = registry.syncing.lock().await;
    let found = discovery.discover().await?;
    let current = registry.descriptors();
    let mut kept = Vec::with_capacity(found.len());
    let mut built = Vec::new();
    let mut changed = false;
    for d in found {
        let unchanged = current.contains(&d) && orch.agent(&d.name).is_some();
        if unchanged {
            kept.push(d);
            continue;
        }
        match build_agent(&d, client).await {
            Ok(agent) => {
                built.push(agent);
                kept.push(d);
                changed = true;
            }
            Err(e) if strict => return Err(e),
            Err(e) => tracing::warn!(error = %e, "agent skipped"),
        }
    }
    let names: HashSet<&str> = kept.iter().map(|d| d.name.as_str()).collect();
    for old in &current {
        if !names.contains(old.name.as_str()) {
            orch.remove_agent(&old.name);
            changed = true;
            tracing::info!(agent = %old.name, source = %old.source, "agent removed");
        }
    }
    for agent in built {
        orch.register_arc(agent);
    }
    let count = kept.len();
    if changed || strict {
        tracing::info!(
            source = discovery.name(),
            agents = count,
            "agents registered"
        );
    }
    registry.replace(kept);
    Ok(count)
}

/// Probes an agent's `health_url` (if any) with a short GET.
pub async fn probe(d: &AgentDescriptor, client: &reqwest::Client) -> (String, Option<String>) {
    if d.kind == "demo" {
        return ("ok".into(), None);
    }
    if d.kind == "queue" {
        return crate::queue_agents::probe(d).await;
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

    fn agent(kind: &str) -> AgentConfig {
        AgentConfig {
            name: "search".into(),
            kind: kind.into(),
            description: "searches".into(),
            url: None,
            timeout_ms: None,
            headers: Default::default(),
            health_url: None,
            critical: false,
            settings: Map::new(),
            policy: None,
        }
    }

    #[tokio::test]
    async fn http_agents_need_a_url_and_set_env_secrets() {
        let client = reqwest::Client::new();
        let mut d = AgentDescriptor::from_config(&agent("http"));
        let e = build_agent(&d, &client).await.err().unwrap();
        assert!(e.to_string().contains("needs a url"), "{e}");
        d.url = Some("http://127.0.0.1:9/invoke".into());
        d.headers = vec![("authorization".into(), "env:ORCHESTRA_SURELY_UNSET".into())];
        let e = build_agent(&d, &client).await.err().unwrap();
        assert!(e.to_string().contains("ORCHESTRA_SURELY_UNSET"), "{e}");
        d.headers.clear();
        assert_eq!(build_agent(&d, &client).await.unwrap().name(), "search");
    }

    #[tokio::test]
    async fn openai_agents_are_built_from_their_keys_and_typos_are_named() {
        let client = reqwest::Client::new();
        let mut c = agent("openai");
        c.settings
            .insert("base_url".into(), "http://127.0.0.1:9/v1".into());
        c.settings.insert("model".into(), "m".into());
        c.settings.insert("temperature".into(), 0.2.into());
        let d = AgentDescriptor::from_config(&c);
        d.check_settings().unwrap();
        let built = build_agent(&d, &client).await.unwrap();
        assert_eq!(built.description(), "searches");
        c.settings.insert("temprature".into(), 0.2.into());
        let e = AgentDescriptor::from_config(&c)
            .check_settings()
            .unwrap_err();
        assert!(e.to_string().contains("temprature"), "{e}");
        let mut c = agent("openai");
        c.settings
            .insert("base_url".into(), "http://127.0.0.1:9/v1".into());
        c.settings.insert("model".into(), "m".into());
        c.settings
            .insert("api_key_env".into(), "ORCHESTRA_SURELY_UNSET_KEY".into());
        let e = build_agent(&AgentDescriptor::from_config(&c), &client)
            .await
            .err()
            .unwrap();
        assert!(e.to_string().contains("ORCHESTRA_SURELY_UNSET_KEY"), "{e}");
    }

    #[test]
    fn http_agents_reject_keys_of_other_kinds() {
        let mut c = agent("http");
        c.settings.insert("model".into(), "m".into());
        let e = AgentDescriptor::from_config(&c)
            .check_settings()
            .unwrap_err();
        assert!(e.to_string().contains("'model'"), "{e}");
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
