//! The run queue on Redis Streams: load sharing, reclaiming a crashed
//! worker's run, dead-lettering, never executing a completed run twice, and
//! resumable per-run event streams.
//!
//! Needs Redis at 127.0.0.1:6379 (`scripts/ensure-services` starts one).

#![cfg(feature = "redis")]

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use futures::StreamExt;
use orchestra_core::{
    RedisStore, RedisStoreConfig,
    queue::{JobError, QueuedRunStatus, RedisRunQueue, RunJob, RunQueueConfig},
};
use serde_json::{Value, json};
use tokio::{
    sync::Notify,
    task::JoinHandle,
    time::{Instant, sleep},
};
use tokio_util::sync::CancellationToken;

async fn queue(config: RunQueueConfig) -> (RedisRunQueue, String) {
    let prefix = format!("test:{}", uuid::Uuid::new_v4());
    let store = RedisStore::connect(
        "redis://127.0.0.1:6379",
        RedisStoreConfig::default().prefix(prefix.clone()),
    )
    .await
    .expect("Redis must be running at 127.0.0.1:6379 (see scripts/ensure-services)");
    (RedisRunQueue::new(&store, config), prefix)
}

fn fast() -> RunQueueConfig {
    RunQueueConfig {
        claim_idle: Duration::from_millis(500),
        block: Duration::from_millis(200),
        event_poll: Duration::from_millis(20),
        max_deliveries: 3,
        ..RunQueueConfig::default()
    }
}

/// Polls every 50 ms until every run is in a final state or `limit` passes.
async fn wait_final(queue: &RedisRunQueue, ids: &[String], limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        let mut all = true;
        for id in ids {
            let s = queue.status(id).await.unwrap();
            all &= s.is_some_and(|s| s.status.is_final());
        }
        if all {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        sleep(Duration::from_millis(50)).await;
    }
}

type Counts = Arc<Mutex<HashMap<String, Vec<String>>>>;

