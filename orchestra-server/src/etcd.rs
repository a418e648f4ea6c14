//! [`EtcdDiscovery`]: agent services registered in etcd under
//! `discovery.etcd.prefix`, each key bound to its service's lease (the key
//! layout is in `docs/agent-protocol.md`).
//!
//! A watch keeps the set current: a registration that is written, revoked
//! or whose lease expires wakes the server's refresh at once
//! ([`Discovery::changed`]), so the agent joins or leaves `/agents` and
//! routing without waiting for `discovery.refresh_ms`.

use std::time::Duration;

use async_trait::async_trait;
use orchestra_core::discovery::{AgentRegistration, EtcdAgentRegistry, EtcdAgentWatch, EtcdConfig};
use serde_json::Map;
use tokio::sync::{Mutex, watch};

use crate::{
    config::EtcdDiscoveryConfig,
    discovery::{AgentDescriptor, Discovery, DiscoveryError},
};

/// Kinds a registration in etcd may have: both need only a URL.
const ROUTABLE_KINDS: [&str; 2] = ["http", "a2a"];

/// Agents registered in etcd, followed by a watch.
pub struct EtcdDiscovery {
    registry: EtcdAgentRegistry,
    watch: EtcdAgentWatch,
    changes: Mutex<watch::Receiver<u64>>,
}

impl std::fmt::Debug for EtcdDiscovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdDiscovery")
            .field("registry", &self.registry)
            .finish_non_exhaustive()
    }
}

impl EtcdDiscovery {
    /// Starts watching (on the current Tokio runtime); etcd need not be up
    /// yet: the watch connects when it can.
    pub fn new(registry: EtcdAgentRegistry) -> Self {
        let watch = EtcdAgentWatch::start(registry.clone());
        let changes = Mutex::new(watch.subscribe());
        Self {
            registry,
            watch,
            changes,
        }
    }

    /// From the `[discovery.etcd]` section.
    pub fn from_config(c: &EtcdDiscoveryConfig) -> Result<Self, DiscoveryError> {
        let config = EtcdConfig::new(c.endpoints.iter().cloned())
            .prefix(&c.prefix)
            .connect_timeout(Duration::from_millis(c.connect_timeout_ms))
            .request_timeout(Duration::from_millis(c.request_timeout_ms));
        let registry = EtcdAgentRegistry::new(config).map_err(|e| source_error(&e))?;
        Ok(Self::new(registry))
    }

    /// The registry the watch reads, for registering agents in it.
    pub fn registry(&self) -> &EtcdAgentRegistry {
        &self.registry
    }
}

fn source_error(e: &dyn std::fmt::Display) -> DiscoveryError {
    DiscoveryError::Source {
        source_name: "etcd".into(),
        message: e.to_string(),
    }
}

/// An agent service registered in etcd.
pub fn descriptor(r: &AgentRegistration) -> AgentDescriptor {
    AgentDescriptor {
        name: r.name.clone(),
        kind: r.kind.clone(),
        description: r.description.clone(),
        source: "etcd".into(),
        url: Some(r.url.clone()),
        timeout: None,
        headers: Vec::new(),
        health_url: None,
        critical: false,
        capabilities: r.capabilities.clone(),
        settings: Map::new(),
    }
}

#[async_trait]
impl Discovery for EtcdDiscovery {
    fn name(&self) -> &str {
        "etcd"
    }

    /// The watched set; before the watch's first listing (at start-up) a
    /// direct read, so start-up does not race the watch.
    async fn discover(&self) -> Result<Vec<AgentDescriptor>, DiscoveryError> {
        let agents = match self.watch.agents() {
            Some(agents) => agents,
            None => {
                self.registry
                    .list()
                    .await
                    .map_err(|e| source_error(&e))?
                    .agents
            }
        };
        Ok(agents
            .iter()
            .filter(|r| {
                let routable = ROUTABLE_KINDS.contains(&r.kind.as_str());
                if !routable {
                    tracing::warn!(
                        agent = %r.name,
                        kind = %r.kind,
                        "skipping an etcd registration of a kind other than \"http\" or \"a2a\""
                    );
                }
                routable
            })
            .map(descriptor)
            .collect())
    }

    async fn changed(&self) {
        let mut changes = self.changes.lock().await;
        if changes.changed().await.is_err() {
            // The watch has stopped: no change will ever be reported.
            drop(changes);
            std::future::pending::<()>().await;
        }
    }
}
