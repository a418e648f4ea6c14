//! Session store operations per second: `RedisStore` next to `MemoryStore`.
//!
//! Needs Redis at 127.0.0.1:6379 (`scripts/ensure-services`); keys go under a
//! fresh prefix and are deleted afterwards.
//!
//! ```sh
//! cargo bench -p orchestra-core --features redis --bench redis_store
//! ```
//!
//! Each store is measured on a session of 10 messages (about 1.5 KB of JSON):
//! `get`, a conditional `put` (the Lua version check), `update_session`
//! (get + put, what a run does twice), and 64 concurrent `get`s / `put`s on
//! distinct sessions (throughput through one multiplexed connection); then
//! `put` alone and 64 at once on sessions of about 50 KB (a long
//! conversation), where the cost of the write in Redis itself shows.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use orchestra_core::{
    Message, RedisStore, RedisStoreConfig,
    session::{MemoryStore, Session, SessionStore, update_session},
};
use tokio::runtime::Runtime;

const CONCURRENCY: usize = 64;

fn sample_session(id: &str) -> Session {
    let mut s = Session::new(id);
    for i in 0..10 {
        s.messages.push(if i % 2 == 0 {
            Message::user(format!("question {i}: what does the quarterly report say about churn?"))
        } else {
            Message::assistant(
                "analyst",
                format!("answer {i}: churn fell by two points, driven by the annual plan and better onboarding."),
            )
        });
    }
    s
}

/// About 50 KB of JSON: 40 turns of about 1.2 KB each.
fn large_session(id: &str) -> Session {
    let mut s = Session::new(id);
    let text = "The quarterly report shows churn falling by two points. ".repeat(20);
    for i in 0..40 {
        s.messages.push(if i % 2 == 0 {
            Message::user(format!("question {i}: {text}"))
        } else {
            Message::assistant("analyst", format!("answer {i}: {text}"))
        });
    }
    s
}

fn bench_store(c: &mut Criterion, rt: &Runtime, name: &str, store: Arc<dyn SessionStore>) {
    let mut group = c.benchmark_group(format!("store/{name}"));
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(4))
        .warm_up_time(Duration::from_secs(1));

    let base = sample_session("bench");
    let version = Arc::new(AtomicU64::new(rt.block_on(async {
        let _ = store.delete("bench").await;
        store.put(&base, None).await.expect("seed session")
    })));

    group.throughput(Throughput::Elements(1));
    group.bench_function("get", |b| {
        b.to_async(rt).iter(|| async {
            store.get("bench").await.expect("get").expect("present");
        });
    });
    group.bench_function("put", |b| {
        b.to_async(rt).iter(|| async {
            let expected = version.load(Ordering::Relaxed);
            let v = store.put(&base, Some(expected)).await.expect("put");
            version.store(v, Ordering::Relaxed);
        });
    });
    group.bench_function("update_session", |b| {
        b.to_async(rt).iter(|| async {
            update_session(store.as_ref(), "bench", |s| {
                s.metadata.insert("n".into(), s.version.into());
                Ok(())
            })
            .await
            .expect("update");
        });
    });

    let ids: Vec<String> = (0..CONCURRENCY).map(|i| format!("bench-{i}")).collect();
    let versions: Arc<Vec<AtomicU64>> = Arc::new(rt.block_on(async {
        let mut out = Vec::new();
        for id in &ids {
            let _ = store.delete(id).await;
            out.push(AtomicU64::new(
                store.put(&sample_session(id), None).await.expect("seed"),
            ));
        }
        out
    }));
    group.throughput(Throughput::Elements(CONCURRENCY as u64));
    group.bench_function(format!("get_x{CONCURRENCY}_concurrent"), |b| {
        b.to_async(rt).iter(|| {
            let store = store.clone();
            let ids = ids.clone();
            async move {
                let tasks = ids.into_iter().map(|id| {
                    let store = store.clone();
                    tokio::spawn(async move { store.get(&id).await })
                });
                for t in futures::future::join_all(tasks).await {
                    t.expect("join").expect("get").expect("present");
                }
            }
        });
    });
    concurrent_puts(&mut group, rt, &store, "", &ids, &versions, sample_session);

    let large = large_session("bench");
    group.throughput(Throughput::Elements(1));
    group.bench_function("put_50kb", |b| {
        b.to_async(rt).iter(|| async {
            let expected = version.load(Ordering::Relaxed);
            let v = store.put(&large, Some(expected)).await.expect("put");
            version.store(v, Ordering::Relaxed);
        });
    });
    group.throughput(Throughput::Elements(CONCURRENCY as u64));
    concurrent_puts(
        &mut group,
        rt,
        &store,
        "_50kb",
        &ids,
        &versions,
        large_session,
    );
    group.finish();

    rt.block_on(async {
        let _ = store.delete("bench").await;
        for id in &ids {
            let _ = store.delete(id).await;
        }
    });
}

/// `put{label}_x64_concurrent`: 64 conditional writes at once, one per
/// session of `ids`, of sessions made by `make`.
fn concurrent_puts(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    rt: &Runtime,
    store: &Arc<dyn SessionStore>,
    label: &str,
    ids: &[String],
    versions: &Arc<Vec<AtomicU64>>,
    make: fn(&str) -> Session,
) {
    let sessions: Arc<Vec<Session>> = Arc::new(ids.iter().map(|id| make(id)).collect());
    group.bench_function(format!("put{label}_x{CONCURRENCY}_concurrent"), |b| {
        b.to_async(rt).iter(|| {
            let store = store.clone();
            let versions = versions.clone();
            let sessions = sessions.clone();
            async move {
                let tasks = (0..sessions.len()).map(|i| {
                    let store = store.clone();
                    let versions = versions.clone();
                    let sessions = sessions.clone();
                    tokio::spawn(async move {
                        let expected = versions[i].load(Ordering::Relaxed);
                        let v = store.put(&sessions[i], Some(expected)).await.expect("put");
                        versions[i].store(v, Ordering::Relaxed);
                    })
                });
                for t in futures::future::join_all(tasks).await {
                    t.expect("join");
                }
            }
        });
    });
}

fn stores(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    bench_store(c, &rt, "memory", Arc::new(MemoryStore::new()));
    let prefix = format!("bench:{}", uuid::Uuid::new_v4());
    let redis = rt
        .block_on(RedisStore::connect(
            "redis://127.0.0.1:6379",
            RedisStoreConfig::default().prefix(prefix),
        ))
        .expect("Redis must be running at 127.0.0.1:6379 (see scripts/ensure-services)");
    bench_store(c, &rt, "redis", Arc::new(redis));
}

criterion_group!(benches, stores);
criterion_main!(benches);
