//! [`AppState`]: what every handler shares: the orchestrator, the agent
//! registry, the resolved configuration and the shutdown signals.
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! use orchestra_server::{config::Config, state::AppState};
//! let state = AppState::from_config(Config::default()).await.unwrap();
//! assert!(state.orch.agents().iter().any(|a| a.name == "demo_critic"));
//! # });
//! ```

use std::{ops::Deref, sync::Arc, time::Duration};

use metrics_exporter_prometheus::PrometheusHandle;
use orchestra_core::{
    Limits, Orchestrator, SessionStore,
    session::{MemoryStore, MemoryStoreConfig},
};
use tokio_util::sync::CancellationToken;

use crate::{
    config::{Config, ConfigError, resolve_secret},
    discovery::{AgentRegistry, Discovery, DiscoveryError, StaticDiscovery, sync_agents},
    metrics::{MeteredStore, prometheus},
};

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Discovery(#[from] DiscoveryError),
    #[error("session store '{0}' is not available in this build (known: memory)")]
    UnknownStore(String),
    #[error("could not build the HTTP client: {0}")]
    HttpClient(String),
    #[error("server error: {0}")]
    Io(#[from] std::io::Error),
}

/// Shared handler state; cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub orch: Orchestrator,
    pub config: Config,
    pub discovery: Arc<dyn Discovery>,
    pub registry: AgentRegistry,
    /// Resolved API keys (empty: auth off).
    pub api_keys: Vec<String>,
    pub metrics: PrometheusHandle,
    /// Client shared by HTTP agents and health probes.
    pub http: reqwest::Client,
    /// Fires when a shutdown signal arrives.
    pub shutting_down: CancellationToken,
    /// Fires when the drain timeout has passed: runs still in flight are cancelled.
    pub drain_expired: CancellationToken,
}

impl Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    /// State with the configured store and agents (static discovery).
    pub async fn from_config(config: Config) -> Result<Self, StartupError> {
        let discovery = Arc::new(StaticDiscovery::from_config(&config));
        Self::with_discovery(config, discovery).await
    }

    /// State whose agents come from `discovery`.
    pub async fn with_discovery(
        config: Config,
        discovery: Arc<dyn Discovery>,
    ) -> Result<Self, StartupError> {
        let store: Arc<dyn SessionStore> = match config.store.as_str() {
            "memory" => Arc::new(MeteredStore::new(MemoryStore::with_config(
                MemoryStoreConfig {
                    ttl: (config.session_ttl_secs > 0)
                        .then(|| Duration::from_secs(config.session_ttl_secs)),
                    max_sessions: config.max_sessions,
                },
            ))),
            other => return Err(StartupError::UnknownStore(other.to_owned())),
        };
        let limits = Limits {
            timeout: Duration::from_millis(config.default_timeout_ms),
            agent_timeout: config.default_agent_timeout_ms.map(Duration::from_millis),
            max_iterations: config.max_iterations,
            ..Limits::default()
        };
        let limits = crate::policy::limits(&config.policy, limits);
        let orch = Orchestrator::builder().store(store).limits(limits).build();
        Self::with_orchestrator(config, orch, discovery).await
    }

    /// State around an orchestrator built by the caller (custom store,
    /// agents registered in code); discovered agents are added to it.
    pub async fn with_orchestrator(
        config: Config,
        orch: Orchestrator,
        discovery: Arc<dyn Discovery>,
    ) -> Result<Self, StartupError> {
        let api_keys = config
            .auth
            .api_keys
            .iter()
            .map(|k| resolve_secret(k))
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .filter(|k| !k.is_empty())
            .collect();
        let http = reqwest::Client::builder()
            .pool_idle_timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| StartupError::HttpClient(e.to_string()))?;
        crate::policy::apply(&config, &orch);
        let registry = AgentRegistry::default();
        sync_agents(discovery.as_ref(), &orch, &registry, &http).await?;
        Ok(Self(Arc::new(Inner {
            orch,
            config,
            discovery,
            registry,
            api_keys,
            metrics: prometheus(),
            http,
            shutting_down: CancellationToken::new(),
            drain_expired: CancellationToken::new(),
        })))
    }
}
