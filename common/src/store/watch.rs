//! The reaper's watch lists: sorted sets of operation names, each scored by when to look at that
//! record again.
//!
//! They are to-do lists, not truth: an entry only says "look at this record then", and the reaper
//! ([`crate::reaper`]) decides from the record. An entry is armed before or *with* the record
//! change it guards: with it on the hot path ([`WatchEffect`], in the record's own create or CAS
//! script: a submit's guard and retention watch, a cancel's backstop), before it by a command of
//! its own otherwise ([`Store::rearm`]: a
//! re-queue's publish guard). An entry is removed or moved only while its score is still the one
//! the remover read ([`Store::rewatch`]), so a crash at any point leaves at worst an extra entry,
//! never a missing one, and an entry re-armed meanwhile survives.

use redis::AsyncCommands;

use super::bucket::Bucket;
use super::{Store, StoreError};
use crate::name::OperationName;
use crate::time::Millis;

/// The reaper's watch lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Watch {
    /// Running operations with a cancel on record: make sure their worker's inbox has it (the
    /// api writes it after the record; this covers an api that died in between).
    Cancels,
    /// Operations being queued: re-publish them if their publish was never confirmed.
    Unpublished,
    /// Operations with a retention: delete them once done for that long.
    Retention,
}

/// A watch-list change made by the script that writes a record, and only if it writes: the
/// entry and the record change together, so no crash can come between them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchEffect {
    /// Arm the entry no later than this (`ZADD LT`): an entry armed earlier keeps its time.
    Arm(Watch, Millis),
    /// Move the entry to this time, as [`Store::rearm`].
    Move(Watch, Millis),
    /// Remove the entry if it is still armed for this time, as [`Store::unwatch`].
    Remove(Watch, Millis),
}

/// `ZRANGE key -inf upto BYSCORE LIMIT 0 count WITHSCORES`: the first `count` members of a
/// sorted set scored at or before `upto` (`(t` for strictly before), with their scores.
pub(super) fn due_by(key: &str, upto: impl redis::ToRedisArgs, count: usize) -> redis::Cmd {
    let mut cmd = redis::cmd("ZRANGE");
    cmd.arg(key)
        .arg("-inf")
        .arg(upto)
        .arg("BYSCORE")
        .arg("LIMIT")
        .arg(0)
        .arg(count)
        .arg("WITHSCORES");
    cmd
}

impl Store {
    /// Moves a watch-list entry to `at`, earlier or later (a guard armed anew).
    pub async fn rearm(
        &self,
        list: Watch,
        name: &OperationName,
        at: Millis,
    ) -> Result<(), StoreError> {
        let _: i64 = self
            .conn()
            .zadd(
                self.keys.watch(list, Bucket::of_id(name.id())),
                name.as_str(),
                at,
            )
            .await?;
        Ok(())
    }

    /// Removes a watch-list entry if it is still armed for `at` (as armed, or as [`Store::due`]
    /// answered it); an entry re-armed since is kept.
    pub async fn unwatch(
        &self,
        list: Watch,
        name: &OperationName,
        at: Millis,
    ) -> Result<(), StoreError> {
        self.rewatch(list, name, at, None).await
    }

    /// Re-arms a watch-list entry for `next` (or removes it, if `None`) if it is still armed for
    /// `at`; an entry re-armed by someone else since is kept as they left it.
    pub async fn rewatch(
        &self,
        list: Watch,
        name: &OperationName,
        at: Millis,
        next: Option<Millis>,
    ) -> Result<(), StoreError> {
        Ok(self.script_rewatch(list, name, at, next).await?)
    }

    /// Up to `count` entries of every bucket's watch list `list` due at or before `now`, with the
    /// time they were due (for tests and tools; the reaper reads one bucket at a time).
    pub async fn due(
        &self,
        list: Watch,
        now: Millis,
        count: usize,
    ) -> Result<Vec<(OperationName, Millis)>, StoreError> {
        let mut due = Vec::new();
        for bucket in Bucket::all() {
            due.extend(self.due_in(list, bucket, now, count).await?);
        }
        due.sort_by_key(|&(_, at)| at);
        due.truncate(count);
        Ok(due)
    }

    /// Up to `count` entries of `bucket`'s watch list `list` due at or before `now`, with the time
    /// they were due. An entry that is not a valid name is dropped.
    pub async fn due_in(
        &self,
        list: Watch,
        bucket: Bucket,
        now: Millis,
        count: usize,
    ) -> Result<Vec<(OperationName, Millis)>, StoreError> {
        let key = self.keys.watch(list, bucket);
        let raw: Vec<(String, f64)> = due_by(&key, now, count)
            .query_async(&mut self.conn())
            .await?;
        let mut due = Vec::with_capacity(raw.len());
        for (member, score) in raw {
            match OperationName::parse(&member) {
                // Scores are whole milliseconds, exactly representable.
                Ok(name) => due.push((name, score as Millis)),
                Err(_) => {
                    let _: i64 = self.conn().zrem(&key, &member).await?;
                }
            }
        }
        Ok(due)
    }

    /// Claims `bucket`'s sweep for `hold` unless another reaper's claim on it is still running
    /// (`SET NX PX` on the bucket's own claim key, so it expires on Redis's clock and lives in the
    /// bucket's slot): whether this caller is the one to sweep it now.
    pub async fn claim_sweep(
        &self,
        bucket: Bucket,
        hold: std::time::Duration,
    ) -> Result<bool, StoreError> {
        let claimed: Option<String> = redis::cmd("SET")
            .arg(self.keys.reaper(bucket))
            .arg(1)
            .arg("NX")
            .arg("PX")
            .arg(u64::try_from(hold.as_millis()).unwrap_or(u64::MAX).max(1))
            .query_async(&mut self.conn())
            .await?;
        Ok(claimed.is_some())
    }
}
