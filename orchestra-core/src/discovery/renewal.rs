//! The background task that keeps a registration alive: the Redis
//! heartbeat and the etcd lease renewal beat on the same schedule and stop
//! the same way, and differ only in what one beat and the goodbye do.

use std::{future::Future, time::Duration};

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// What one backend does to keep a registration and to take it back.
pub(crate) trait Renew: Send + 'static {
    /// One renewal; a failure is logged and tried again on the next tick.
    fn renew(&mut self) -> impl Future<Output = ()> + Send;
    /// Removes the registration after the token was cancelled.
    fn leave(self) -> impl Future<Output = ()> + Send;
}

/// A renewal task, aborted when dropped: the registration then lapses on
/// its own, as it would for a crashed process.
pub(crate) struct Renewal {
    task: Option<JoinHandle<()>>,
}

impl Renewal {
    /// Renews every `interval` (the first beat one interval from now, late
    /// beats delayed rather than bunched) until `cancel` fires, then leaves.
    pub fn spawn(mut renew: impl Renew, interval: Duration, cancel: CancellationToken) -> Self {
        let task = tokio::spawn(async move {
            let start = tokio::time::Instant::now() + interval;
            let mut ticker = tokio::time::interval_at(start, interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = cancel.cancelled() => break,
                    _ = ticker.tick() => renew.renew().await,
                }
            }
            renew.leave().await;
        });
        Self { task: Some(task) }
    }

    /// Waits until the task has ended; `what` names it in the log.
    pub async fn stopped(mut self, what: &str) {
        if let Some(task) = self.task.take()
            && let Err(e) = task.await
        {
            tracing::warn!(error = %e, "{what} task ended abnormally");
        }
    }

    pub fn is_finished(&self) -> bool {
        self.task.as_ref().is_none_or(JoinHandle::is_finished)
    }
}

impl Drop for Renewal {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
