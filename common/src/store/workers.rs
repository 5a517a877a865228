//! The workers' liveness: one heartbeat per worker process, not a write per running job.
//!
//! Each worker's entry in `{ns}:workers` is scored by when its heartbeat expires; the worker
//! extends it every third of its lease ([`Store::heartbeat`]), and the same script drains its
//! cancel inbox (`{ns}:inbox:{worker}`, filled by the cancel path: [`Store::send_to_inbox`]), so
//! a cancel whose message was lost reaches the job within a heartbeat at a cost that does not
//! grow with running jobs. Which operations each worker runs is the owned sets
//! (`{ns}:owned:{B}:{worker}`), kept by the scripts that write the records; a reaper that finds a
//! worker's entry expired first *condemns* it ([`Store::claim_reaping`]: its score becomes 0,
//! in one script with the claim, only while it is still expired), then loses the attempts in its
//! owned sets, then [`Store::forget_worker`]s it. A heartbeat that finds its own entry condemned
//! is refused: that worker must stop its jobs, and may register again only once a reaper has
//! removed the entry, so no attempt it started before can outlive its condemnation unnoticed.
//! An entry that expired but is not condemned yet (a Redis failover that outlasted the lease,
//! a short pause) is simply extended: nothing of that worker was lost.

use std::sync::LazyLock;
use std::time::Duration;

use redis::{AsyncCommands, Script};

use super::bucket::Bucket;
use super::watch::due_by;
use super::{Store, StoreError};
use crate::name::OperationName;
use crate::time::Millis;

/// Extends worker ARGV[1]'s entry in KEYS[1] to ARGV[2] unless a reaper condemned it (score 0), or
/// adds it if it is absent and ARGV[3] is `1`, and drains its inbox KEYS[2]: `live` and the
/// inbox's names; `condemned` or `gone` (removed by a reaper) and nothing changed.
static HEARTBEAT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local s = redis.call('ZSCORE', KEYS[1], ARGV[1])
if s then
  if tonumber(s) <= 0 then return {'condemned'} end
elseif ARGV[3] ~= '1' then return {'gone'} end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
local reply = {'live'}
for _, name in ipairs(redis.call('SMEMBERS', KEYS[2])) do reply[#reply + 1] = name end
if #reply > 1 then redis.call('DEL', KEYS[2]) end
return reply
",
    )
});

/// Adds ARGV[1] to the inbox KEYS[1], which expires ARGV[2] ms later unless drained.
static INBOX: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
redis.call('SADD', KEYS[1], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
",
    )
});

/// Claims the reaping of worker ARGV[1] for ARGV[3] ms (KEYS[2], `SET NX PX`) if its entry in
/// KEYS[1] expired before ARGV[2] (or is condemned already), and condemns it (score 0): 1 if
/// claimed, else 0 (alive again, gone, or another reaper's).
static CLAIM: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local s = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not s or tonumber(s) >= tonumber(ARGV[2]) then return 0 end
if not redis.call('SET', KEYS[2], 1, 'NX', 'PX', ARGV[3]) then return 0 end
redis.call('ZADD', KEYS[1], 0, ARGV[1])
return 1
",
    )
});

/// Removes condemned worker ARGV[1]'s entry from KEYS[1], and its inbox KEYS[2].
static FORGET: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local s = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not s or tonumber(s) ~= 0 then return 0 end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('DEL', KEYS[2])
return 1
",
    )
});

/// An undrained inbox (its worker is gone) is dropped after this long.
const INBOX_TTL: Duration = Duration::from_secs(600);

/// What a heartbeat found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Beat {
    /// Extended (or registered): the worker is alive until the time it asked for. These
    /// operations had a cancel recorded since the last beat.
    Live(Vec<OperationName>),
    /// A reaper condemned the entry: it is losing (or has lost) this worker's attempts.
    Condemned,
    /// No entry: a reaper removed it (or it never registered).
    Gone,
}

