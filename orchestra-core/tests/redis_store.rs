//! `RedisStore` against a real Redis: conditional writes under contention,
//! TTL, the listing index, deletes, and outages of a Redis this test starts.
//!
//! Needs Redis at 127.0.0.1:6379 (`scripts/ensure-services` starts one) and
//! `redis-server` on the PATH for the outage test. Every test uses its own
//! key prefix, so tests run in parallel and leave nothing others can see.

#![cfg(feature = "redis")]

use std::{
    net::TcpListener,
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::Arc,
    time::Duration,
};

use chrono::Utc;
use orchestra_core::{
    FnAgent, Message, Orchestrator, RunRequest, RunStatus, StoreError,
    session::{Page, Session, SessionStore, update_session},
    test_utils::GateAgent,
    {RedisStore, RedisStoreConfig},
};
use tokio::time::{Instant, sleep};

const REDIS_URL: &str = "redis://127.0.0.1:6379";

fn unique_prefix() -> String {
    format!("test:{}", uuid::Uuid::new_v4())
}

async fn store_with(config: RedisStoreConfig) -> RedisStore {
    RedisStore::connect(REDIS_URL, config.prefix(unique_prefix()))
        .await
        .expect("Redis must be running at 127.0.0.1:6379 (see scripts/ensure-services)")
}

async fn store() -> RedisStore {
    store_with(RedisStoreConfig::default()).await
}

/// Every key under the store's prefix, sorted, without the prefix.
async fn keys_of(store: &RedisStore) -> Vec<String> {
    let prefix = format!("{}:", store.config().prefix);
    let client = redis::Client::open(REDIS_URL).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let mut keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut conn)
        .await
        .unwrap();
    keys.sort();
    keys.into_iter()
        .map(|k| k[prefix.len()..].to_owned())
        .collect()
}

/// The ids of the store's first page of sessions, newest first.
async fn listed_ids(store: &RedisStore) -> Vec<String> {
    store
        .list(Page::default())
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect()
}

/// Entries in the store's listing index, read without pruning them.
async fn index_len(store: &RedisStore) -> usize {
    let client = redis::Client::open(REDIS_URL).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    redis::cmd("ZCARD")
        .arg(format!("{}:sessions", store.config().prefix))
        .query_async(&mut conn)
        .await
        .unwrap()
}

/// Polls `check` every 50 ms until it holds or `limit` passes.
async fn eventually<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_stale_version_is_rejected_and_a_new_id_must_not_exist() {
    let store = store().await;
    assert_eq!(store.kind(), "redis");
    store.ping().await.unwrap();
    assert_eq!(store.put(&Session::new("a"), None).await.unwrap(), 1);
    let mut s = store.get("a").await.unwrap().unwrap();
    assert_eq!(s.version, 1);
    s.messages.push(Message::user("hi"));
    assert_eq!(store.put(&s, Some(1)).await.unwrap(), 2);
    let err = store.put(&s, Some(1)).await.unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Conflict {
                expected: Some(1),
                found: Some(2),
                ..
            }
        ),
        "{err:?}"
    );
    let err = store.put(&s, None).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict { found: Some(2), .. }));
    let err = store
        .put(&Session::new("ghost"), Some(3))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict { found: None, .. }));
    let back = store.get("a").await.unwrap().unwrap();
    assert_eq!(back.version, 2);
    assert_eq!(back.messages, s.messages);
    assert!(store.get("ghost").await.unwrap().is_none());
    // Accepted or refused, a write leaves no staged copy behind.
    assert_eq!(keys_of(&store).await, ["session:a", "sessions"]);
}

