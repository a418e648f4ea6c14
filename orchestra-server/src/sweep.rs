//! The periodic sweep of the Redis session index.

use std::time::Duration;

use orchestra_core::RedisStore;
use tokio_util::sync::CancellationToken;

/// Every `every`, drops the listing-index entries of sessions that expired
/// (see [`RedisStore::sweep_expired`]); every instance does it, which is
/// harmless, since removing an entry twice is a no-op.
pub(crate) async fn sweep_loop(store: RedisStore, every: Duration, stop: CancellationToken) {
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = ticker.tick() => match store.sweep_expired(SWEEP_BATCH).await {
                Ok(0) => {}
                Ok(removed) => tracing::debug!(removed, "swept expired sessions from the index"),
                Err(e) => tracing::warn!(error = %e, "could not sweep the session index"),
            },
        }
    }
}

/// Index entries checked per Redis call by the sweep.
const SWEEP_BATCH: usize = 500;
