//! Server configuration: defaults, then a TOML file, then `ORCHESTRA_*`
//! environment variables (`__` separates nested keys), then CLI flags.
//!
//! ```
//! use orchestra_server::config::Config;
//! let config = Config::from_toml_str(r#"
//!     bind = "127.0.0.1:9000"
//!     [[agents]]
//!     name = "search"
//!     kind = "http"
//!     description = "searches the wiki"
//!     url = "http://127.0.0.1:7001/invoke"
//!     headers = { Authorization = "env:SEARCH_TOKEN" }
//! "#).unwrap();
//! assert_eq!(config.bind.port(), 9000);
//! assert_eq!(config.agents[0].kind, "http");
//! assert!(!config.demo_agents_enabled());
//! ```

use std::{collections::BTreeMap, net::SocketAddr, path::Path, time::Duration};

use figment::{
    Figment,
    providers::{Env, Format, Serialized, Toml},
};
use orchestra_core::agents::openai::OpenAiConfig;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration error: {0}")]
    Load(#[from] Box<figment::Error>),
    #[error("configuration error: {0}")]
    Invalid(String),
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// Everything the server reads at start-up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    /// Address and port to listen on.
    pub bind: SocketAddr,
    /// Session store: "memory" (default), a Redis URL (`redis://host:6379/0`,
    /// `rediss://…`, `redis+unix://…`), or "redis" with the URL in `redis_url`.
    pub store: String,
    /// Redis URL, for `store = "redis"`; `env:NAME` reads it from the environment.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis_url: Option<String>,
    /// Redis key prefix and timeouts (Redis store only).
    pub redis: RedisConfig,
    /// The run queue (`"mode": "async"` runs; Redis store only).
    pub queue: QueueConfig,
    /// Agent registration in Redis and how often agents are re-discovered.
    pub discovery: DiscoveryConfig,
    /// Idle time after which a session expires.
    pub session_ttl_secs: u64,
    /// Most sessions kept by the memory store (least recently used go first).
    pub max_sessions: usize,
    /// Run time limit when a request sets no `options.timeout_ms`.
    pub default_timeout_ms: u64,
    /// Per-agent-call limit when a request sets none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_agent_timeout_ms: Option<u64>,
    /// Agent-call limit per run when a request sets no `options.max_iterations`.
    pub max_iterations: u32,
    /// Largest accepted request body.
    pub body_limit_bytes: usize,
    /// Time limit of non-streaming HTTP requests (streams are not cut).
    pub request_timeout_ms: u64,
    /// How long in-flight runs may go on after a shutdown signal before they are cancelled.
    pub drain_timeout_ms: u64,
    /// Interval of SSE keep-alive comments.
    pub sse_keep_alive_secs: u64,
    pub log_format: LogFormat,
    /// A tracing filter, e.g. "info" or "orchestra_server=debug,info"; `RUST_LOG` wins when set.
    pub log_level: String,
    pub cors: CorsConfig,
    pub auth: AuthConfig,
    /// Register the built-in demo agents. Default: only when no agents are configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub demo_agents: Option<bool>,
    pub agents: Vec<AgentConfig>,
    /// What models' tokens cost, by model name (`[prices."gpt-4o"] prompt = 2.5,
    /// completion = 10.0`, per million tokens): kind "openai" agents of that
    /// model without a `price` of their own use it, so runs report
    /// `usage.cost_micros` and `max_cost` / `session_budget.max_cost` apply.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub prices: BTreeMap<String, orchestra_core::Price>,
    /// Agent call policies: retries, circuit breakers, concurrency limits.
    pub policy: crate::policy::PolicyConfig,
    /// Group chat managers selectable by name (`options.manager`).
    pub managers: Vec<ManagerConfig>,
    /// Dynamic-pattern planners selectable by name (`options.planner`).
    pub planners: Vec<PlannerConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([0, 0, 0, 0], 8001)),
            store: "memory".into(),
            redis_url: None,
            redis: RedisConfig::default(),
            queue: QueueConfig::default(),
            discovery: DiscoveryConfig::default(),
            session_ttl_secs: 24 * 3600,
            max_sessions: 10_000,
            default_timeout_ms: 300_000,
            default_agent_timeout_ms: None,
            max_iterations: 100,
            body_limit_bytes: 1024 * 1024,
            request_timeout_ms: 330_000,
            drain_timeout_ms: 30_000,
            sse_keep_alive_secs: 15,
            log_format: LogFormat::Text,
            log_level: "info".into(),
            cors: CorsConfig::default(),
            auth: AuthConfig::default(),
            demo_agents: None,
            agents: Vec::new(),
            prices: BTreeMap::new(),
            policy: crate::policy::PolicyConfig::default(),
            managers: Vec::new(),
            planners: Vec::new(),
        }
    }
}

