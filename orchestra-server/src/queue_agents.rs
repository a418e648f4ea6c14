//! Agents of kind `"queue"`: served by workers behind Redis Streams or NATS
//! (see `orchestra_core::agents::queue` and `docs/agent-protocol.md`).
//!
//! ```toml
//! [[agents]]
//! name = "summarizer"
//! kind = "queue"
//! transport = "nats://127.0.0.1:4222"   # or redis://…; env:NAME reads it from the environment
//! jetstream = true                      # NATS only: durable delivery
//! prefix = "orchestra"                  # must match the workers'
//! timeout_ms = 30000
//! ```
//!
//! Agents on the same transport share one connection, and `/agents` reports
//! a queue agent "ok" while its transport answers.

use std::{
    collections::HashMap,
    sync::{Arc, LazyLock},
    time::Duration,
};

use orchestra_core::{
    AgentRef,
    agents::queue::{QueueAgent, QueueConfig, QueueTransport},
};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::{
    config::resolve_secret,
    discovery::{AgentDescriptor, DiscoveryError},
};

/// The kind-specific keys of a queue agent.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct QueueSettings {
    /// `redis://…` or `nats://…`; `env:NAME` reads it from the environment.
    transport: String,
    #[serde(default)]
    jetstream: bool,
    #[serde(default)]
    prefix: Option<String>,
    /// Idle time after which another worker takes over a request.
    #[serde(default)]
    claim_idle_ms: Option<u64>,
}

type TransportKey = (String, QueueConfigKey);
type QueueConfigKey = (String, bool, u64);

/// One connection per transport URL and settings, shared by its agents.
static TRANSPORTS: LazyLock<tokio::sync::Mutex<HashMap<TransportKey, QueueTransport>>> =
    LazyLock::new(Default::default);

fn invalid(d: &AgentDescriptor, message: impl Into<String>) -> DiscoveryError {
    DiscoveryError::InvalidAgent {
        agent: d.name.clone(),
        message: message.into(),
    }
}

fn settings(d: &AgentDescriptor) -> Result<QueueSettings, DiscoveryError> {
    if d.url.is_some() {
        return Err(invalid(
            d,
            "kind \"queue\" takes transport (redis://… or nats://…), not url",
        ));
    }
    if !d.headers.is_empty() || d.health_url.is_some() {
        return Err(invalid(
            d,
            "kind \"queue\" takes no headers or health_url (its health is the transport's)",
        ));
    }
    serde_path_to_error::deserialize(Value::Object(d.settings.clone())).map_err(|e| {
        let path = e.path().to_string();
        invalid(
            d,
            format!(
                "kind \"queue\": {path}: {} (keys: transport, jetstream, prefix, claim_idle_ms, \
                 timeout_ms, description, critical, policy)",
                e.into_inner()
            ),
        )
    })
}

/// Checks the keys of a queue agent without reading the environment.
pub fn check_settings(d: &AgentDescriptor) -> Result<(), DiscoveryError> {
    let s = settings(d)?;
    let scheme = s.transport.split_once("://").map(|(s, _)| s);
    if !s.transport.starts_with("env:")
        && !matches!(
            scheme,
            Some("redis" | "rediss" | "redis+unix" | "nats" | "tls")
        )
    {
        return Err(invalid(
            d,
            "transport must be a redis://, rediss://, nats:// or tls:// URL (or env:NAME)",
        ));
    }
    if s.jetstream && matches!(scheme, Some(s) if s.starts_with("redis")) {
        return Err(invalid(d, "jetstream applies to nats:// transports only"));
    }
    Ok(())
}

async fn transport(d: &AgentDescriptor) -> Result<QueueTransport, DiscoveryError> {
    let s = settings(d)?;
    let url = resolve_secret(&s.transport).map_err(|e| invalid(d, e.to_string()))?;
    let mut config = QueueConfig::default().jetstream(s.jetstream);
    if let Some(prefix) = s.prefix {
        config = config.prefix(prefix);
    }
    if let Some(ms) = s.claim_idle_ms {
        config = config.claim_idle(Duration::from_millis(ms));
    }
    let key = (
        url.clone(),
        (
            config.prefix.clone(),
            config.jetstream,
            config.claim_idle.as_millis() as u64,
        ),
    );
    let mut cache = TRANSPORTS.lock().await;
    if let Some(t) = cache.get(&key) {
        return Ok(t.clone());
    }
    let t = QueueTransport::connect(&url, config)
        .await
        .map_err(|e| invalid(d, e.to_string()))?;
    cache.insert(key, t.clone());
    Ok(t)
}

/// Builds a queue agent (connecting its transport, or sharing one).
pub async fn build(d: &AgentDescriptor) -> Result<AgentRef, DiscoveryError> {
    check_settings(d)?;
    let mut b = QueueAgent::builder(&d.name, transport(d).await?).description(&d.description);
    if let Some(t) = d.timeout {
        b = b.timeout(t);
    }
    Ok(Arc::new(b.build().map_err(|e| invalid(d, e.to_string()))?))
}

/// "ok" while the agent's transport answers a ping.
pub async fn probe(d: &AgentDescriptor) -> (String, Option<String>) {
    let t = match transport(d).await {
        Ok(t) => t,
        Err(e) => return ("down".into(), Some(e.to_string())),
    };
    match tokio::time::timeout(Duration::from_secs(2), t.ping()).await {
        Ok(Ok(())) => ("ok".into(), None),
        Ok(Err(e)) => ("down".into(), Some(e.to_string())),
        Err(_) => (
            "down".into(),
            Some("the queue did not answer within 2 s".into()),
        ),
    }
}

/// The settings of a worker's registration (kind "queue"): its transport
/// URL plus the prefix and mode it announced.
pub fn registration_settings(url: &str, metadata: &Map<String, Value>) -> Map<String, Value> {
    let mut settings = Map::new();
    settings.insert("transport".into(), Value::from(url));
    if let Some(p) = metadata.get("prefix").and_then(Value::as_str) {
        settings.insert("prefix".into(), Value::from(p));
    }
    if metadata.get("jetstream").and_then(Value::as_bool) == Some(true) {
        settings.insert("jetstream".into(), Value::from(true));
    }
    settings
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    #[test]
    fn queue_agents_are_checked_when_the_configuration_loads() {
        let ok = Config::from_toml_str(
            "[[agents]]\nname = \"q\"\nkind = \"queue\"\ntransport = \"nats://127.0.0.1:4222\"\njetstream = true\ntimeout_ms = 500\n",
        );
        assert!(ok.is_ok(), "{ok:?}");
        for bad in [
            "transport = \"http://x\"",
            "transport = \"redis://x\"\njetstream = true",
            "url = \"redis://x\"",
            "transport = \"redis://x\"\ntransprot = 1",
        ] {
            let e = Config::from_toml_str(&format!(
                "[[agents]]\nname = \"q\"\nkind = \"queue\"\n{bad}\n"
            ));
            assert!(e.is_err(), "{bad}");
        }
    }
}
