//! The real `orchestra-server` binary discovering agents in a real etcd:
//! a registration with a lease is listed and routed to; a revoked or
//! expired lease takes it out of `/agents` and of routing through the
//! watch (the periodic refresh is set far beyond the test's deadlines);
//! configured, Redis-registered and etcd-registered agents combine.
//!
//! Each test starts an etcd of its own (`/usr/bin/etcd`, Debian package
//! `etcd-server`) and fails if it cannot; the combined test also needs the
//! shared Redis (`scripts/ensure-services`).

mod common;

use std::time::Duration;

use common::{AgentService, SHARED_REDIS, Server, eventually, get_json, post_json, unique_prefix};
use orchestra_core::discovery::{AgentRegistration, EtcdAgentRegistry, EtcdConfig, EtcdTestServer};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(15);
const PREFIX: &str = "/test/orchestra/agents/";

/// `[discovery.etcd]` on `etcd`, with a refresh period no test waits for.
fn etcd_section(etcd: &EtcdTestServer) -> String {
    format!(
        "[discovery]\nrefresh_ms = 600000\n\n[discovery.etcd]\nendpoints = [\"{}\"]\nprefix = \"{PREFIX}\"\n",
        etcd.endpoint()
    )
}

fn configured_agent(svc: &AgentService) -> String {
    format!(
        "[[agents]]\nname = \"researcher\"\nkind = \"http\"\ndescription = \"researches\"\nurl = \"{}\"\n",
        svc.url("/echo")
    )
}

fn registry(etcd: &EtcdTestServer) -> EtcdAgentRegistry {
    EtcdAgentRegistry::new(EtcdConfig::new([etcd.endpoint()]).prefix(PREFIX)).expect("registry")
}

async fn listed(c: &reqwest::Client, server: &Server) -> Vec<Value> {
    let (status, body) = get_json(c, &server.url("/agents")).await;
    assert_eq!(status, 200, "{body}");
    body["agents"].as_array().cloned().unwrap_or_default()
}

async fn until_listed(c: &reqwest::Client, server: &Server, name: &str) -> Value {
    eventually(WAIT, || async {
        listed(c, server)
            .await
            .into_iter()
            .find(|a| a["name"] == name)
    })
    .await
}

async fn until_gone(c: &reqwest::Client, server: &Server, name: &str) {
    eventually(WAIT, || async {
        (!listed(c, server).await.iter().any(|a| a["name"] == name)).then_some(())
    })
    .await;
}

async fn run(c: &reqwest::Client, server: &Server, agents: &[&str]) -> (u16, Value) {
    post_json(
        c,
        &server.url("/orchestrate"),
        json!({"pattern": "sequential", "task": "hi", "agents": agents}),
    )
    .await
}

#[tokio::test]
async fn an_etcd_registration_is_routed_and_leaves_when_its_lease_is_revoked_or_expires() {
    let etcd = EtcdTestServer::start().await.expect("start etcd");
    let svc = AgentService::start().await;
    let server = Server::start(&format!(
        "{}\n{}",
        etcd_section(&etcd),
        configured_agent(&svc)
    ))
    .await;
    let c = reqwest::Client::new();
    let registry = registry(&etcd);

    let lease = registry
        .register(
            &AgentRegistration::new("etcd_echo", "http", svc.url("/echo"))
                .description("echoes, from etcd")
                .capability("echo"),
            Duration::from_secs(60),
        )
        .await
        .expect("register in etcd");
    let entry = until_listed(&c, &server, "etcd_echo").await;
    assert_eq!(entry["source"], "etcd");
    assert_eq!(entry["kind"], "http");
    assert_eq!(entry["description"], "echoes, from etcd");
    assert_eq!(entry["capabilities"], json!(["echo"]));
    let (status, r) = run(&c, &server, &["etcd_echo"]).await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["output"], "etcd_echo: hi");
    assert_eq!(svc.requests().last().unwrap()["agent"], "etcd_echo");

    // Revoked: etcd deletes the key and the watch takes the agent out.
    assert!(registry.revoke(lease.id).await.unwrap());
    until_gone(&c, &server, "etcd_echo").await;
    let (status, r) = run(&c, &server, &["etcd_echo"]).await;
    assert_eq!(
        (status, &r["error"]["code"]),
        (400, &json!("unknown_agent"))
    );

    // Never renewed: the lease expires and the agent goes the same way.
    registry
        .register(
            &AgentRegistration::new("brief", "http", svc.url("/echo")),
            Duration::from_secs(1),
        )
        .await
        .unwrap();
    until_listed(&c, &server, "brief").await;
    let (status, r) = run(&c, &server, &["brief"]).await;
    assert_eq!(status, 200, "{r}");
    until_gone(&c, &server, "brief").await;
    let (status, r) = run(&c, &server, &["brief"]).await;
    assert_eq!(
        (status, &r["error"]["code"]),
        (400, &json!("unknown_agent"))
    );
    // The configured agent was there all along.
    let agents = listed(&c, &server).await;
    assert!(
        agents
            .iter()
            .any(|a| a["name"] == "researcher" && a["source"] == "config")
    );
}

