//! Cancelling a run on whichever instance runs it.
//!
//! `POST /runs/{run_id}/cancel` on any instance writes a marker key
//! `{prefix}:cancel:{run_id}` (one hour) and publishes the run id on the
//! channel `{prefix}:cancel`. Every instance listens on that channel and
//! cancels the run if it runs it here; a queue worker checks the marker
//! before it starts or resumes a run, so a run cancelled while queued (or
//! while its instance was reconnecting) never starts.

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

fn marker(redis: &RedisBackend, run_id: &str) -> String {
    format!("{}:cancel:{run_id}", redis.store.config().prefix)
}

fn unavailable(e: &redis::RedisError) -> ApiError {
    ApiError::from(orchestra_core::StoreError::Unavailable(e.to_string()))
}

/// Marks the run cancelled and tells every instance.
pub async fn signal(redis: &RedisBackend, run_id: &str) -> Result<(), ApiError> {
    let client = redis::Client::open(redis.url.as_str()).map_err(|e| unavailable(&e))?;
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .map_err(|e| unavailable(&e))?;
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

/// Whether a cancel was requested for the run (checked before a queued run starts).
pub async fn requested(redis: &RedisBackend, run_id: &str) -> bool {
    let Ok(client) = redis::Client::open(redis.url.as_str()) else {
        return false;
    };
    let Ok(mut conn) = client.get_multiplexed_async_connection().await else {
        return false;
    };
    conn.exists(marker(redis, run_id)).await.unwrap_or(false)
}

/// Listens for cancel signals until `stop` fires, reconnecting after errors.
pub async fn listen(state: AppState, stop: CancellationToken) {
    let Some(redis) = &state.redis else { return };
    let channel = channel(redis);
    let mut backoff = Duration::from_millis(100);
    loop {
        let session = async {
            let client = redis::Client::open(redis.url.as_str())?;
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(&channel).await?;
            tracing::debug!(channel = %channel, "listening for cancel signals");
            let mut messages = pubsub.on_message();
            while let Some(msg) = messages.next().await {
                let Ok(run_id) = msg.get_payload::<String>() else {
                    continue;
                };
                if state.orch.cancel(&run_id) {
                    tracing::info!(run_id = %run_id, "run cancelled on request from another instance");
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
