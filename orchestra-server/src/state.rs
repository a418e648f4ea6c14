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
    Limits, Orchestrator, RedisStore, RedisStoreConfig, SessionStore,
    agents::openai::OpenAiChatModel,
    discovery::RedisAgentRegistry,
    llm::{LlmManager, LlmPlanner},
    queue::{RedisRunQueue, RunQueueConfig},
    session::{MemoryStore, MemoryStoreConfig},
};
use tokio_util::sync::CancellationToken;

use crate::{
    config::{Config, ConfigError, StoreKind, resolve_secret},
    discovery::{
        AgentRegistry, Discovery, DiscoveryError, MergedDiscovery, RedisDiscovery, StaticDiscovery,
        sync_agents,
    },
    metrics::{MeteredStore, prometheus},
    store::{FreshSessions, WriteThroughStore},
};

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Discovery(#[from] DiscoveryError),
    #[error("session store: {0}")]
    Store(#[from] orchestra_core::StoreError),
    #[error("{role} '{name}': {message}")]
    Model {
        role: &'static str,
        name: String,
        message: String,
    },
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
    /// The Redis parts (queue, agent registry) when the store is Redis.
    pub redis: Option<RedisBackend>,
    /// Session ids the handlers generate, when the store saves reads for
    /// them ([`WriteThroughStore`]).
    pub fresh_sessions: Option<FreshSessions>,
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

/// What the server keeps in Redis besides sessions: the run queue and the
/// agent registry, sharing the store's connection and key prefix.
#[derive(Clone, Debug)]
pub struct RedisBackend {
    pub store: RedisStore,
    pub queue: RedisRunQueue,
    /// The Redis URL, for connections of their own (pub/sub).
    pub url: String,
}

impl RedisBackend {
    /// Builds the Redis parts without connecting (the connection is made on
    /// first use), so the server starts while Redis is down.
    pub fn from_config(config: &Config) -> Result<Option<Self>, StartupError> {
        let StoreKind::Redis(url) = config.store_kind()? else {
            return Ok(None);
        };
        let store = RedisStore::connect_lazy(
            &url,
            RedisStoreConfig::default()
                .prefix(&config.redis.prefix)
                .ttl(
                    (config.session_ttl_secs > 0)
                        .then(|| Duration::from_secs(config.session_ttl_secs)),
                )
                .connect_timeout(Duration::from_millis(config.redis.connect_timeout_ms))
                .response_timeout(Duration::from_millis(config.redis.response_timeout_ms))
                .sweep_interval(
                    (config.redis.sweep_interval_secs > 0)
                        .then(|| Duration::from_secs(config.redis.sweep_interval_secs)),
                ),
        )?;
        let q = &config.queue;
        let queue = RedisRunQueue::new(
            &store,
            RunQueueConfig {
                group: q.group.clone(),
                claim_idle: Duration::from_millis(q.claim_idle_ms.max(1)),
                max_deliveries: q.max_deliveries.max(1),
                result_ttl: Duration::from_secs(q.result_ttl_secs.max(1)),
                events_ttl: Duration::from_secs(q.result_ttl_secs.max(1)),
                ..RunQueueConfig::default()
            },
        );
        Ok(Some(Self { store, queue, url }))
    }

    /// The agent registry with registrations living `ttl` after their last beat.
    pub fn registry(&self, ttl: Duration) -> RedisAgentRegistry {
        RedisAgentRegistry::new(&self.store, ttl)
    }
}

impl Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    /// State with the configured store and agents: the configuration, plus
    /// agents registered in Redis when the store is Redis.
    pub async fn from_config(config: Config) -> Result<Self, StartupError> {
        let redis = RedisBackend::from_config(&config)?;
        let configured: Arc<dyn Discovery> = Arc::new(StaticDiscovery::from_config(&config));
        let mut registries: Vec<Arc<dyn Discovery>> = Vec::new();
        if let Some(r) = redis.as_ref().filter(|_| config.discovery.redis) {
            let registry = r.registry(Duration::from_secs(config.discovery.default_ttl_secs));
            registries.push(Arc::new(RedisDiscovery::new(registry)));
        }
        if let Some(etcd) = &config.discovery.etcd {
            registries.push(Arc::new(crate::etcd::EtcdDiscovery::from_config(etcd)?));
        }
        let discovery: Arc<dyn Discovery> = if registries.is_empty() {
            configured
        } else {
            Arc::new(MergedDiscovery::new(configured, registries))
        };
        Self::build(config, discovery, redis).await
    }

    /// State whose agents come from `discovery`.
    pub async fn with_discovery(
        config: Config,
        discovery: Arc<dyn Discovery>,
    ) -> Result<Self, StartupError> {
        let redis = RedisBackend::from_config(&config)?;
        Self::build(config, discovery, redis).await
    }

    async fn build(
        config: Config,
        discovery: Arc<dyn Discovery>,
        redis: Option<RedisBackend>,
    ) -> Result<Self, StartupError> {
        let fresh = redis.as_ref().map(|_| FreshSessions::default());
        let store: Arc<dyn SessionStore> = match (&redis, &fresh) {
            (Some(r), Some(fresh)) => Arc::new(WriteThroughStore::new(
                MeteredStore::new(r.store.clone()),
                fresh.clone(),
            )),
            _ => Arc::new(MeteredStore::new(MemoryStore::with_config(
                MemoryStoreConfig {
                    ttl: (config.session_ttl_secs > 0)
                        .then(|| Duration::from_secs(config.session_ttl_secs)),
                    max_sessions: config.max_sessions,
                },
            ))),
        };
        let limits = Limits {
            timeout: Duration::from_millis(config.default_timeout_ms),
            agent_timeout: config.default_agent_timeout_ms.map(Duration::from_millis),
            max_iterations: config.max_iterations,
            ..Limits::default()
        };
        let limits = crate::policy::limits(&config.policy, limits);
        let orch = Orchestrator::builder().store(store).limits(limits).build();
        register_models(&config, &orch)?;
        Self::assemble(config, orch, discovery, redis, fresh).await
    }

    /// State around an orchestrator built by the caller (custom store,
    /// agents registered in code); discovered agents are added to it. The
    /// run queue and agent registration need [`with_redis`](Self::with_redis).
    pub async fn with_orchestrator(
        config: Config,
        orch: Orchestrator,
        discovery: Arc<dyn Discovery>,
    ) -> Result<Self, StartupError> {
        Self::assemble(config, orch, discovery, None, None).await
    }

    /// [`with_orchestrator`](Self::with_orchestrator) with the Redis parts
    /// (queue and agent registry) of `redis`; the orchestrator should use
    /// `redis.store` as its session store.
    pub async fn with_redis(
        config: Config,
        orch: Orchestrator,
        discovery: Arc<dyn Discovery>,
        redis: RedisBackend,
    ) -> Result<Self, StartupError> {
        Self::assemble(config, orch, discovery, Some(redis), None).await
    }

    async fn assemble(
        config: Config,
        orch: Orchestrator,
        discovery: Arc<dyn Discovery>,
        redis: Option<RedisBackend>,
        fresh_sessions: Option<FreshSessions>,
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
            redis,
            fresh_sessions,
            api_keys,
            metrics: prometheus(),
            http,
            shutting_down: CancellationToken::new(),
            drain_expired: CancellationToken::new(),
        })))
    }
}