/// A worker whose handler records (run id → worker names) and answers.
fn counting_worker(
    queue: &RedisRunQueue,
    name: &'static str,
    counts: Counts,
    delay: Duration,
    stop: CancellationToken,
) -> JoinHandle<()> {
    let queue = queue.clone();
    tokio::spawn(async move {
        queue
            .run_worker(
                move |job: RunJob| {
                    let counts = counts.clone();
                    async move {
                        counts
                            .lock()
                            .unwrap()
                            .entry(job.run_id.clone())
                            .or_default()
                            .push(name.to_owned());
                        sleep(delay).await;
                        Ok::<Value, JobError>(json!({"by": name, "task": job.request["task"]}))
                    }
                },
                stop,
            )
            .await
            .unwrap();
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_share_the_load_and_run_each_entry_once() {
    let (queue, _) = queue(fast()).await;
    let mut ids = Vec::new();
    for i in 0..20 {
        ids.push(queue.submit(&json!({"task": i})).await.unwrap());
    }
    let first = queue.status(&ids[0]).await.unwrap().unwrap();
    assert_eq!(first.status, QueuedRunStatus::Queued);
    assert_eq!(first.request, json!({"task": 0}));

    let counts: Counts = Arc::default();
    let stop = CancellationToken::new();
    let a = counting_worker(
        &queue,
        "a",
        counts.clone(),
        Duration::from_millis(30),
        stop.clone(),
    );
    let b = counting_worker(
        &queue,
        "b",
        counts.clone(),
        Duration::from_millis(30),
        stop.clone(),
    );
    assert!(wait_final(&queue, &ids, Duration::from_secs(20)).await);
    stop.cancel();
    a.await.unwrap();
    b.await.unwrap();

    let counts = counts.lock().unwrap().clone();
    let mut by = HashMap::<String, usize>::new();
    for id in &ids {
        let runs = &counts[id];
        assert_eq!(runs.len(), 1, "run {id} executed {runs:?}");
        *by.entry(runs[0].clone()).or_default() += 1;
        let rec = queue.status(id).await.unwrap().unwrap();
        assert_eq!(rec.status, QueuedRunStatus::Completed);
        assert_eq!(rec.attempts, 1);
        assert_eq!(rec.result.unwrap()["by"], json!(runs[0]));
    }
    assert!(by.get("a").is_some_and(|n| *n > 0), "{by:?}");
    assert!(by.get("b").is_some_and(|n| *n > 0), "{by:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_workers_run_is_reclaimed_and_finished_by_another() {
    let (queue, _) = queue(fast()).await;
    let run_id = queue.submit(&json!({"task": "long"})).await.unwrap();

    // Worker A takes the run and hangs in its handler.
    let started = Arc::new(Notify::new());
    let crashed = tokio::spawn({
        let queue = queue.clone();
        let started = started.clone();
        async move {
            queue
                .run_worker(
                    move |_job: RunJob| {
                        let started = started.clone();
                        async move {
                            started.notify_one();
                            std::future::pending::<Result<Value, JobError>>().await
                        }
                    },
                    CancellationToken::new(),
                )
                .await
        }
    });
    tokio::time::timeout(Duration::from_secs(10), started.notified())
        .await
        .expect("worker A never started the run");
    let rec = queue.status(&run_id).await.unwrap().unwrap();
    assert_eq!(rec.status, QueuedRunStatus::Running);
    // A dies without acknowledging: its task (and the handler) are gone.
    crashed.abort();
    let _ = crashed.await;

    // Worker B joins and finishes the run once A's claim has gone idle.
    let counts: Counts = Arc::default();
    let stop = CancellationToken::new();
    let b = counting_worker(&queue, "b", counts.clone(), Duration::ZERO, stop.clone());
    assert!(
        wait_final(
            &queue,
            std::slice::from_ref(&run_id),
            Duration::from_secs(15)
        )
        .await,
        "run not reclaimed"
    );
    stop.cancel();
    b.await.unwrap();
    let rec = queue.status(&run_id).await.unwrap().unwrap();
    assert_eq!(rec.status, QueuedRunStatus::Completed);
    assert_eq!(rec.attempts, 2);
    assert_eq!(rec.result.unwrap()["by"], "b");
    assert_eq!(counts.lock().unwrap()[&run_id], ["b"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_run_keeps_its_claim_while_its_worker_lives() {
    // The handler takes four claim timeouts; a second worker must not steal it.
    let (queue, _) = queue(fast()).await;
    let run_id = queue.submit(&json!({"task": "slow"})).await.unwrap();
    let counts: Counts = Arc::default();
    let stop = CancellationToken::new();
    let a = counting_worker(
        &queue,
        "a",
        counts.clone(),
        Duration::from_secs(2),
        stop.clone(),
    );
    sleep(Duration::from_millis(300)).await;
    let b = counting_worker(&queue, "b", counts.clone(), Duration::ZERO, stop.clone());
    assert!(
        wait_final(
            &queue,
            std::slice::from_ref(&run_id),
            Duration::from_secs(15)
        )
        .await
    );
    stop.cancel();
    a.await.unwrap();
    b.await.unwrap();
    assert_eq!(counts.lock().unwrap()[&run_id], ["a"]);
    assert_eq!(queue.status(&run_id).await.unwrap().unwrap().attempts, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_that_keeps_failing_is_dead_lettered_after_n_deliveries() {
    let (queue, _) = queue(RunQueueConfig {
        claim_idle: Duration::from_millis(200),
        ..fast()
    })
    .await;
    let run_id = queue.submit(&json!({"task": "doomed"})).await.unwrap();
    let ok_id = queue.submit(&json!({"task": "fine"})).await.unwrap();
    let stats = queue.stats().await.unwrap();
    assert_eq!((stats.depth, stats.pending, stats.dead_letters), (2, 0, 0));
    assert_eq!(stats.waiting(), 2);
    let calls: Counts = Arc::default();
    let stop = CancellationToken::new();
    let worker = tokio::spawn({
        let queue = queue.clone();
        let calls = calls.clone();
        let stop = stop.clone();
        async move {
            queue
                .run_worker(
                    move |job: RunJob| {
                        let calls = calls.clone();
                        async move {
                            calls
                                .lock()
                                .unwrap()
                                .entry(job.run_id.clone())
                                .or_default()
                                .push(job.attempt.to_string());
                            if job.request["task"] == "doomed" {
                                Err::<Value, JobError>(
                                    format!("boom on attempt {}", job.attempt).into(),
                                )
                            } else {
                                Ok(json!("ok"))
                            }
                        }
                    },
                    stop,
                )
                .await
        }
    });
    assert!(
        wait_final(
            &queue,
            &[run_id.clone(), ok_id.clone()],
            Duration::from_secs(20)
        )
        .await
    );
    stop.cancel();
    worker.await.unwrap().unwrap();

    assert_eq!(calls.lock().unwrap()[&run_id], ["1", "2", "3"]);
    let rec = queue.status(&run_id).await.unwrap().unwrap();
    assert_eq!(rec.status, QueuedRunStatus::Dead);
    assert_eq!(rec.error.as_deref(), Some("boom on attempt 3"));
    let dead = queue.dead_letters(10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].run_id, run_id);
    assert_eq!(dead[0].deliveries, 3);
    assert_eq!(dead[0].request, json!({"task": "doomed"}));
    let stats = queue.stats().await.unwrap();
    assert_eq!((stats.depth, stats.pending, stats.dead_letters), (0, 0, 1));
    assert_eq!(
        queue.status(&ok_id).await.unwrap().unwrap().status,
        QueuedRunStatus::Completed
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_completed_run_delivered_again_is_not_executed_twice() {
    let (queue, prefix) = queue(fast()).await;
    let run_id = queue.submit(&json!({"task": "once"})).await.unwrap();
    let counts: Counts = Arc::default();
    let stop = CancellationToken::new();
    let w = counting_worker(&queue, "a", counts.clone(), Duration::ZERO, stop.clone());
    assert!(
        wait_final(
            &queue,
            std::slice::from_ref(&run_id),
            Duration::from_secs(10)
        )
        .await
    );

    // The same run arrives again (as after a worker that completed it but
    // crashed before acknowledging, or a producer that retried).
    let mut raw = redis::Client::open("redis://127.0.0.1:6379")
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let _: String = redis::cmd("XADD")
        .arg(format!("{prefix}:runs:queue"))
        .arg("*")
        .arg("run_id")
        .arg(&run_id)
        .arg("request")
        .arg(r#"{"task":"once"}"#)
        .query_async(&mut raw)
        .await
        .unwrap();
    // Wait until the duplicate entry has been consumed and removed.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let len: usize = redis::cmd("XLEN")
            .arg(format!("{prefix}:runs:queue"))
            .query_async(&mut raw)
            .await
            .unwrap();
        if len == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "duplicate entry never consumed");
        sleep(Duration::from_millis(50)).await;
    }
    stop.cancel();
    w.await.unwrap();
    assert_eq!(counts.lock().unwrap()[&run_id], ["a"]);
    let err = queue
        .submit_with_id(&run_id, &json!({"task": "once"}))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "duplicate_run");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_readable_from_any_seq_and_end_with_the_run() {
    let (queue, _) = queue(fast()).await;
    let run_id = queue.submit(&json!({"task": "talk"})).await.unwrap();
    let stop = CancellationToken::new();
    let gate = Arc::new(Notify::new());
    let worker = tokio::spawn({
        let queue = queue.clone();
        let stop = stop.clone();
        let gate = gate.clone();
        async move {
            queue
                .run_worker(
                    move |job: RunJob| {
                        let gate = gate.clone();
                        async move {
                            for i in 1..=3 {
                                job.events.append(&json!({"type": "step", "i": i})).await?;
                            }
                            gate.notified().await;
                            job.events.append(&json!({"type": "last"})).await?;
                            Ok::<Value, JobError>(json!("done"))
                        }
                    },
                    stop,
                )
                .await
        }
    });

    // A live reader sees events as they come and ends with the run.
    let live = tokio::spawn({
        let queue = queue.clone();
        let run_id = run_id.clone();
        async move {
            queue
                .events(&run_id, 0)
                .map(|e| e.unwrap())
                .collect::<Vec<_>>()
                .await
        }
    });
    // Resume after seq 2 while the run is still going.
    let mut resumed = queue.events(&run_id, 2);
    let third = tokio::time::timeout(Duration::from_secs(10), resumed.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(third.seq, 3);
    assert_eq!(third.data, json!({"type": "step", "i": 3}));
    gate.notify_one();
    let rest: Vec<_> = resumed.map(|e| e.unwrap()).collect().await;
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].seq, 4);

    let all = tokio::time::timeout(Duration::from_secs(10), live)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(all.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2, 3, 4]);
    assert_eq!(all[3].data, json!({"type": "last"}));
    // After the end, a reader from 0 replays everything and ends at once.
    let replay: Vec<_> = queue.events(&run_id, 0).collect().await;
    assert_eq!(replay.len(), 4);
    stop.cancel();
    worker.await.unwrap().unwrap();

    let unknown: Vec<_> = queue.events("no-such-run", 0).collect().await;
    assert_eq!(unknown.len(), 1);
    assert_eq!(unknown[0].as_ref().unwrap_err().code(), "unknown_run");
}

#[tokio::test]
async fn a_stopped_worker_returns_promptly() {
    let (queue, _) = queue(fast()).await;
    let stop = CancellationToken::new();
    let w = tokio::spawn({
        let queue = queue.clone();
        let stop = stop.clone();
        async move {
            queue
                .run_worker(|_job: RunJob| async { Ok(json!(null)) }, stop)
                .await
        }
    });
    sleep(Duration::from_millis(300)).await;
    let t = Instant::now();
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(5), w)
        .await
        .expect("worker did not stop")
        .unwrap()
        .unwrap();
    assert!(t.elapsed() < Duration::from_secs(3));
    assert_eq!(
        queue.status("bad:id").await.unwrap_err().code(),
        "invalid_run_id"
    );
}