/// `[redis]`: how the Redis store connects and names its keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisConfig {
    /// Prepended to every key; instances sharing a prefix act as one service.
    pub prefix: String,
    /// Limit on opening a connection to Redis.
    pub connect_timeout_ms: u64,
    /// Limit on one Redis reply; calls fail with `store_unavailable` after
    /// about `connect_timeout_ms + response_timeout_ms` while Redis is down.
    pub response_timeout_ms: u64,
    /// How often the store removes the listing-index entries of expired
    /// sessions, started by a session write once this long has passed since
    /// the last sweep (0 = never; then only listings prune what they meet,
    /// and the index grows with every session ever written).
    pub sweep_interval_secs: u64,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            prefix: "orchestra".into(),
            connect_timeout_ms: 1000,
            response_timeout_ms: 2000,
            sweep_interval_secs: 60,
        }
    }
}

/// `[queue]`: the run queue on Redis Streams.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueueConfig {
    /// Queue workers in this instance, each running one queued run at a
    /// time; 0 = API only (this instance queues runs but executes none).
    pub workers: usize,
    /// A run whose worker has not reported for this long is taken over by
    /// another worker; also the delay before a failed attempt is retried.
    pub claim_idle_ms: u64,
    /// Deliveries after which a failing run is moved to the dead-letter stream.
    pub max_deliveries: u32,
    /// How long run status, results and events are kept.
    pub result_ttl_secs: u64,
    /// The consumer group shared by the workers of every instance.
    pub group: String,
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            workers: 2,
            claim_idle_ms: 30_000,
            max_deliveries: 5,
            result_ttl_secs: 24 * 3600,
            group: "workers".into(),
        }
    }
}

/// `[discovery]`: agents registered in Redis or etcd next to the configured ones.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DiscoveryConfig {
    /// Read registrations from Redis (Redis store only).
    pub redis: bool,
    /// `[discovery.etcd]`: read registrations from etcd, watched for changes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub etcd: Option<EtcdDiscoveryConfig>,
    /// How often the agent set is refreshed from the registry.
    pub refresh_ms: u64,
    /// Heartbeat TTL of `POST /agents/register` when the body sets no `ttl_s`.
    pub default_ttl_secs: u64,
}

impl Default for DiscoveryConfig {
    fn default() -> Self {
        Self {
            redis: true,
            etcd: None,
            refresh_ms: 5000,
            default_ttl_secs: 15,
        }
    }
}

/// `[discovery.etcd]`: agent services registered in etcd (v3 API), one key
/// `{prefix}{name}` per agent, bound to the service's lease.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EtcdDiscoveryConfig {
    /// Client URLs of the cluster's members, e.g. `["http://127.0.0.1:2379"]`.
    pub endpoints: Vec<String>,
    /// The key prefix registrations live under.
    pub prefix: String,
    /// Limit on opening a connection to a member.
    pub connect_timeout_ms: u64,
    /// Limit on one etcd request (the watch itself stays open).
    pub request_timeout_ms: u64,
}

impl Default for EtcdDiscoveryConfig {
    fn default() -> Self {
        Self {
            endpoints: vec!["http://127.0.0.1:2379".into()],
            prefix: "/orchestra/agents/".into(),
            connect_timeout_ms: 1000,
            request_timeout_ms: 3000,
        }
    }
}

/// One `[[managers]]` entry: an LLM group chat manager on an
/// OpenAI-compatible endpoint, selected with `options.manager = NAME`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManagerConfig {
    pub name: String,
    /// "llm" (the only kind today).
    #[serde(default = "llm_kind")]
    pub kind: String,
    /// Extra instructions for the model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instructions: Option<String>,
    /// Whether the model may end the chat (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_termination: Option<bool>,
    /// The chat-completions endpoint (`base_url`, `model`, `api_key_env`, …).
    pub model: OpenAiConfig,
}

/// One `[[planners]]` entry: an LLM planner for the dynamic pattern,
/// selected with `options.planner = NAME`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlannerConfig {
    pub name: String,
    /// "llm" (the only kind today).
    #[serde(default = "llm_kind")]
    pub kind: String,
    /// Corrections asked of the model before falling back to the heuristic planner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<u32>,
    pub model: OpenAiConfig,
}

fn llm_kind() -> String {
    "llm".into()
}

/// Where sessions live, as the `store` setting says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreKind {
    Memory,
    /// A Redis URL (secrets resolved).
    Redis(String),
}

/// Cross-origin access for browser clients.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CorsConfig {
    /// Allowed origins; `["*"]` allows any. Empty: no cross-origin access.
    pub allowed_origins: Vec<String>,
    pub max_age_secs: u64,
}

impl Default for CorsConfig {
    fn default() -> Self {
        Self {
            allowed_origins: Vec::new(),
            max_age_secs: 600,
        }
    }
}

