//! The Lua scripts that write records and watch-list entries, each beside the one function that
//! invokes it: the `KEYS` / `ARGV` layout a script reads is written next to the code that fills
//! it, so the two cannot drift apart.
//!
//! A script that writes a record first checks its version, so it writes only if nobody wrote since
//! the caller read (the compare-and-set the race rules rest on); in the same step it publishes the
//! name on the done channel and changes a watch-list entry when asked to. This module decides
//! nothing: which transition, which watch effect, and whether to retry a lost race are
//! [`super::Store`]'s.

use redis::{RedisError, Script};

use super::Store;
use super::bucket::Bucket;
use super::watch::{Watch, WatchEffect};
use crate::name::OperationName;
use crate::operation::{Operation, Phase};
use crate::time::Millis;
use crate::wire;

/// Creates the record, its index entry and its request-id entry together, unless the request id
/// is already taken; then it answers the name it was taken for. With a new record it arms the
/// watch-list entries KEYS[4..] (each "no later than" its score ARGV[5..]) in the same step.
const CREATE: &str = r"
if ARGV[3] ~= '' then
  local existing = redis.call('GET', KEYS[3])
  if existing then return existing end
  redis.call('SET', KEYS[3], ARGV[4])
end
redis.call('HSET', KEYS[1], 'v', 1, 'r', ARGV[1])
redis.call('ZADD', KEYS[2], 0, ARGV[2])
for i = 4, #KEYS do redis.call('ZADD', KEYS[i], 'LT', ARGV[i + 1], ARGV[4]) end
return false
";

/// Writes a new record if the version is still ARGV[1]: -1 gone, 0 lost the race, 1 written.
/// With a write, it also publishes ARGV[4] on channel ARGV[3] (if given), changes the watch
/// list KEYS[2] as ARGV[5] says (`lt` arms the entry no later than ARGV[6], `set` moves it to
/// ARGV[6], `rm` removes it if it is still armed for ARGV[6], empty leaves it), and adds the name
/// to the owned set KEYS[3] or removes it as ARGV[7] says (`add`, `rm`, or empty). An unused
/// KEYS[2] or KEYS[3] is the record's key, never touched (every key must be in its slot).
const CAS: &str = r"
local v = redis.call('HGET', KEYS[1], 'v')
if not v then return -1 end
if v ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'v', tonumber(v) + 1, 'r', ARGV[2])
if ARGV[3] ~= '' then redis.call('PUBLISH', ARGV[3], ARGV[4]) end
if ARGV[5] == 'lt' then redis.call('ZADD', KEYS[2], 'LT', ARGV[6], ARGV[4])
elseif ARGV[5] == 'set' then redis.call('ZADD', KEYS[2], ARGV[6], ARGV[4])
elseif ARGV[5] == 'rm' then
  local score = redis.call('ZSCORE', KEYS[2], ARGV[4])
  if score and tonumber(score) == tonumber(ARGV[6]) then redis.call('ZREM', KEYS[2], ARGV[4]) end
end
if ARGV[7] == 'add' then redis.call('SADD', KEYS[3], ARGV[4])
elseif ARGV[7] == 'rm' then redis.call('SREM', KEYS[3], ARGV[4]) end
return 1
";

/// Deletes record, index entry and request-id entry (if it still names this operation) together,
/// if the version is still ARGV[1]: -1 gone, 0 lost the race, 1 deleted.
const DELETE: &str = r"
local v = redis.call('HGET', KEYS[1], 'v')
if not v then return -1 end
if v ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[2])
if KEYS[3] and redis.call('GET', KEYS[3]) == ARGV[4] then redis.call('DEL', KEYS[3]) end
redis.call('PUBLISH', ARGV[3], ARGV[4])
return 1
";

/// Moves a watch-list entry to score ARGV[3], or removes it if ARGV[3] is empty, only if its
/// score is still ARGV[2] (nobody re-armed it since).
const REWATCH: &str = r"
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score or tonumber(score) ~= tonumber(ARGV[2]) then return 0 end
if ARGV[3] == '' then return redis.call('ZREM', KEYS[1], ARGV[1]) end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
return 1
";

/// How a write changes the owned set of a worker (`{ns}:owned:{B}:{worker}`): the name is added
/// when an attempt of that worker starts, removed when it stops running there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Owned<'a> {
    Add(&'a str),
    Remove(&'a str),
}

impl<'a> Owned<'a> {
    /// The change a transition from `before` to `after` makes to the owned sets.
    pub(super) fn of(before: &'a Operation, after: &'a Operation) -> Option<Self> {
        let worker = |op: &'a Operation| match &op.phase {
            Phase::Running { run } => Some((run.worker.as_str(), op.attempt)),
            _ => None,
        };
        match (worker(before), worker(after)) {
            (None, Some((w, _))) => Some(Self::Add(w)),
            (Some((w, _)), None) => Some(Self::Remove(w)),
            // A start replaces nothing (RUNNING is never started again), so one worker keeps it.
            _ => None,
        }
    }
}

/// What a write conditioned on the record's version did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Versioned {
    Written,
    /// Someone wrote since the caller read: nothing was written.
    Stale,
    /// The record is gone.
    Gone,
}

