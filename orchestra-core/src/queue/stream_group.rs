//! A worker's side of a Redis Stream consumer group, shared by the run
//! queue's workers and the queue agents' workers: both take one entry at a
//! time (new, or reclaimed from a worker that stopped), keep their claim
//! while they work on it, and leave the group when they stop.

use std::time::Duration;

use redis::{
    aio::ConnectionManager,
    streams::{StreamAutoClaimReply, StreamId, StreamPendingCountReply, StreamReadReply},
};

use crate::{error::StoreError, session::RedisLink};

/// A duration as Redis milliseconds: at least 1, since 0 means "forever"
/// to `BLOCK` and "no limit" to TTLs.
pub(crate) fn ms(d: Duration) -> u64 {
    d.as_millis().clamp(1, u128::from(u64::MAX)) as u64
}

/// One consumer of one group of one stream.
pub(crate) struct GroupConsumer<'a> {
    pub link: &'a RedisLink,
    pub stream: String,
    pub group: String,
    pub consumer: String,
}

impl GroupConsumer<'_> {
    /// Creates the group (and the stream) unless it exists.
    pub async fn create_group(&self) -> Result<(), StoreError> {
        let created: Result<(), StoreError> = self
            .link
            .query(
                "create group",
                redis::cmd("XGROUP")
                    .arg("CREATE")
                    .arg(&self.stream)
                    .arg(&self.group)
                    .arg("0")
                    .arg("MKSTREAM"),
            )
            .await;
        match created {
            Err(StoreError::Backend(msg)) if msg.contains("BUSYGROUP") => Ok(()),
            other => other,
        }
    }

    /// Waits up to `block` on `blocking` (a connection of its own) for one
    /// entry no consumer has had.
    async fn read_new(
        &self,
        blocking: &ConnectionManager,
        block: Duration,
    ) -> Result<Option<StreamId>, StoreError> {
        let mut conn = blocking.clone();
        let limit = self.link.config.op_timeout() + block;
        let reply: Option<StreamReadReply> = self
            .link
            .call_within(
                limit,
                "read stream",
                redis::cmd("XREADGROUP")
                    .arg("GROUP")
                    .arg(&self.group)
                    .arg(&self.consumer)
                    .arg("COUNT")
                    .arg(1)
                    .arg("BLOCK")
                    .arg(ms(block))
                    .arg("STREAMS")
                    .arg(&self.stream)
                    .arg(">")
                    .query_async(&mut conn),
            )
            .await?;
        Ok(reply.and_then(|r| r.keys.into_iter().next()?.ids.into_iter().next()))
    }

    /// Takes over one entry idle longer than `idle`, scanning the pending
    /// list from `cursor` (which it advances; "0-0" = wrapped around), with
    /// the number of times it has been delivered.
    async fn reclaim(
        &self,
        idle: Duration,
        cursor: &mut String,
    ) -> Result<Option<(StreamId, u32)>, StoreError> {
        let reply: StreamAutoClaimReply = self
            .link
            .query(
                "reclaim",
                redis::cmd("XAUTOCLAIM")
                    .arg(&self.stream)
                    .arg(&self.group)
                    .arg(&self.consumer)
                    .arg(ms(idle))
                    .arg(cursor.as_str())
                    .arg("COUNT")
                    .arg(1),
            )
            .await?;
        *cursor = reply.next_stream_id;
        let Some(entry) = reply.claimed.into_iter().next() else {
            return Ok(None);
        };
        let pending: StreamPendingCountReply = self
            .link
            .query(
                "pending",
                redis::cmd("XPENDING")
                    .arg(&self.stream)
                    .arg(&self.group)
                    .arg(&entry.id)
                    .arg(&entry.id)
                    .arg(1),
            )
            .await?;
        let deliveries = pending
            .ids
            .first()
            .map_or(2, |p| u32::try_from(p.times_delivered).unwrap_or(u32::MAX));
        tracing::info!(consumer = %self.consumer, entry = %entry.id, deliveries, "reclaimed an entry its worker abandoned");
        Ok(Some((entry, deliveries)))
    }

    /// Resets the entry's idle time so no other worker reclaims it;
    /// `false` if the entry is no longer pending (someone else finished it).
    pub async fn keep_claim(&self, entry_id: &str) -> Result<bool, StoreError> {
        let kept: Vec<String> = self
            .link
            .query(
                "keep claim",
                redis::cmd("XCLAIM")
                    .arg(&self.stream)
                    .arg(&self.group)
                    .arg(&self.consumer)
                    .arg(0)
                    .arg(entry_id)
                    .arg("JUSTID"),
            )
            .await?;
        Ok(!kept.is_empty())
    }

    /// Removes this consumer from the group (call only when nothing it
    /// took is still pending).
    pub async fn leave(&self) {
        let removed: Result<i64, StoreError> = self
            .link
            .query(
                "delete consumer",
                redis::cmd("XGROUP")
                    .arg("DELCONSUMER")
                    .arg(&self.stream)
                    .arg(&self.group)
                    .arg(&self.consumer),
            )
            .await;
        if let Err(e) = removed {
            tracing::debug!(consumer = %self.consumer, error = %e, "could not remove the consumer");
        }
    }
}

/// Which entry a worker takes next: every `claim_idle / 2` it scans the
/// pending list for entries idle longer than `claim_idle` (a worker that
/// stopped mid-request), one per round until the scan wraps; otherwise it
/// waits for a new entry.
pub(crate) struct NextEntry {
    claim_idle: Duration,
    claim_every: Duration,
    next_claim: tokio::time::Instant,
    cursor: String,
    group_ready: bool,
}

impl NextEntry {
    /// `group_ready`: whether the group is known to exist already.
    pub fn new(claim_idle: Duration, group_ready: bool) -> Self {
        Self {
            claim_idle,
            claim_every: (claim_idle / 2).max(Duration::from_millis(50)),
            next_claim: tokio::time::Instant::now(),
            cursor: "0-0".to_owned(),
            group_ready,
        }
    }

    /// The next entry with its delivery count, or none this round.
    pub async fn take(
        &mut self,
        group: &GroupConsumer<'_>,
        blocking: &ConnectionManager,
        block: Duration,
    ) -> Result<Option<(StreamId, u32)>, StoreError> {
        if !self.group_ready {
            group.create_group().await?;
            self.group_ready = true;
        }
        let now = tokio::time::Instant::now();
        if now >= self.next_claim {
            match group.reclaim(self.claim_idle, &mut self.cursor).await? {
                Some(taken) => return Ok(Some(taken)),
                // More of the pending list to scan: go on next round.
                None if self.cursor != "0-0" => return Ok(None),
                None => self.next_claim = now + self.claim_every,
            }
        }
        Ok(group.read_new(blocking, block).await?.map(|e| (e, 1)))
    }

    /// Notes a failed round: a group Redis lost (restarted without
    /// persistence) is created again on the next one.
    pub fn failed(&mut self, e: &StoreError) {
        if matches!(e, StoreError::Backend(m) if m.contains("NOGROUP")) {
            self.group_ready = false;
        }
    }
}
