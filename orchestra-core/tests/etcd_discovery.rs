//! Agent registration in etcd: a registration with a lease is listed and
//! watched; a revoked or expired lease removes it from the watch as soon as
//! etcd deletes the key; a kept-alive lease outlives its TTL.
//!
//! Each test starts an etcd of its own (`/usr/bin/etcd`, Debian package
//! `etcd-server`; `scripts/ensure-services` installs it) and fails if it
//! cannot.

#![cfg(feature = "etcd")]

use std::time::{Duration, Instant};

use base64::{Engine as _, engine::general_purpose::STANDARD as B64};
use orchestra_core::discovery::{
    AgentRegistration, EtcdAgentRegistry, EtcdAgentWatch, EtcdConfig, EtcdRegistration,
    EtcdTestServer,
};
use serde_json::json;
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(15);

async fn etcd() -> (EtcdTestServer, EtcdAgentRegistry) {
    let server = EtcdTestServer::start().await.expect("start etcd");
    let registry = EtcdAgentRegistry::new(EtcdConfig::new([server.endpoint()])).expect("registry");
    (server, registry)
}

fn names(watch: &EtcdAgentWatch) -> Vec<String> {
    watch
        .agents()
        .unwrap_or_default()
        .into_iter()
        .map(|a| a.name)
        .collect()
}

/// Waits (bounded) for the watch to report a change, then until `ok` holds.
async fn until(watch: &EtcdAgentWatch, ok: impl Fn(&[String]) -> bool) {
    let mut changes = watch.subscribe();
    let deadline = Instant::now() + WAIT;
    while !ok(&names(watch)) {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            tokio::time::timeout(left, changes.changed()).await.is_ok(),
            "the watch did not reach the expected state in {WAIT:?}: {:?}",
            names(watch)
        );
    }
}

#[tokio::test]
async fn a_registration_is_watched_in_and_out_with_its_lease() {
    let (_etcd, registry) = etcd().await;
    let watch = EtcdAgentWatch::start(registry.clone());
    until(&watch, <[String]>::is_empty).await;

    let reg = AgentRegistration::new("search", "http", "http://127.0.0.1:9/invoke")
        .description("searches")
        .capability("search");
    let lease = registry
        .register(&reg, Duration::from_secs(30))
        .await
        .unwrap();
    assert!(lease.ttl >= Duration::from_secs(30));
    until(&watch, |n| n == ["search"]).await;
    assert_eq!(watch.agents().unwrap()[0], reg);
    assert_eq!(registry.get("search").await.unwrap(), Some(reg.clone()));
    let listing = registry.list().await.unwrap();
    assert_eq!(listing.agents, vec![reg.clone()]);
    assert!(listing.revision > 0);

    // Revoking the lease deletes the key, and the watch sees it go.
    assert!(registry.revoke(lease.id).await.unwrap());
    until(&watch, <[String]>::is_empty).await;
    assert!(!registry.revoke(lease.id).await.unwrap());
    assert_eq!(registry.get("search").await.unwrap(), None);

    // A lease nobody renews expires on its own, and the watch sees that too.
    let short = registry
        .register(
            &AgentRegistration::new("brief", "http", "http://127.0.0.1:9/"),
            Duration::from_secs(1),
        )
        .await
        .unwrap();
    until(&watch, |n| n == ["brief"]).await;
    let registered = Instant::now();
    until(&watch, <[String]>::is_empty).await;
    assert!(
        registered.elapsed() < short.ttl + Duration::from_secs(5),
        "expiry took {:?} for a TTL of {:?}",
        registered.elapsed(),
        short.ttl
    );
    assert_eq!(registry.keep_alive(short.id).await.unwrap(), None);
}

#[tokio::test]
async fn a_kept_alive_registration_outlives_its_ttl_and_goes_when_stopped() {
    let (_etcd, registry) = etcd().await;
    let watch = EtcdAgentWatch::start(registry.clone());
    let stop = CancellationToken::new();
    let kept = EtcdRegistration::start(
        registry.clone(),
        AgentRegistration::new("kept", "http", "http://127.0.0.1:9/"),
        Duration::from_secs(1),
        stop.clone(),
    )
    .await
    .unwrap();
    until(&watch, |n| n == ["kept"]).await;
    // Time has to pass here: two full TTLs without the entry expiring.
    tokio::time::sleep(kept.ttl() * 2 + Duration::from_millis(500)).await;
    assert_eq!(names(&watch), ["kept"]);
    assert!(registry.get("kept").await.unwrap().is_some());
    assert!(
        registry
            .keep_alive(kept.lease_id())
            .await
            .unwrap()
            .is_some()
    );

    stop.cancel();
    kept.stopped().await;
    // Revoked on stop: gone at once, not after a TTL.
    assert_eq!(registry.get("kept").await.unwrap(), None);
    until(&watch, <[String]>::is_empty).await;
}

#[tokio::test]
async fn unreadable_values_are_skipped_and_entries_without_a_lease_stay_until_deregistered() {
    let (etcd, registry) = etcd().await;
    let put = |key: &str, value: &str| {
        let (client, url) = (
            reqwest::Client::new(),
            format!("{}/v3/kv/put", etcd.endpoint()),
        );
        let body = json!({"key": B64.encode(key), "value": B64.encode(value)});
        async move {
            let r = client.post(url).json(&body).send().await.unwrap();
            assert!(r.status().is_success());
        }
    };
    put("/orchestra/agents/garbage", "not json").await;
    put(
        "/orchestra/agents/liar",
        r#"{"name":"other","kind":"http","url":"http://x/"}"#,
    )
    .await;
    put(
        "/orchestra/agents/bad name",
        r#"{"name":"bad name","kind":"http","url":"http://x/"}"#,
    )
    .await;
    put(
        "/orchestra/agents/plain",
        r#"{"name":"plain","kind":"http","url":"http://127.0.0.1:9/"}"#,
    )
    .await;
    put(
        "/elsewhere/x",
        r#"{"name":"x","kind":"http","url":"http://x/"}"#,
    )
    .await;
    let listing = registry.list().await.unwrap();
    let listed: Vec<&str> = listing.agents.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(listed, ["plain"]);

    let watch = EtcdAgentWatch::start(registry.clone());
    until(&watch, |n| n == ["plain"]).await;
    // A rewrite into something unreadable hides the agent.
    put("/orchestra/agents/plain", "{").await;
    until(&watch, <[String]>::is_empty).await;
    // Without a lease a registration stays until deregistered.
    registry
        .put(
            &AgentRegistration::new("fixed", "http", "http://127.0.0.1:9/"),
            None,
        )
        .await
        .unwrap();
    until(&watch, |n| n == ["fixed"]).await;
    assert!(registry.deregister("fixed").await.unwrap());
    assert!(!registry.deregister("fixed").await.unwrap());
    until(&watch, <[String]>::is_empty).await;
    // Invalid registrations are refused before anything is written.
    let e = registry
        .register(
            &AgentRegistration::new("bad name", "http", "http://x/"),
            Duration::from_secs(5),
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), "invalid_registration");
}

#[tokio::test]
async fn an_unreachable_etcd_is_reported_as_unavailable() {
    let (mut etcd, registry) = etcd().await;
    etcd.kill();
    let e = registry.list().await.unwrap_err();
    assert_eq!(e.code(), "store_unavailable", "{e}");
    let e = registry
        .register(
            &AgentRegistration::new("a", "http", "http://x/"),
            Duration::from_secs(5),
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), "store_unavailable", "{e}");
}