impl Versioned {
    fn from_reply(reply: i64) -> Self {
        match reply {
            1 => Self::Written,
            -1 => Self::Gone,
            _ => Self::Stale,
        }
    }
}

/// The scripts, hashed once per store (each sent as `EVALSHA`, and loaded on `NOSCRIPT`).
pub(super) struct Scripts {
    create: Script,
    cas: Script,
    delete: Script,
    rewatch: Script,
}

impl Scripts {
    pub(super) fn new() -> Self {
        Self {
            create: Script::new(CREATE),
            cas: Script::new(CAS),
            delete: Script::new(DELETE),
            rewatch: Script::new(REWATCH),
        }
    }
}

/// One function per script, on the store for its connection and keys.
impl Store {
    /// [`CREATE`]: `None` if the record was created (and `watches` armed), else the name its
    /// request id was already taken for.
    pub(super) async fn script_create(
        &self,
        op: &Operation,
        watches: &[(Watch, Millis)],
    ) -> Result<Option<String>, RedisError> {
        let parent = op.name.parent();
        let bucket = Bucket::of_id(op.name.id());
        // The request-id key shares the record's slot only if the id was minted in the
        // request's bucket (as the api does).
        debug_assert!(
            op.request_id
                .as_deref()
                .is_none_or(|r| Bucket::of_request(parent, r) == bucket),
            "operation id not minted in its request id's bucket"
        );
        // Without a request id KEYS[3] is not read; the record's key holds its place (in the
        // record's slot, as every key of the script must be).
        let request_key = match op.request_id.as_deref() {
            Some(r) => self.keys.request(parent, r),
            None => self.keys.op(&op.name),
        };
        let mut script = self.scripts.create.key(self.keys.op(&op.name));
        script
            .key(self.keys.index(parent, bucket))
            .key(request_key)
            .arg(wire::encode_record(op))
            .arg(op.name.id())
            .arg(if op.request_id.is_some() { "1" } else { "" })
            .arg(op.name.as_str());
        for (list, at) in watches {
            script.key(self.keys.watch(*list, bucket)).arg(*at);
        }
        script.invoke_async(&mut self.conn()).await
    }

    /// [`CAS`]: writes `after` over `version`, publishing the name on the done channel if
    /// `became_done`, and applies `effect` and `owned` with the write.
    pub(super) async fn script_cas(
        &self,
        name: &OperationName,
        version: u64,
        after: &Operation,
        became_done: bool,
        effect: Option<WatchEffect>,
        owned: Option<Owned<'_>>,
    ) -> Result<Versioned, RedisError> {
        let record = self.keys.op(name);
        let bucket = Bucket::of_id(name.id());
        let (watch_key, mode, at) = match effect {
            Some(WatchEffect::Arm(list, at)) => (self.keys.watch(list, bucket), "lt", at),
            Some(WatchEffect::Move(list, at)) => (self.keys.watch(list, bucket), "set", at),
            Some(WatchEffect::Remove(list, at)) => (self.keys.watch(list, bucket), "rm", at),
            None => (record.clone(), "", 0),
        };
        let (owned_key, owned_mode) = match owned {
            Some(Owned::Add(worker)) => (self.keys.owned(bucket, worker), "add"),
            Some(Owned::Remove(worker)) => (self.keys.owned(bucket, worker), "rm"),
            None => (record.clone(), ""),
        };
        let mut script = self.scripts.cas.key(record);
        script
            .key(watch_key)
            .key(owned_key)
            .arg(version)
            .arg(wire::encode_record(after))
            .arg(if became_done {
                self.keys.done_channel()
            } else {
                String::new()
            })
            .arg(name.as_str())
            .arg(mode)
            .arg(at)
            .arg(owned_mode);
        Ok(Versioned::from_reply(
            script.invoke_async(&mut self.conn()).await?,
        ))
    }

    /// [`DELETE`]: removes the record at `version` with its index entry and, if it had one, its
    /// request-id entry, and publishes its name on the done channel.
    pub(super) async fn script_delete(
        &self,
        name: &OperationName,
        version: u64,
        request_id: Option<&str>,
    ) -> Result<Versioned, RedisError> {
        let mut script = self.scripts.delete.key(self.keys.op(name));
        script.key(self.keys.index(name.parent(), Bucket::of_id(name.id())));
        if let Some(r) = request_id {
            script.key(self.keys.request(name.parent(), r));
        }
        let deleted: i64 = script
            .arg(version)
            .arg(name.id())
            .arg(self.keys.done_channel())
            .arg(name.as_str())
            .invoke_async(&mut self.conn())
            .await?;
        Ok(Versioned::from_reply(deleted))
    }

    /// [`REWATCH`]: moves the entry armed for `at` to `next`, or removes it if `next` is `None`.
    pub(super) async fn script_rewatch(
        &self,
        list: Watch,
        name: &OperationName,
        at: Millis,
        next: Option<Millis>,
    ) -> Result<(), RedisError> {
        let _: i64 = self
            .scripts
            .rewatch
            .key(self.keys.watch(list, Bucket::of_id(name.id())))
            .arg(name.as_str())
            .arg(at)
            .arg(next.map(|n| n.to_string()).unwrap_or_default())
            .invoke_async(&mut self.conn())
            .await?;
        Ok(())
    }
}
