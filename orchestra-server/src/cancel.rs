//! Cancelling (or stopping) a run on whichever instance runs it.
//!
//! `POST /runs/{run_id}/cancel` on any instance writes a marker key
//! `{prefix}:cancel:{run_id}` (one hour) and publishes the run id on the
//! channel `{prefix}:cancel`. Every instance listens on that channel and
//! cancels the run if it runs it here; a queue worker checks the marker
//! before it starts or resumes a run, so a run cancelled while queued (or
//! while its instance was reconnecting) never starts. `POST
//! /runs/{run_id}/stop` publishes `{"run_id", "reason"}` on `{prefix}:stop`
//! the same way: the instance running it ends it cleanly.

use std::time::Duration;

use futures::StreamExt;
use redis::AsyncCommands;
use tokio_util::sync::CancellationToken;

use crate::{
    error::ApiError,
    state::{AppState, RedisBackend},
};

/// How long a cancel marker outlives its request.
const MARKER_TTL: Duration = Duration::from_secs(3600);

fn channel(redis: &RedisBackend) -> String {
    format!("{}:cancel", redis.store.config().prefix)
}

fn stop_channel(redis: &RedisBackend) -> String {
    format!("{}:stop", redis.store.config().prefix)
}

fn marker(redis: &RedisBackend, run_id: &str) -> String {
    format!("{}:cancel:{run_id}", redis.store.config().prefix)
}

fn unavailable(e: &redis::RedisError) -> ApiError {
    ApiError::from(orchestra_core::StoreError::Unavailable(e.to_string()))
}

/// A connection of its own (the store's manager is not meant for pub/sub).
async fn connect(
    redis: &RedisBackend,
) -> Result<redis::aio::MultiplexedConnection, redis::RedisError> {
    redis::Client::open(redis.url.as_str())?
        .get_multiplexed_async_connection()
        .await
}

/// Marks the run cancelled and tells every instance.
pub async fn signal(redis: &RedisBackend, run_id: &str) -> Result<(), ApiError> {
    let mut conn = connect(redis).await.map_err(|e| unavailable(&e))?;
    let _: () = conn
        .set_ex(marker(redis, run_id), "1", MARKER_TTL.as_secs())
        .await
        .map_err(|e| unavailable(&e))?;
    let receivers: i64 = conn
        .publish(channel(redis), run_id)
        .await
        .map_err(|e| unavailable(&e))?;
    tracing::info!(run_id, receivers, "cancel signalled");
    Ok(())
}

/// Asks every instance to stop the run cleanly at its next step boundary
/// (published on `{prefix}:stop` as `{"run_id", "reason"}`).
pub async fn signal_stop(redis: &RedisBackend, run_id: &str, reason: &str) -> Result<(), ApiError> {
    let mut conn = connect(redis).await.map_err(|e| unavailable(&e))?;
    let message = serde_json::json!({"run_id": run_id, "reason": reason}).to_string();
    let receivers: i64 = conn
        .publish(stop_channel(redis), message)
        .await
        .map_err(|e| unavailable(&e))?;
    tracing::info!(run_id, receivers, "stop signalled");
    Ok(())
}

/// Whether a cancel was requested for the run (checked before a queued run starts).
pub async fn requested(redis: &RedisBackend, run_id: &str) -> bool {
    let Ok(mut conn) = connect(redis).await else {
        return false;
    };
    conn.exists(marker(redis, run_id)).await.unwrap_or(false)
}

/// Listens for cancel signals until `stop` fires, reconnecting after errors.
pub async fn listen(state: AppState, stop: CancellationToken) {
    let Some(redis) = &state.redis else { return };
    let channel = channel(redis);
    let stops = stop_channel(redis);
    let mut backoff = Duration::from_millis(100);
    loop {
        let session = async {
            let client = redis::Client::open(redis.url.as_str())?;
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(&[&channel, &stops]).await?;
            tracing::debug!(channel = %channel, "listening for cancel and stop signals");
            let mut messages = pubsub.on_message();
            while let Some(msg) = messages.next().await {
                let Ok(payload) = msg.get_payload::<String>() else {
                    continue;
                };
                if msg.get_channel_name() == stops {
                    let Ok(v) = serde_json::from_str::<serde_json::Value>(&payload) else {
                        continue;
                    };
                    let (Some(run_id), reason) = (
                        v["run_id"].as_str(),
                        v["reason"].as_str().unwrap_or("stopped"),
                    ) else {
                        continue;
                    };
                    if state.orch.stop(run_id, reason) {
                        tracing::info!(run_id, "run stopped on request from another instance");
                    }
                } else if state.orch.cancel(&payload) {
                    tracing::info!(run_id = %payload, "run cancelled on request from another instance");
                }
            }
            Ok::<(), redis::RedisError>(())
        };
        tokio::select! {
            () = stop.cancelled() => return,
            r = session => {
                if let Err(e) = r {
                    tracing::warn!(error = %e, "cancel channel lost; reconnecting");
                }
            }
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}