/// Bearer API keys. With no keys, auth is off.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Accepted keys; a value `env:NAME` is read from that environment variable.
    pub api_keys: Vec<String>,
    /// Require a key for `GET /health` too.
    pub protect_health: bool,
    /// Require a key for `GET /metrics` too.
    pub protect_metrics: bool,
}

/// One `[[agents]]` entry.
///
/// Kinds: "http" (a generic agent service), "openai" (an LLM on an
/// OpenAI-compatible endpoint: `base_url`, `model`, `api_key_env`,
/// `system_prompt`, `temperature`, … as in
/// [`OpenAiAgentConfig`](orchestra_core::agents::openai::OpenAiAgentConfig)),
/// "a2a" (an A2A peer: `card_url` or `url`, `protocol`, `stream`,
/// `bearer_token_env`, … as in
/// [`A2aAgentConfig`](orchestra_core::agents::a2a::A2aAgentConfig)),
/// "queue" (workers behind Redis Streams or NATS: `transport`, `jetstream`,
/// `prefix`, `claim_idle_ms`, as in [`crate::queue_agents`]) and
/// "demo" (a built-in demo agent by name).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentConfig {
    pub name: String,
    /// "http", "openai", "a2a", "queue" or "demo".
    pub kind: String,
    #[serde(default)]
    pub description: String,
    /// Where the service listens (kind "http").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Time limit of one call, in milliseconds (kinds "http" and "queue"; default 60 000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Headers sent with every call; a value `env:NAME` is read from that environment variable.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Probed with GET by `/agents` and `/health` when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_url: Option<String>,
    /// When true, `/health` answers 503 while this agent's health probe fails.
    #[serde(default)]
    pub critical: bool,
    /// This agent's retries, time limit, fallbacks, circuit breaker and concurrency limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<orchestra_core::AgentPolicy>,
    /// The keys of kinds "openai", "a2a" and "queue" (checked against the kind's
    /// configuration; other kinds accept none).
    #[serde(flatten, default, skip_serializing_if = "Map::is_empty")]
    pub settings: Map<String, Value>,
}

/// Values given on the command line; `None` leaves the lower layers alone.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Overrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bind: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub store: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_format: Option<LogFormat>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_level: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub demo_agents: Option<bool>,
}

impl Config {
    /// Loads defaults → `file` (if any) → `ORCHESTRA_*` env → `overrides`.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            if !path.exists() {
                return Err(ConfigError::Invalid(format!(
                    "config file {} does not exist",
                    path.display()
                )));
            }
            figment = figment.merge(Toml::file_exact(path));
        }
        let config: Config = figment
            .merge(Env::prefixed("ORCHESTRA_").split("__").ignore(&["config"]))
            .merge(Serialized::defaults(overrides))
            .extract()
            .map_err(Box::new)?;
        config.validate()?;
        Ok(config)
    }

    /// Parses a TOML document over the defaults (no environment), for tests and embedding.
    pub fn from_toml_str(toml: &str) -> Result<Self, ConfigError> {
        let config: Config = Figment::from(Serialized::defaults(Config::default()))
            .merge(Toml::string(toml))
            .extract()
            .map_err(Box::new)?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let mut seen = std::collections::HashSet::new();
        for a in &self.agents {
            if a.name.trim().is_empty() {
                return Err(ConfigError::Invalid("an agent has an empty name".into()));
            }
            if !seen.insert(a.name.as_str()) {
                return Err(ConfigError::Invalid(format!(
                    "agent '{}' is configured twice",
                    a.name
                )));
            }
            crate::discovery::AgentDescriptor::from_config(a)
                .check_settings()
                .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        }
        let mut roles = std::collections::HashSet::new();
        let kinds = self
            .managers
            .iter()
            .map(|m| ("manager", m.name.as_str(), m.kind.as_str()))
            .chain(
                self.planners
                    .iter()
                    .map(|p| ("planner", p.name.as_str(), p.kind.as_str())),
            );
        for (role, name, kind) in kinds {
            if name.trim().is_empty() || matches!(name, "round_robin" | "heuristic") {
                return Err(ConfigError::Invalid(format!(
                    "{role} name '{name}' is empty or reserved"
                )));
            }
            if !roles.insert((role, name)) {
                return Err(ConfigError::Invalid(format!(
                    "{role} '{name}' is configured twice"
                )));
            }
            if kind != "llm" {
                return Err(ConfigError::Invalid(format!(
                    "{role} '{name}': unknown kind '{kind}' (expected \"llm\")"
                )));
            }
        }
        self.store_kind()?;
        if let Some(etcd) = &self.discovery.etcd {
            if etcd.endpoints.is_empty() {
                return Err(ConfigError::Invalid(
                    "discovery.etcd.endpoints must list at least one URL".into(),
                ));
            }
            if let Some(bad) = etcd
                .endpoints
                .iter()
                .find(|e| !(e.starts_with("http://") || e.starts_with("https://")))
            {
                return Err(ConfigError::Invalid(format!(
                    "discovery.etcd.endpoints: '{bad}' must start with http:// or https://"
                )));
            }
            if etcd.prefix.is_empty() {
                return Err(ConfigError::Invalid(
                    "discovery.etcd.prefix must not be empty".into(),
                ));
            }
        }
        if self.discovery.refresh_ms == 0 {
            return Err(ConfigError::Invalid(
                "discovery.refresh_ms must be positive".into(),
            ));
        }
        if self.body_limit_bytes == 0 {
            return Err(ConfigError::Invalid(
                "body_limit_bytes must be positive".into(),
            ));
        }
        Ok(())
    }

    /// The session store named by `store` (and `redis_url`).
    pub fn store_kind(&self) -> Result<StoreKind, ConfigError> {
        let store = self.store.trim();
        let is_url = |s: &str| {
            ["redis://", "rediss://", "redis+unix://", "unix://"]
                .iter()
                .any(|p| s.starts_with(p))
        };
        match store {
            "memory" => Ok(StoreKind::Memory),
            "redis" => {
                let url = self.redis_url.as_deref().ok_or_else(|| {
                    ConfigError::Invalid(
                        "store = \"redis\" needs redis_url (or put the URL in store)".into(),
                    )
                })?;
                let url = resolve_secret(url)?;
                if !is_url(&url) {
                    return Err(ConfigError::Invalid(
                        "redis_url must start with redis://, rediss:// or redis+unix://".into(),
                    ));
                }
                Ok(StoreKind::Redis(url))
            }
            url if is_url(url) => Ok(StoreKind::Redis(url.to_owned())),
            other => Err(ConfigError::Invalid(format!(
                "unknown store '{other}' (expected \"memory\" or a redis:// URL)"
            ))),
        }
    }

    /// Whether the built-in demo agents are registered.
    pub fn demo_agents_enabled(&self) -> bool {
        self.demo_agents.unwrap_or(self.agents.is_empty())
    }

    pub fn drain_timeout(&self) -> Duration {
        Duration::from_millis(self.drain_timeout_ms)
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }
}