#[tokio::test]
async fn a_large_session_is_written_whole_and_conditionally_like_a_small_one() {
    // Large sessions take the staged write (a scratch key moved into place
    // by the script); every guarantee of the small write must hold.
    let store = store().await;
    let mut s = Session::new("big");
    s.messages.push(Message::user("x".repeat(40 * 1024)));
    assert_eq!(store.put(&s, None).await.unwrap(), 1);
    let err = store.put(&s, None).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict { found: Some(1), .. }));
    s.messages
        .push(Message::assistant("a", "y".repeat(20 * 1024)));
    assert_eq!(store.put(&s, Some(1)).await.unwrap(), 2);
    let err = store.put(&s, Some(1)).await.unwrap_err();
    assert!(matches!(
        err,
        StoreError::Conflict {
            expected: Some(1),
            found: Some(2),
            ..
        }
    ));
    let back = store.get("big").await.unwrap().unwrap();
    assert_eq!(back.version, 2);
    assert_eq!(back.messages, s.messages);
    let listed = store.list(Page::default()).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].version, 2);
    // A large session that shrinks is written the small way, and back.
    s.messages.clear();
    assert_eq!(store.put(&s, Some(2)).await.unwrap(), 3);
    assert!(store.get("big").await.unwrap().unwrap().messages.is_empty());
    assert_eq!(keys_of(&store).await, ["session:big", "sessions"]);
    // The TTL is the store's, not the scratch key's.
    let client = redis::Client::open(REDIS_URL).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    s.messages.push(Message::user("z".repeat(40 * 1024)));
    store.put(&s, Some(3)).await.unwrap();
    let ttl: i64 = redis::cmd("PTTL")
        .arg(format!("{}:session:big", store.config().prefix))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(ttl > 3_600_000, "{ttl}");
}

#[tokio::test]
async fn fifty_concurrent_writers_on_one_session_lose_no_message() {
    let store = Arc::new(store().await);
    let writers = (0..50).map(|i| {
        let store = store.clone();
        tokio::spawn(async move {
            update_session(store.as_ref(), "shared", |s| {
                s.messages.push(Message::user(format!("writer {i}")));
                Ok(())
            })
            .await
        })
    });
    for w in futures::future::join_all(writers).await {
        w.unwrap().unwrap();
    }
    let s = store.get("shared").await.unwrap().unwrap();
    assert_eq!(s.version, 50);
    assert_eq!(s.messages.len(), 50);
    let mut texts: Vec<_> = s.messages.iter().map(|m| m.content.clone()).collect();
    texts.sort();
    let mut want: Vec<_> = (0..50).map(|i| format!("writer {i}")).collect();
    want.sort();
    assert_eq!(texts, want);
}

#[tokio::test]
async fn fifty_concurrent_runs_on_one_session_keep_every_message() {
    let store = store().await;
    let orch = Orchestrator::builder().store(Arc::new(store)).build();
    orch.register(FnAgent::new("echo", "repeats", |i, _| async move {
        format!("echo {}", i.task)
    }));
    let runs = (0..50).map(|i| {
        let orch = orch.clone();
        tokio::spawn(async move {
            orch.run(
                RunRequest::new("sequential", format!("task {i}"))
                    .agents(["echo"])
                    .session("one-session"),
            )
            .await
        })
    });
    for r in futures::future::join_all(runs).await {
        let r = r.unwrap().unwrap();
        assert_eq!(r.status, RunStatus::Completed, "{:?}", r.error);
    }
    let s = orch.get_session("one-session").await.unwrap().unwrap();
    assert_eq!(s.runs.len(), 50);
    assert!(s.runs.iter().all(|r| r.status == RunStatus::Completed));
    assert_eq!(s.messages.len(), 100);
    for i in 0..50 {
        let task = format!("task {i}");
        assert!(s.messages.iter().any(|m| m.content == task), "{task}");
        let echo = format!("echo task {i}");
        assert!(s.messages.iter().any(|m| m.content == echo), "{echo}");
    }
}

