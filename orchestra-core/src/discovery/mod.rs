//! Discovery: agent services announcing themselves so orchestrators can find
//! and route to them.
//!
//! An [`AgentRegistration`] says who an agent service is and how to reach it.
//! With the `redis` feature, [`RedisAgentRegistry`] keeps registrations in
//! Redis with a heartbeat TTL: a service that stops beating drops out of
//! [`RedisAgentRegistry::list`] by itself, with no one having to clean up.
//! With the `etcd` feature, [`EtcdAgentRegistry`] keeps them in etcd under
//! a key prefix, each bound to a lease, and [`EtcdAgentWatch`] follows them
//! with a watch, so an expired lease drops its agent as soon as etcd
//! deletes the key.
//!
//! ```
//! use orchestra_core::discovery::AgentRegistration;
//! let reg = AgentRegistration::new("search", "http", "http://10.0.0.7:9000/invoke")
//!     .description("web search with citations")
//!     .capability("search");
//! assert!(reg.validate().is_ok());
//! assert!(AgentRegistration::new("bad name", "http", "x").validate().is_err());
//! ```

#[cfg(feature = "etcd")]
mod etcd;
#[cfg(all(feature = "etcd", feature = "test-utils"))]
mod etcd_test_server;
#[cfg(feature = "redis")]
mod redis;
#[cfg(any(feature = "redis", feature = "etcd"))]
mod renewal;

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

#[cfg(feature = "etcd")]
pub use etcd::{
    DEFAULT_PREFIX as ETCD_DEFAULT_PREFIX, EtcdAgentRegistry, EtcdAgentWatch, EtcdConfig,
    EtcdListing, EtcdRegistration, Lease,
};
#[cfg(all(feature = "etcd", feature = "test-utils"))]
pub use etcd_test_server::{EtcdTestServer, free_port};
#[cfg(feature = "redis")]
pub use redis::{Heartbeat, RedisAgentRegistry};

use crate::error::StoreError;

/// Longest accepted agent name.
pub const MAX_AGENT_NAME_LEN: usize = 128;

/// What an agent service announces about itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AgentRegistration {
    /// Unique name; the orchestrator registers the agent under it.
    pub name: String,
    /// How to talk to it: "http" (generic agent service), "openai", "a2a", …
    pub kind: String,
    /// Where it answers.
    pub url: String,
    /// Used by routers, managers and planners to pick it.
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub capabilities: Vec<String>,
    #[serde(default)]
    pub metadata: Map<String, Value>,
}

impl AgentRegistration {
    pub fn new(name: impl Into<String>, kind: impl Into<String>, url: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            kind: kind.into(),
            url: url.into(),
            description: String::new(),
            capabilities: Vec::new(),
            metadata: Map::new(),
        }
    }

    #[must_use]
    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.description = description.into();
        self
    }

    #[must_use]
    pub fn capability(mut self, capability: impl Into<String>) -> Self {
        self.capabilities.push(capability.into());
        self
    }

    /// Checks the fields a registry relies on: a name of 1–128 characters of
    /// `A-Z a-z 0-9 - _ .` (it becomes part of a key), a kind and a URL.
    pub fn validate(&self) -> Result<(), DiscoveryError> {
        let bad = |reason: String| Err(DiscoveryError::InvalidRegistration(reason));
        if self.name.is_empty() || self.name.len() > MAX_AGENT_NAME_LEN {
            return bad(format!(
                "name must have 1 to {MAX_AGENT_NAME_LEN} characters"
            ));
        }
        if let Some(c) = self
            .name
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
        {
            return bad(format!(
                "name: character {c:?} is not allowed (use A-Z, a-z, 0-9, '-', '_', '.')"
            ));
        }
        if self.kind.trim().is_empty() {
            return bad("kind must not be empty".into());
        }
        if self.url.trim().is_empty() {
            return bad("url must not be empty".into());
        }
        Ok(())
    }
}

/// A live registration as listed: what the service announced and when it
/// last did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RegisteredAgent {
    #[serde(flatten)]
    pub registration: AgentRegistration,
    pub last_heartbeat: DateTime<Utc>,
}

/// A failure of a registry.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum DiscoveryError {
    /// The registration is malformed; nothing was stored.
    #[error("invalid agent registration: {0}")]
    InvalidRegistration(String),
    /// The backing store failed (unreachable Redis or etcd is `Unavailable`).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The registry is misconfigured (no endpoints, a malformed URL, …).
    #[error("invalid discovery configuration: {0}")]
    Config(String),
}

impl DiscoveryError {
    /// A stable snake_case code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidRegistration(_) => "invalid_registration",
            Self::Store(e) => e.code(),
            Self::Config(_) => "invalid_config",
        }
    }
}
