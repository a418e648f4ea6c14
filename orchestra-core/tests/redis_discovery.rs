//! Agent registration in Redis: heartbeats keep a registration alive, and
//! one that stops beating drops out of the listing by itself.
//!
//! Needs Redis at 127.0.0.1:6379 (`scripts/ensure-services` starts one).

#![cfg(feature = "redis")]

use std::time::Duration;

use orchestra_core::{
    RedisStore, RedisStoreConfig,
    discovery::{AgentRegistration, Heartbeat, RedisAgentRegistry},
};
use tokio::time::{Instant, sleep};
use tokio_util::sync::CancellationToken;

async fn registry(ttl: Duration) -> RedisAgentRegistry {
    let prefix = format!("test:{}", uuid::Uuid::new_v4());
    let store = RedisStore::connect(
        "redis://127.0.0.1:6379",
        RedisStoreConfig::default().prefix(prefix),
    )
    .await
    .expect("Redis must be running at 127.0.0.1:6379 (see scripts/ensure-services)");
    RedisAgentRegistry::new(&store, ttl)
}

async fn names(registry: &RedisAgentRegistry) -> Vec<String> {
    registry
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.registration.name)
        .collect()
}

/// Polls every 50 ms until `names` equals `want` or `limit` passes.
async fn wait_for_names(registry: &RedisAgentRegistry, want: &[&str], limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if names(registry).await == want {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        sleep(Duration::from_millis(50)).await;
    }
}

fn search() -> AgentRegistration {
    AgentRegistration::new("search", "http", "http://127.0.0.1:9001/invoke")
        .description("web search")
        .capability("search")
        .capability("citations")
}

#[tokio::test]
async fn a_registration_is_listed_with_everything_it_announced() {
    let registry = registry(Duration::from_secs(10)).await;
    registry.register(&search()).await.unwrap();
    registry
        .register(&AgentRegistration::new(
            "jira",
            "a2a",
            "http://127.0.0.1:9002",
        ))
        .await
        .unwrap();
    let listed = registry.list().await.unwrap();
    assert_eq!(listed.len(), 2);
    let s = listed
        .iter()
        .find(|a| a.registration.name == "search")
        .unwrap();
    assert_eq!(s.registration, search());
    assert!(s.last_heartbeat <= chrono::Utc::now());
    assert_eq!(
        registry
            .get("jira")
            .await
            .unwrap()
            .unwrap()
            .registration
            .kind,
        "a2a"
    );
    assert!(registry.deregister("jira").await.unwrap());
    assert!(!registry.deregister("jira").await.unwrap());
    assert_eq!(names(&registry).await, ["search"]);
    assert!(registry.get("jira").await.unwrap().is_none());
}

#[tokio::test]
async fn a_registration_that_stops_beating_drops_out() {
    let registry = registry(Duration::from_secs(1)).await;
    registry.register(&search()).await.unwrap();
    assert_eq!(names(&registry).await, ["search"]);
    // No heartbeat follows: within a few TTLs the entry is gone.
    assert!(
        wait_for_names(&registry, &[], Duration::from_secs(5)).await,
        "registration still listed 5 s after a 1 s TTL"
    );
    assert!(registry.get("search").await.unwrap().is_none());
}

#[tokio::test]
async fn a_heartbeat_keeps_a_registration_alive_until_cancelled() {
    let registry = registry(Duration::from_secs(1)).await;
    let stop = CancellationToken::new();
    let beat = Heartbeat::start(registry.clone(), search(), stop.clone())
        .await
        .unwrap();
    // Three TTLs later it is still there, refreshed by the heartbeat.
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        assert_eq!(names(&registry).await, ["search"]);
        sleep(Duration::from_millis(200)).await;
    }
    assert!(!beat.is_finished());
    stop.cancel();
    beat.stopped().await;
    assert!(names(&registry).await.is_empty(), "deregistered on stop");
}

#[tokio::test]
async fn a_crashed_heartbeat_expires_while_others_stay() {
    let registry = registry(Duration::from_secs(1)).await;
    let writer = AgentRegistration::new("writer", "http", "http://127.0.0.1:9003");
    let stop = CancellationToken::new();
    let alive = Heartbeat::start(registry.clone(), writer, stop.clone())
        .await
        .unwrap();
    let crashing = Heartbeat::start(registry.clone(), search(), CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(names(&registry).await, ["search", "writer"]);
    // Dropping the handle stops the beats without deregistering, as a
    // process crash would.
    drop(crashing);
    assert!(
        wait_for_names(&registry, &["writer"], Duration::from_secs(5)).await,
        "crashed registration still listed: {:?}",
        names(&registry).await
    );
    stop.cancel();
    alive.stopped().await;
    assert!(names(&registry).await.is_empty());
}

#[tokio::test]
async fn invalid_registrations_are_refused() {
    let registry = registry(Duration::from_secs(5)).await;
    for bad in [
        AgentRegistration::new("", "http", "http://x"),
        AgentRegistration::new("has space", "http", "http://x"),
        AgentRegistration::new("a:b", "http", "http://x"),
        AgentRegistration::new("ok", "", "http://x"),
        AgentRegistration::new("ok", "http", " "),
    ] {
        let err = registry.register(&bad).await.unwrap_err();
        assert_eq!(err.code(), "invalid_registration", "{bad:?}");
    }
    assert!(names(&registry).await.is_empty());
}