#[tokio::test]
async fn a_write_indexes_the_running_and_latest_runs_of_its_session_and_no_others() {
    let store = store().await;
    assert!(store.indexes_running_runs());
    let run = |id: &str, status| orchestra_core::RunResult {
        run_id: id.into(),
        session_id: "s".into(),
        status,
        ..Default::default()
    };
    let mut session = Session::new("s");
    session.runs = vec![
        run("done", RunStatus::Completed),
        run("running", RunStatus::Running),
        run("latest", RunStatus::Failed),
    ];
    store.put(&session, None).await.unwrap();
    assert_eq!(
        store.find_run("running").await.unwrap().as_deref(),
        Some("s")
    );
    assert_eq!(
        store.find_run("latest").await.unwrap().as_deref(),
        Some("s")
    );
    assert_eq!(store.find_run("done").await.unwrap(), None);
    // A run started through an orchestrator is found by id while it runs
    // and after, with no separate index write.
    let orch = Orchestrator::builder().store(Arc::new(store)).build();
    let gate = GateAgent::new("wait");
    let (entered, release) = (gate.entered(), gate.release());
    orch.register(gate);
    let o = orch.clone();
    let running = tokio::spawn(async move {
        o.run(
            RunRequest::new("sequential", "t")
                .agents(["wait"])
                .session("s2")
                .run_id("r2"),
        )
        .await
    });
    entered.notified().await;
    assert_eq!(
        orch.store().find_run("r2").await.unwrap().as_deref(),
        Some("s2")
    );
    release.notify_one();
    assert_eq!(running.await.unwrap().unwrap().status, RunStatus::Completed);
    assert_eq!(
        orch.store().find_run("r2").await.unwrap().as_deref(),
        Some("s2")
    );
}

#[tokio::test]
async fn sessions_expire_after_the_ttl_and_drop_out_of_the_listing() {
    let store = store_with(RedisStoreConfig::default().ttl(Some(Duration::from_secs(1)))).await;
    store.put(&Session::new("short"), None).await.unwrap();
    assert!(store.get("short").await.unwrap().is_some());
    assert_eq!(store.list(Page::default()).await.unwrap().len(), 1);
    let gone = eventually(Duration::from_secs(5), || async {
        store.get("short").await.unwrap().is_none()
    })
    .await;
    assert!(gone, "session still there after 5 s with a 1 s TTL");
    assert!(store.list(Page::default()).await.unwrap().is_empty());
    // The expired id can be created afresh.
    assert_eq!(store.put(&Session::new("short"), None).await.unwrap(), 1);
}

#[tokio::test]
async fn a_write_refreshes_the_ttl() {
    let store = store_with(RedisStoreConfig::default().ttl(Some(Duration::from_secs(2)))).await;
    store.put(&Session::new("kept"), None).await.unwrap();
    // Rewrite for longer than one TTL; the session must survive throughout.
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        update_session(&store, "kept", |s| {
            s.messages.push(Message::user("tick"));
            Ok(())
        })
        .await
        .unwrap();
        sleep(Duration::from_millis(300)).await;
    }
    assert!(store.get("kept").await.unwrap().is_some());
}