/// Resolves `env:NAME` to the variable's value; other values are literal.
pub fn resolve_secret(value: &str) -> Result<String, ConfigError> {
    match value.strip_prefix("env:") {
        Some(var) => std::env::var(var.trim())
            .map_err(|_| ConfigError::Invalid(format!("environment variable {var} is not set"))),
        None => Ok(value.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_listen_on_8001_with_memory_sessions_and_demo_agents() {
        let c = Config::default();
        assert_eq!(c.bind.to_string(), "0.0.0.0:8001");
        assert_eq!(c.store, "memory");
        assert!(c.demo_agents_enabled());
    }

    #[test]
    fn unknown_agent_keys_are_rejected() {
        let e = Config::from_toml_str(
            "[[agents]]\nname = \"a\"\nkind = \"http\"\nurll = \"http://x\"\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("urll"), "{e}");
    }

    #[test]
    fn duplicate_agent_names_are_rejected() {
        let e = Config::from_toml_str(
            "[[agents]]\nname = \"a\"\nkind = \"demo\"\n[[agents]]\nname = \"a\"\nkind = \"demo\"\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("twice"), "{e}");
    }

    #[test]
    fn etcd_discovery_is_off_unless_configured_and_checked_when_it_is() {
        assert_eq!(Config::default().discovery.etcd, None);
        let c = Config::from_toml_str("[discovery.etcd]\nendpoints = [\"http://10.0.0.5:2379\"]\n")
            .unwrap();
        let etcd = c.discovery.etcd.unwrap();
        assert_eq!(etcd.prefix, "/orchestra/agents/");
        assert_eq!(etcd.endpoints, ["http://10.0.0.5:2379"]);
        let e = Config::from_toml_str("[discovery.etcd]\nendpoints = [\"10.0.0.5:2379\"]\n")
            .unwrap_err();
        assert!(e.to_string().contains("http://"), "{e}");
        let e = Config::from_toml_str("[discovery.etcd]\nendpoint = \"x\"\n").unwrap_err();
        assert!(e.to_string().contains("endpoint"), "{e}");
    }

    #[test]
    fn secrets_come_from_the_environment() {
        assert_eq!(resolve_secret("plain").unwrap(), "plain");
        let missing = resolve_secret("env:ORCHESTRA_TEST_SURELY_UNSET_VAR").unwrap_err();
        assert!(missing.to_string().contains("not set"));
        let path = resolve_secret("env:PATH").unwrap();
        assert!(!path.is_empty());
    }
}
