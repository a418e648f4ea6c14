//! The timing every queue worker keeps (run queue, Redis and NATS queue
//! agents): how it waits out an unreachable queue, and how often it tells
//! the queue it still works on what it took.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// The wait between attempts to reach a queue that failed: 100 ms, doubled
/// on each failure up to 5 s, back to 100 ms after a success.
pub(crate) struct Backoff(Duration);

impl Backoff {
    const FIRST: Duration = Duration::from_millis(100);
    const MAX: Duration = Duration::from_secs(5);

    pub fn new() -> Self {
        Self(Self::FIRST)
    }

    pub fn reset(&mut self) {
        self.0 = Self::FIRST;
    }

    /// The next wait, for logs.
    pub fn current(&self) -> Duration {
        self.0
    }

    /// Waits the current time and doubles it; `false` if `stop` fired first.
    pub async fn wait(&mut self, stop: &CancellationToken) -> bool {
        tokio::select! {
            () = stop.cancelled() => return false,
            () = tokio::time::sleep(self.0) => {}
        }
        self.0 = (self.0 * 2).min(Self::MAX);
        true
    }
}

/// Ticks every third of `claim_idle` (at least 20 ms), starting one period
/// from now: a worker that keeps its claim this often is never taken for
/// dead. Late ticks are delayed rather than bunched.
pub(crate) fn claim_keeper(claim_idle: Duration) -> tokio::time::Interval {
    let every = (claim_idle / 3).max(Duration::from_millis(20));
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker
}