#[tokio::test]
async fn listing_is_newest_first_paged_and_prunes_expired_entries() {
    let store = store().await;
    let base = Utc::now() - chrono::Duration::seconds(60);
    for (i, id) in ["a", "b", "c", "d", "e"].into_iter().enumerate() {
        let mut s = Session::new(id);
        s.updated_at = base + chrono::Duration::seconds(i as i64);
        s.messages = vec![Message::user("m"); i];
        store.put(&s, None).await.unwrap();
    }
    let ids = |v: Vec<orchestra_core::session::SessionSummary>| {
        v.into_iter().map(|s| s.id).collect::<Vec<_>>()
    };
    let first = store
        .list(Page {
            offset: 0,
            limit: 2,
        })
        .await
        .unwrap();
    assert_eq!(first[0].message_count, 4);
    assert_eq!(first[0].version, 1);
    assert_eq!(ids(first), ["e", "d"]);
    let rest = store
        .list(Page {
            offset: 2,
            limit: 10,
        })
        .await
        .unwrap();
    assert_eq!(ids(rest), ["c", "b", "a"]);
    assert!(
        store
            .list(Page {
                offset: 5,
                limit: 10
            })
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .list(Page {
                offset: 0,
                limit: 0
            })
            .await
            .unwrap()
            .is_empty()
    );

    // Updating "a" moves it to the front.
    update_session(&store, "a", |_| Ok(())).await.unwrap();
    let top = store
        .list(Page {
            offset: 0,
            limit: 1,
        })
        .await
        .unwrap();
    assert_eq!(ids(top), ["a"]);

    // A session key that vanished without a delete (expiry) leaves its
    // index entry behind; listing skips and removes it.
    let mut raw = redis::Client::open(REDIS_URL)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let prefix = store.config().prefix.clone();
    let _: () = redis::cmd("DEL")
        .arg(format!("{prefix}:session:d"))
        .query_async(&mut raw)
        .await
        .unwrap();
    let all = store.list(Page::default()).await.unwrap();
    assert_eq!(ids(all), ["a", "e", "c", "b"]);
    let members: Vec<String> = redis::cmd("ZRANGE")
        .arg(format!("{prefix}:sessions"))
        .arg(0)
        .arg(-1)
        .query_async(&mut raw)
        .await
        .unwrap();
    assert!(!members.contains(&"d".to_owned()), "{members:?}");

    // The sweep does the same for the oldest entries without a listing.
    let _: () = redis::cmd("DEL")
        .arg(format!("{prefix}:session:b"))
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(store.sweep_index(10).await.unwrap(), 1);
    assert_eq!(store.sweep_index(10).await.unwrap(), 0);
}

#[tokio::test]
async fn sweeping_drops_the_index_entries_of_expired_sessions_only() {
    let store = store_with(RedisStoreConfig::default().ttl(Some(Duration::from_secs(1)))).await;
    // A second process on the same prefix that keeps its sessions.
    let keeper = RedisStore::connect(
        REDIS_URL,
        RedisStoreConfig::default()
            .prefix(store.config().prefix.clone())
            .ttl(None),
    )
    .await
    .unwrap();
    // Written first, it sorts before the others among the old entries.
    keeper.put(&Session::new("kept"), None).await.unwrap();
    for id in ["a", "b", "c"] {
        store.put(&Session::new(id), None).await.unwrap();
    }
    assert_eq!(
        store.sweep_expired(10).await.unwrap(),
        0,
        "nothing expired yet"
    );
    assert!(
        eventually(Duration::from_secs(5), || async {
            store.get("a").await.unwrap().is_none()
                && store.get("b").await.unwrap().is_none()
                && store.get("c").await.unwrap().is_none()
        })
        .await
    );
    store.put(&Session::new("fresh"), None).await.unwrap();
    // One at a time, stepping over the live entry that sorts among them.
    assert_eq!(store.sweep_expired(1).await.unwrap(), 3);
    assert_eq!(
        keys_of(&store).await,
        ["session:fresh", "session:kept", "sessions"]
    );
    assert_eq!(listed_ids(&store).await, ["fresh", "kept"]);
    assert_eq!(index_len(&store).await, 2);
    assert_eq!(store.sweep_expired(10).await.unwrap(), 0);
    assert_eq!(
        keeper.sweep_expired(10).await.unwrap(),
        0,
        "no TTL: nothing to sweep"
    );
}

#[tokio::test]
async fn writes_start_the_sweep_once_per_interval() {
    let store = store_with(
        RedisStoreConfig::default()
            .ttl(Some(Duration::from_secs(1)))
            .sweep_interval(Some(Duration::from_secs(1))),
    )
    .await;
    for id in ["a", "b"] {
        store.put(&Session::new(id), None).await.unwrap();
    }
    assert!(
        eventually(Duration::from_secs(5), || async {
            store.get("a").await.unwrap().is_none() && store.get("b").await.unwrap().is_none()
        })
        .await
    );
    assert_eq!(
        keys_of(&store).await,
        ["sessions"],
        "only the index is left"
    );
    store.put(&Session::new("c"), None).await.unwrap();
    assert!(
        eventually(Duration::from_secs(5), || async {
            index_len(&store).await == 1
        })
        .await
    );
}