impl AppState {
    /// Re-reads discovery now (registrations added or gone); failures are
    /// logged and the current agents kept.
    pub async fn refresh_agents(&self) {
        if let Err(e) = crate::discovery::refresh_agents(
            self.discovery.as_ref(),
            &self.orch,
            &self.registry,
            &self.http,
        )
        .await
        {
            tracing::warn!(error = %e, "agent refresh failed; keeping the current agents");
        }
    }

    /// Refreshes the agents every `discovery.refresh_ms`, and at once when
    /// a watched source reports a change, until `stop` fires.
    pub async fn refresh_loop(self, stop: CancellationToken) {
        let every = Duration::from_millis(self.config.discovery.refresh_ms.max(1));
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                _ = ticker.tick() => self.refresh_agents().await,
                () = self.discovery.changed() => self.refresh_agents().await,
            }
        }
    }
}

/// Registers the configured LLM managers and planners on `orch`. API keys
/// are read from their environment variables here, so a missing key stops
/// the server at start-up.
fn register_models(config: &Config, orch: &Orchestrator) -> Result<(), StartupError> {
    let model_error =
        |role: &'static str, name: &str, e: &dyn std::fmt::Display| StartupError::Model {
            role,
            name: name.to_owned(),
            message: e.to_string(),
        };
    for m in &config.managers {
        let model = OpenAiChatModel::new(m.model.clone())
            .map_err(|e| model_error("manager", &m.name, &e))?;
        let mut manager = LlmManager::new(Arc::new(model));
        if let Some(text) = &m.instructions {
            manager = manager.instructions(text);
        }
        if let Some(allow) = m.allow_termination {
            manager = manager.allow_termination(allow);
        }
        orch.register_manager(&m.name, Arc::new(manager));
    }
    for p in &config.planners {
        let model = OpenAiChatModel::new(p.model.clone())
            .map_err(|e| model_error("planner", &p.name, &e))?;
        let mut planner = LlmPlanner::new(Arc::new(model));
        if let Some(n) = p.retries {
            planner = planner.retries(n);
        }
        orch.register_planner(&p.name, Arc::new(planner));
    }
    Ok(())
}