#[tokio::test]
async fn configured_redis_and_etcd_agents_combine_and_configured_names_win() {
    let etcd = EtcdTestServer::start().await.expect("start etcd");
    let svc = AgentService::start().await;
    let prefix = unique_prefix("etcd-combined");
    let server = Server::start(&format!(
        "store = \"{SHARED_REDIS}\"\n\n[redis]\nprefix = \"{prefix}\"\n\n[queue]\nworkers = 0\n\n{}\n{}",
        etcd_section(&etcd),
        configured_agent(&svc)
    ))
    .await;
    let c = reqwest::Client::new();
    let registry = registry(&etcd);

    let (status, body) = post_json(
        &c,
        &server.url("/agents/register"),
        json!({"name": "redis_echo", "url": svc.url("/echo"), "ttl_s": 60}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    registry
        .register(
            &AgentRegistration::new("etcd_echo", "http", svc.url("/echo")),
            Duration::from_secs(60),
        )
        .await
        .unwrap();
    // A registration cannot take a configured agent's name.
    registry
        .register(
            &AgentRegistration::new("researcher", "http", "http://127.0.0.1:9/evil"),
            Duration::from_secs(60),
        )
        .await
        .unwrap();
    until_listed(&c, &server, "etcd_echo").await;
    let agents = listed(&c, &server).await;
    let source = |name: &str| {
        agents
            .iter()
            .find(|a| a["name"] == name)
            .map(|a| a["source"].clone())
    };
    assert_eq!(source("researcher"), Some(json!("config")));
    assert_eq!(source("redis_echo"), Some(json!("redis")));
    assert_eq!(source("etcd_echo"), Some(json!("etcd")));

    let (status, r) = run(&c, &server, &["researcher", "redis_echo", "etcd_echo"]).await;
    assert_eq!(status, 200, "{r}");
    let called: Vec<Value> = svc
        .requests()
        .iter()
        .map(|req| req["agent"].clone())
        .collect();
    assert_eq!(
        called,
        [json!("researcher"), json!("redis_echo"), json!("etcd_echo")]
    );

    // The OpenAPI document names every source.
    let (_, doc) = get_json(&c, &server.url("/openapi.json")).await;
    let sources = &doc["components"]["schemas"]["AgentSource"]["enum"];
    for s in ["config", "redis", "etcd", "builtin"] {
        assert!(
            sources.as_array().is_some_and(|v| v.contains(&json!(s))),
            "{sources}"
        );
    }
    let listing = &doc["components"]["schemas"]["AgentListing"]["properties"]["source"];
    assert_eq!(
        listing["$ref"], "#/components/schemas/AgentSource",
        "{listing}"
    );
}

#[tokio::test]
async fn the_server_starts_without_etcd_and_finds_its_agents_once_etcd_is_up() {
    let svc = AgentService::start().await;
    let port = orchestra_core::discovery::free_port().expect("a free port");
    let endpoint = format!("http://127.0.0.1:{port}");
    let server = Server::start(&format!(
        "[discovery]\nrefresh_ms = 600000\n\n[discovery.etcd]\nendpoints = [\"{endpoint}\"]\nprefix = \"{PREFIX}\"\n\n{}",
        configured_agent(&svc)
    ))
    .await;
    let c = reqwest::Client::new();
    let names: Vec<Value> = listed(&c, &server)
        .await
        .into_iter()
        .map(|a| a["name"].clone())
        .collect();
    assert_eq!(names, [json!("researcher")]);

    let mut etcd = EtcdTestServer::start_on(port).await.expect("start etcd");
    registry(&etcd)
        .register(
            &AgentRegistration::new("late", "http", svc.url("/echo")),
            Duration::from_secs(60),
        )
        .await
        .unwrap();
    // The watch reconnects by itself (no refresh tick comes in this test).
    until_listed(&c, &server, "late").await;
    let (status, r) = run(&c, &server, &["late"]).await;
    assert_eq!(status, 200, "{r}");

    // etcd gone: the last known registrations stay routable.
    etcd.kill();
    let (status, r) = run(&c, &server, &["late"]).await;
    assert_eq!(status, 200, "{r}");
    assert!(
        listed(&c, &server)
            .await
            .iter()
            .any(|a| a["name"] == "late")
    );
}