#[tokio::test]
async fn delete_removes_the_session_and_its_index_entry() {
    let store = store().await;
    store.put(&Session::new("x"), None).await.unwrap();
    store.put(&Session::new("y"), None).await.unwrap();
    assert!(store.delete("x").await.unwrap());
    assert!(!store.delete("x").await.unwrap());
    assert!(store.get("x").await.unwrap().is_none());
    assert_eq!(listed_ids(&store).await, ["y"]);
    // A deleted id can be created again from scratch.
    assert_eq!(store.put(&Session::new("x"), None).await.unwrap(), 1);
}

#[tokio::test]
async fn unreadable_stored_bytes_are_reported_as_corrupt() {
    let store = store().await;
    let mut raw = redis::Client::open(REDIS_URL)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let key = format!("{}:session:bad", store.config().prefix);
    let _: () = redis::cmd("HSET")
        .arg(&key)
        .arg("v")
        .arg("1")
        .arg("data")
        .arg("{not json")
        .query_async(&mut raw)
        .await
        .unwrap();
    let err = store.get("bad").await.unwrap_err();
    assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");
    assert_eq!(err.code(), "store_corrupt");
    let _: () = redis::cmd("DEL")
        .arg(&key)
        .query_async(&mut raw)
        .await
        .unwrap();
}