impl Store {
    /// The heartbeat of `worker`: holds until `until` unless a reaper condemned it, or registers
    /// it when absent and `register` is set.
    pub async fn heartbeat(
        &self,
        worker: &str,
        until: Millis,
        register: bool,
    ) -> Result<Beat, StoreError> {
        let reply: Vec<String> = HEARTBEAT
            .key(self.keys.workers())
            .key(self.keys.inbox(worker))
            .arg(worker)
            .arg(until)
            .arg(if register { "1" } else { "" })
            .invoke_async(&mut self.conn())
            .await?;
        let mut reply = reply.into_iter();
        Ok(match reply.next().as_deref() {
            Some("live") => Beat::Live(
                reply
                    .filter_map(|n| OperationName::parse(&n).ok())
                    .collect(),
            ),
            Some("condemned") => Beat::Condemned,
            _ => Beat::Gone,
        })
    }

    /// Puts `name` in `worker`'s cancel inbox; its next heartbeat answers it.
    pub async fn send_to_inbox(
        &self,
        worker: &str,
        name: &OperationName,
    ) -> Result<(), StoreError> {
        let () = INBOX
            .key(self.keys.inbox(worker))
            .arg(name.as_str())
            .arg(u64::try_from(INBOX_TTL.as_millis()).unwrap_or(u64::MAX))
            .invoke_async(&mut self.conn())
            .await?;
        Ok(())
    }

    /// Up to `count` workers whose heartbeat expired before `now` (or that are condemned).
    pub async fn expired_workers(
        &self,
        now: Millis,
        count: usize,
    ) -> Result<Vec<String>, StoreError> {
        let raw: Vec<(String, f64)> = due_by(&self.keys.workers(), format!("({now}"), count)
            .query_async(&mut self.conn())
            .await?;
        Ok(raw.into_iter().map(|(w, _)| w).collect())
    }

    /// Every registered worker and when its heartbeat expires (for tools and tests).
    pub async fn workers(&self) -> Result<Vec<(String, Millis)>, StoreError> {
        let raw: Vec<(String, f64)> = self
            .conn()
            .zrange_withscores(self.keys.workers(), 0, -1)
            .await?;
        Ok(raw.into_iter().map(|(w, s)| (w, s as Millis)).collect())
    }

    /// Claims the losing of `worker`'s attempts for `hold` if its heartbeat expired before `now`
    /// and no other reaper holds the claim, condemning it: its heartbeat is refused from then on.
    /// Whether this caller is the one to reap it.
    pub async fn claim_reaping(
        &self,
        worker: &str,
        now: Millis,
        hold: Duration,
    ) -> Result<bool, StoreError> {
        let claimed: i64 = CLAIM
            .key(self.keys.workers())
            .key(self.keys.reaping(worker))
            .arg(worker)
            .arg(now)
            .arg(u64::try_from(hold.as_millis()).unwrap_or(u64::MAX).max(1))
            .invoke_async(&mut self.conn())
            .await?;
        Ok(claimed == 1)
    }

    /// Removes condemned `worker`'s entry and its inbox, once its attempts are lost: from then on
    /// it may register again.
    pub async fn forget_worker(&self, worker: &str) -> Result<bool, StoreError> {
        let forgot: i64 = FORGET
            .key(self.keys.workers())
            .key(self.keys.inbox(worker))
            .arg(worker)
            .invoke_async(&mut self.conn())
            .await?;
        Ok(forgot == 1)
    }

    /// The operations of `bucket` Redis says run on `worker`. A member that is not a valid
    /// name is dropped.
    pub async fn owned(
        &self,
        bucket: Bucket,
        worker: &str,
    ) -> Result<Vec<OperationName>, StoreError> {
        let key = self.keys.owned(bucket, worker);
        let members: Vec<String> = self.conn().smembers(&key).await?;
        let mut names = Vec::with_capacity(members.len());
        for member in members {
            match OperationName::parse(&member) {
                Ok(name) => names.push(name),
                Err(_) => {
                    let _: i64 = self.conn().srem(&key, &member).await?;
                }
            }
        }
        Ok(names)
    }

    /// Drops `name` from `worker`'s owned set: it no longer runs there (a deleted record, or
    /// one a write already moved on).
    pub async fn disown(&self, worker: &str, name: &OperationName) -> Result<(), StoreError> {
        let key = self.keys.owned(Bucket::of_id(name.id()), worker);
        let _: i64 = self.conn().srem(key, name.as_str()).await?;
        Ok(())
    }
}