#[tokio::test]
async fn an_unreachable_redis_fails_fast_as_unavailable() {
    let port = free_port();
    let started = Instant::now();
    let err = RedisStore::connect(
        &format!("redis://127.0.0.1:{port}"),
        RedisStoreConfig::default(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    assert_eq!(err.code(), "store_unavailable");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );

    // A lazy store starts without Redis and reports each call as unavailable.
    let lazy = RedisStore::connect_lazy(
        &format!("redis://127.0.0.1:{port}"),
        RedisStoreConfig::default(),
    )
    .unwrap();
    let started = Instant::now();
    assert!(matches!(
        lazy.get("s").await.unwrap_err(),
        StoreError::Unavailable(_)
    ));
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(matches!(
        RedisStore::connect_lazy("not a url", RedisStoreConfig::default()).unwrap_err(),
        StoreError::Backend(_)
    ));
    assert!(matches!(
        RedisStore::connect_lazy(REDIS_URL, RedisStoreConfig::default().prefix("")).unwrap_err(),
        StoreError::Backend(_)
    ));
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// A redis-server of this test's own, killed when dropped. Appends every
/// write to its AOF with fsync, so what it acknowledged survives a SIGKILL.
struct OwnRedis {
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl OwnRedis {
    fn start(port: u16, dir: PathBuf) -> Self {
        std::fs::create_dir_all(&dir).unwrap();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ])
            .arg("--dir")
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be on the PATH");
        Self {
            port,
            dir,
            child: Some(child),
        }
    }

    async fn wait_ready(&self) {
        let url = format!("redis://127.0.0.1:{}", self.port);
        let up = eventually(Duration::from_secs(10), || {
            let url = url.clone();
            async move {
                let Ok(client) = redis::Client::open(url) else {
                    return false;
                };
                match client.get_multiplexed_async_connection().await {
                    Ok(mut c) => redis::cmd("PING")
                        .query_async::<String>(&mut c)
                        .await
                        .is_ok(),
                    Err(_) => false,
                }
            }
        })
        .await;
        assert!(up, "own redis-server on port {} did not start", self.port);
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_going_down_yields_unavailable_and_the_same_store_recovers() {
    let port = free_port();
    let dir = std::env::temp_dir().join(format!("orchestra-redis-{}", uuid::Uuid::new_v4()));
    let mut server = OwnRedis::start(port, dir.clone());
    server.wait_ready().await;
    let config = RedisStoreConfig::default()
        .prefix(unique_prefix())
        .connect_timeout(Duration::from_millis(500))
        .response_timeout(Duration::from_secs(1));
    let store = Arc::new(
        RedisStore::connect(&format!("redis://127.0.0.1:{port}"), config)
            .await
            .unwrap(),
    );

    // Traffic: writers append numbered messages and remember which writes
    // Redis acknowledged.
    let stop = tokio_util::sync::CancellationToken::new();
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let store = store.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut acked = Vec::new();
                let mut unavailable = 0u32;
                let mut n = 0u32;
                while !stop.is_cancelled() {
                    n += 1;
                    let text = format!("w{w}-{n}");
                    let t = text.clone();
                    match update_session(store.as_ref(), "traffic", move |s| {
                        s.messages.push(Message::user(t.clone()));
                        Ok(())
                    })
                    .await
                    {
                        Ok(_) => acked.push(text),
                        Err(e) if e.code() == "store_unavailable" => unavailable += 1,
                        Err(e) => panic!("unexpected error during the outage: {e:?}"),
                    }
                    sleep(Duration::from_millis(20)).await;
                }
                (acked, unavailable)
            })
        })
        .collect();

    sleep(Duration::from_millis(500)).await;
    server.kill();

    // While it is down every operation fails quickly as unavailable.
    let down_at = Instant::now();
    for _ in 0..3 {
        let started = Instant::now();
        let err = store.get("traffic").await.unwrap_err();
        assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
        assert!(started.elapsed() < Duration::from_secs(3));
        assert!(matches!(
            store.ping().await.unwrap_err(),
            StoreError::Unavailable(_)
        ));
        assert!(matches!(
            store.put(&Session::new("new"), None).await.unwrap_err(),
            StoreError::Unavailable(_)
        ));
        assert!(matches!(
            store.list(Page::default()).await.unwrap_err(),
            StoreError::Unavailable(_)
        ));
    }
    assert!(down_at.elapsed() < Duration::from_secs(20));
    // Known to be down, the store makes even a run that could skip its
    // start record try it, so the run fails before calling any agent.
    assert!(store.unreachable_hint());
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let orch = Orchestrator::builder()
        .store(Arc::new(store.clone()))
        .build();
    let counted = calls.clone();
    orch.register(FnAgent::new("a", "counts", move |_, _| {
        counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        async { "answer" }
    }));
    let failed = orch
        .run(
            RunRequest::new("sequential", "t")
                .agents(["a"])
                .option("checkpoint", false)
                .fresh_session(),
        )
        .await
        .unwrap();
    assert_eq!(failed.status, RunStatus::Failed);
    assert_eq!(failed.error.unwrap().code, "store_unavailable");
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 0);

    // Back on the same port: the same store object recovers by itself.
    let _server = OwnRedis::start(port, dir);
    _server.wait_ready().await;
    let recovered = eventually(Duration::from_secs(15), || async {
        store.ping().await.is_ok()
    })
    .await;
    assert!(recovered, "store did not recover after Redis came back");
    assert!(!store.unreachable_hint());
    // Give the writers a moment of healthy traffic, then stop them.
    let before = store.get("traffic").await.unwrap().map_or(0, |s| s.version);
    let progressed = eventually(Duration::from_secs(10), || async {
        store
            .get("traffic")
            .await
            .ok()
            .flatten()
            .is_some_and(|s| s.version > before + 3)
    })
    .await;
    assert!(progressed, "writers made no progress after recovery");
    stop.cancel();
    let mut acked = Vec::new();
    let mut unavailable = 0;
    for w in writers {
        let (a, u) = w.await.unwrap();
        acked.extend(a);
        unavailable += u;
    }
    assert!(unavailable > 0, "no writer saw the outage");

    // No half-written session: it parses, its version counts the writes,
    // and every acknowledged message is there.
    let s = store.get("traffic").await.unwrap().unwrap();
    assert_eq!(s.version as usize, s.messages.len());
    for text in &acked {
        assert!(
            s.messages.iter().any(|m| &m.content == text),
            "acknowledged message {text} lost"
        );
    }
    store.put(&Session::new("after"), None).await.unwrap();
    assert_eq!(store.list(Page::default()).await.unwrap().len(), 2);
}

#[tokio::test]
async fn writes_go_on_after_redis_forgets_the_scripts() {
    let port = free_port();
    let dir = std::env::temp_dir().join(format!("orchestra-redis-{}", uuid::Uuid::new_v4()));
    let server = OwnRedis::start(port, dir);
    server.wait_ready().await;
    let url = format!("redis://127.0.0.1:{port}");
    let store = RedisStore::connect(&url, RedisStoreConfig::default().prefix(unique_prefix()))
        .await
        .unwrap();
    let mut session = Session::new("s");
    let v1 = store.put(&session, None).await.unwrap();
    // As after a restart without persistence of scripts, or SCRIPT FLUSH.
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut conn)
        .await
        .unwrap();
    session.messages.push(Message::user("after the flush"));
    let v2 = store.put(&session, Some(v1)).await.unwrap();
    assert_eq!(v2, v1 + 1);
    let stored = store.get("s").await.unwrap().unwrap();
    assert_eq!(stored.messages.len(), 1);
    assert_eq!(stored.version, v2);
    // A large session's write (staged in a transaction) recovers too.
    let _: () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut conn)
        .await
        .unwrap();
    session.messages.push(Message::user("x".repeat(40 * 1024)));
    let v3 = store.put(&session, Some(v2)).await.unwrap();
    assert_eq!(v3, v2 + 1);
    let stored = store.get("s").await.unwrap().unwrap();
    assert_eq!(stored.messages.len(), 2);
    assert_eq!(stored.version, v3);
}

#[tokio::test]
async fn a_run_in_a_fresh_session_writes_it_once_and_is_found_by_id() {
    let orch = Orchestrator::builder()
        .store(Arc::new(store().await))
        .build();
    orch.register(FnAgent::new(
        "a",
        "answers",
        |i: orchestra_core::AgentInput, _| async move {
            format!("seen {} earlier messages", i.messages.len() - 1)
        },
    ));
    let result = orch
        .run(
            // Not checkpointed (a durable store's default): a checkpointed
            // run keeps its start record.
            RunRequest::new("sequential", "t")
                .agents(["a", "a"])
                .session("fresh-1")
                .option("checkpoint", false)
                .fresh_session(),
        )
        .await
        .unwrap();
    assert_eq!(result.status, RunStatus::Completed);
    let session = orch.get_session("fresh-1").await.unwrap().unwrap();
    assert_eq!(session.version, 1, "one write: no start record");
    assert_eq!(session.messages.len(), 3);
    assert_eq!(session.runs.len(), 1);
    assert_eq!(session.runs[0].status, RunStatus::Completed);
    assert_eq!(
        orch.store()
            .find_run(&result.run_id)
            .await
            .unwrap()
            .as_deref(),
        Some("fresh-1")
    );
    assert_eq!(
        orch.get_run(&result.run_id).await.unwrap().unwrap().output,
        result.output
    );
    // Continuing it is an ordinary run: a start record, then the end.
    let next = orch
        .run(
            RunRequest::new("sequential", "more")
                .agents(["a"])
                .session("fresh-1"),
        )
        .await
        .unwrap();
    assert_eq!(next.output.as_deref(), Some("seen 3 earlier messages"));
    let session = orch.get_session("fresh-1").await.unwrap().unwrap();
    assert_eq!(session.version, 3);
}
