//! The Redis store: the single source of truth for every operation.
//!
//! Keys (`{…}` is a Redis Cluster hash tag: one parent's keys share a slot, so every script below
//! touches one slot):
//!
//! | key | type | holds |
//! |---|---|---|
//! | `{ns}:op:{parent}:{id}` | hash | `v` (version, starts at 1) and `r` (the encoded record) |
//! | `{ns}:index:{parent}` | sorted set | every live operation's id under that parent, score 0 (ordered by id, and ids are UUIDv7, so by creation time) |
//! | `{ns}:req:{parent}:{requestId}` | string | the name created for that request id |
//! | `{ns}:kinds` | hash | job kinds registered by workers |
//! | `{ns}:watch:leases` | sorted set | names of operations a worker started, scored by when their lease ends |
//! | `{ns}:watch:unpublished` | sorted set | names of operations being queued, scored by when to re-publish them if their publish was never confirmed |
//! | `{ns}:watch:retention` | sorted set | names of operations with a retention, scored by when to see whether they may be deleted |
//!
//! The root parent's tag is `-`. Every change is read → pure transition ([`crate::operation`]) →
//! one script that writes only if the version is unchanged; a lost race re-reads and re-applies.
//! A script that makes an operation done, or deletes it, publishes its name on
//! [`Keys::done_channel`] so waiters wake without polling.
//!
//! The two watch lists are the reaper's ([`crate::reaper`]) to-do lists, not truth: an entry only
//! says "look at this record then". They are written by separate commands (they live outside the
//! operations' hash slots), always *before* the record change they guard, and an entry is removed
//! only when its score is still the one the remover read, so a crash at any point leaves at worst
//! an extra entry, never a missing one.

use std::collections::HashMap;
use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::{AsyncCommands, Script};

use crate::kinds::KindInfo;
use crate::name::{OperationName, Parent};
use crate::operation::{Operation, Refused};
use crate::time::Millis;
use crate::tls::ClientTls;
use crate::wire::{self, WireError};

/// Errors callers branch on.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("operation not found")]
    NotFound,
    #[error(transparent)]
    Refused(#[from] Refused),
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error(transparent)]
    Corrupt(#[from] WireError),
    #[error("too many concurrent writers on {0}")]
    Contended(String),
    #[error("index of {parent:?} holds an invalid id {id:?}")]
    BadIndex { parent: String, id: String },
}

/// Key names for one namespace.
#[derive(Debug, Clone)]
pub struct Keys {
    ns: String,
}

impl Keys {
    pub fn new(namespace: &str) -> Self {
        Self {
            ns: namespace.to_owned(),
        }
    }

    fn tag(parent: &Parent) -> &str {
        if parent.is_root() {
            "-"
        } else {
            parent.as_str()
        }
    }

    pub fn op(&self, name: &OperationName) -> String {
        format!(
            "{}:op:{{{}}}:{}",
            self.ns,
            Self::tag(name.parent()),
            name.id()
        )
    }

    pub fn index(&self, parent: &Parent) -> String {
        format!("{}:index:{{{}}}", self.ns, Self::tag(parent))
    }

    pub fn request(&self, parent: &Parent, request_id: &str) -> String {
        format!("{}:req:{{{}}}:{request_id}", self.ns, Self::tag(parent))
    }

    pub fn kinds(&self) -> String {
        format!("{}:kinds", self.ns)
    }

    pub fn watch(&self, list: Watch) -> String {
        match list {
            Watch::Leases => format!("{}:watch:leases", self.ns),
            Watch::Unpublished => format!("{}:watch:unpublished", self.ns),
            Watch::Retention => format!("{}:watch:retention", self.ns),
        }
    }

    /// Pub/sub channel carrying the name of every operation that became done or was deleted.
    pub fn done_channel(&self) -> String {
        format!("{}:done", self.ns)
    }
}

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
/// With a write, it also publishes ARGV[4] on channel ARGV[3] (if given) and changes the watch
/// list KEYS[2] (if given) as ARGV[5] says: `lt` arms the entry no later than ARGV[6], `set`
/// moves it to ARGV[6], `rm` removes it if it is still armed for ARGV[6].
const CAS: &str = r"
local v = redis.call('HGET', KEYS[1], 'v')
if not v then return -1 end
if v ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'v', tonumber(v) + 1, 'r', ARGV[2])
if ARGV[3] ~= '' then redis.call('PUBLISH', ARGV[3], ARGV[4]) end
if KEYS[2] then
  if ARGV[5] == 'lt' then redis.call('ZADD', KEYS[2], 'LT', ARGV[6], ARGV[4])
  elseif ARGV[5] == 'set' then redis.call('ZADD', KEYS[2], ARGV[6], ARGV[4])
  elseif ARGV[5] == 'rm' then
    local score = redis.call('ZSCORE', KEYS[2], ARGV[4])
    if score and tonumber(score) == tonumber(ARGV[6]) then redis.call('ZREM', KEYS[2], ARGV[4]) end
  end
end
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

/// The reaper's watch lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Watch {
    /// Operations a worker started: look at them when their lease ends.
    Leases,
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

/// How many times a compare-and-set is retried when other writers keep winning.
const MAX_CAS_RETRIES: usize = 64;

/// What [`Store::create`] did.
#[derive(Debug)]
pub enum Created {
    New,
    /// The request id was already used: this is the operation it created.
    Existing(OperationName),
}

/// A cheap-to-clone handle on the store.
#[derive(Clone)]
pub struct Store {
    conn: ConnectionManager,
    client: redis::Client,
    keys: Keys,
    create: std::sync::Arc<Script>,
    cas: std::sync::Arc<Script>,
    delete: std::sync::Arc<Script>,
    rewatch: std::sync::Arc<Script>,
}

impl Store {
    /// Connects to Redis (`rediss://` trusting `tls`); fails if it does not answer.
    pub async fn connect(url: &str, namespace: &str, tls: &ClientTls) -> Result<Self, StoreError> {
        let client = tls.redis_client(url)?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(3)))
            .set_response_timeout(Some(Duration::from_secs(5)))
            .set_number_of_retries(2);
        let conn = ConnectionManager::new_with_config(client.clone(), config).await?;
        let mut store = Self {
            conn,
            client,
            keys: Keys::new(namespace),
            create: Script::new(CREATE).into(),
            cas: Script::new(CAS).into(),
            delete: Script::new(DELETE).into(),
            rewatch: Script::new(REWATCH).into(),
        };
        let _: String = redis::cmd("PING").query_async(&mut store.conn).await?;
        Ok(store)
    }

    /// A `PING` on the shared connection, for readiness probes.
    pub async fn ping(&self) -> Result<(), StoreError> {
        let _: String = redis::cmd("PING")
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(())
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// The client, for connections that must not share the multiplexed one (pub/sub).
    pub fn client(&self) -> &redis::Client {
        &self.client
    }

    /// Stores a new operation (version 1) and indexes it.
    /// Creates the record; with a new one, the watch-list entries in `watches` are armed (each
    /// "no later than" its time) in the same step.
    pub async fn create(
        &self,
        op: &Operation,
        watches: &[(Watch, Millis)],
    ) -> Result<Created, StoreError> {
        let parent = op.name.parent();
        let request_key = op
            .request_id
            .as_deref()
            .map(|r| self.keys.request(parent, r))
            .unwrap_or_else(|| self.keys.request(parent, ""));
        let mut script = self.create.key(self.keys.op(&op.name));
        script
            .key(self.keys.index(parent))
            .key(request_key)
            .arg(wire::encode_record(op))
            .arg(op.name.id())
            .arg(if op.request_id.is_some() { "1" } else { "" })
            .arg(op.name.as_str());
        for (list, at) in watches {
            script.key(self.keys.watch(*list)).arg(*at);
        }
        let existing: Option<String> = script.invoke_async(&mut self.conn.clone()).await?;
        match existing {
            None => Ok(Created::New),
            Some(name) => Ok(Created::Existing(OperationName::parse(&name).map_err(
                |e| {
                    redis::RedisError::from((
                        redis::ErrorKind::UnexpectedReturnType,
                        "bad stored name",
                        e.to_string(),
                    ))
                },
            )?)),
        }
    }

    /// Reads one operation with its version.
    pub async fn get_versioned(
        &self,
        name: &OperationName,
    ) -> Result<Option<(u64, Operation)>, StoreError> {
        let (v, r): (Option<u64>, Option<Vec<u8>>) = redis::cmd("HMGET")
            .arg(self.keys.op(name))
            .arg("v")
            .arg("r")
            .query_async(&mut self.conn.clone())
            .await?;
        match (v, r) {
            (Some(v), Some(r)) => Ok(Some((v, wire::decode_record(&r)?))),
            _ => Ok(None),
        }
    }

    pub async fn get(&self, name: &OperationName) -> Result<Operation, StoreError> {
        self.get_versioned(name)
            .await?
            .map(|(_, op)| op)
            .ok_or(StoreError::NotFound)
    }

    /// Applies a transition atomically: read, apply `f`, write back if nobody wrote in between
    /// (else retry). A transition that leaves the record unchanged writes nothing. Returns the
    /// record as written and what `f` answered.
    pub async fn update<T>(
        &self,
        name: &OperationName,
        f: impl FnMut(&mut Operation) -> Result<T, Refused>,
    ) -> Result<(Operation, T), StoreError> {
        self.update_watching(name, f, |_| None).await
    }

    /// [`Store::update`], and with the write, the watch-list change `effect` asks for given the
    /// record as it will be written — in the same script, so both happen or neither.
    pub async fn update_watching<T>(
        &self,
        name: &OperationName,
        mut f: impl FnMut(&mut Operation) -> Result<T, Refused>,
        effect: impl Fn(&Operation) -> Option<WatchEffect>,
    ) -> Result<(Operation, T), StoreError> {
        for _ in 0..MAX_CAS_RETRIES {
            let (version, before) = self
                .get_versioned(name)
                .await?
                .ok_or(StoreError::NotFound)?;
            let mut after = before.clone();
            let answer = f(&mut after)?;
            if after == before {
                return Ok((after, answer));
            }
            let became_done = after.is_done() && !before.is_done();
            let mut script = self.cas.key(self.keys.op(name));
            script
                .arg(version)
                .arg(wire::encode_record(&after))
                .arg(if became_done {
                    self.keys.done_channel()
                } else {
                    String::new()
                })
                .arg(name.as_str());
            if let Some(effect) = effect(&after) {
                let (list, mode, at) = match effect {
                    WatchEffect::Arm(list, at) => (list, "lt", at),
                    WatchEffect::Move(list, at) => (list, "set", at),
                    WatchEffect::Remove(list, at) => (list, "rm", at),
                };
                script.key(self.keys.watch(list)).arg(mode).arg(at);
            }
            let written: i64 = script.invoke_async(&mut self.conn.clone()).await?;
            match written {
                1 => return Ok((after, answer)),
                -1 => return Err(StoreError::NotFound),
                _ => continue,
            }
        }
        Err(StoreError::Contended(name.to_string()))
    }

    /// Deletes an operation and its index entries. Returns false if it did not exist.
    pub async fn delete(&self, name: &OperationName) -> Result<bool, StoreError> {
        for _ in 0..MAX_CAS_RETRIES {
            let Some((version, op)) = self.get_versioned(name).await? else {
                return Ok(false);
            };
            let mut script = self.delete.key(self.keys.op(name));
            script.key(self.keys.index(name.parent()));
            if let Some(r) = &op.request_id {
                script.key(self.keys.request(name.parent(), r));
            }
            let deleted: i64 = script
                .arg(version)
                .arg(name.id())
                .arg(self.keys.done_channel())
                .arg(name.as_str())
                .invoke_async(&mut self.conn.clone())
                .await?;
            match deleted {
                1 => return Ok(true),
                -1 => return Ok(false),
                _ => continue,
            }
        }
        Err(StoreError::Contended(name.to_string()))
    }

    /// Up to `count` ids under `parent`, in id order, strictly after `after` (if given).
    pub async fn index_page(
        &self,
        parent: &Parent,
        after: Option<&str>,
        count: usize,
    ) -> Result<Vec<String>, StoreError> {
        let min = after.map_or_else(|| "-".to_owned(), |a| format!("({a}"));
        let ids: Vec<String> = redis::cmd("ZRANGE")
            .arg(self.keys.index(parent))
            .arg(min)
            .arg("+")
            .arg("BYLEX")
            .arg("LIMIT")
            .arg(0)
            .arg(count)
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(ids)
    }

    /// How many operations `parent` holds (its index's size).
    pub async fn index_len(&self, parent: &Parent) -> Result<u64, StoreError> {
        let n: u64 = redis::cmd("ZCARD")
            .arg(self.keys.index(parent))
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(n)
    }

    /// Reads many operations in one round trip; ids whose record is gone are skipped.
    pub async fn get_many(
        &self,
        parent: &Parent,
        ids: &[String],
    ) -> Result<Vec<Operation>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for id in ids {
            let name = parent.operation(id).map_err(|_| StoreError::BadIndex {
                parent: parent.to_string(),
                id: id.clone(),
            })?;
            pipe.cmd("HGET").arg(self.keys.op(&name)).arg("r");
        }
        let raw: Vec<Option<Vec<u8>>> = pipe.query_async(&mut self.conn.clone()).await?;
        raw.into_iter()
            .flatten()
            .map(|r| wire::decode_record(&r).map_err(StoreError::from))
            .collect()
    }

    /// Moves a watch-list entry to `at`, earlier or later (the holder of a lease renewing it, a
    /// guard armed anew).
    pub async fn rearm(
        &self,
        list: Watch,
        name: &OperationName,
        at: Millis,
    ) -> Result<(), StoreError> {
        let _: i64 = self
            .conn
            .clone()
            .zadd(self.keys.watch(list), name.as_str(), at)
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
        let _: i64 = self
            .rewatch
            .key(self.keys.watch(list))
            .arg(name.as_str())
            .arg(at)
            .arg(next.map(|n| n.to_string()).unwrap_or_default())
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(())
    }

    /// Up to `count` entries of a watch list due at or before `now`, with the time they were due.
    /// An entry that is not a valid name is dropped.
    pub async fn due(
        &self,
        list: Watch,
        now: Millis,
        count: usize,
    ) -> Result<Vec<(OperationName, Millis)>, StoreError> {
        let key = self.keys.watch(list);
        let raw: Vec<(String, f64)> = redis::cmd("ZRANGE")
            .arg(&key)
            .arg("-inf")
            .arg(now)
            .arg("BYSCORE")
            .arg("LIMIT")
            .arg(0)
            .arg(count)
            .arg("WITHSCORES")
            .query_async(&mut self.conn.clone())
            .await?;
        let mut due = Vec::with_capacity(raw.len());
        for (member, score) in raw {
            match OperationName::parse(&member) {
                // Scores are whole milliseconds, exactly representable.
                Ok(name) => due.push((name, score as Millis)),
                Err(_) => {
                    let _: i64 = self.conn.clone().zrem(&key, &member).await?;
                }
            }
        }
        Ok(due)
    }

    /// Records the kinds a worker runs, so the api accepts them.
    pub async fn register_kinds(&self, kinds: &[KindInfo]) -> Result<(), StoreError> {
        if kinds.is_empty() {
            return Ok(());
        }
        let items: Vec<(String, String)> = kinds
            .iter()
            .map(|k| (k.name.clone(), serde_json::to_string(k).unwrap_or_default()))
            .collect();
        let _: () = self
            .conn
            .clone()
            .hset_multiple(self.keys.kinds(), &items)
            .await?;
        Ok(())
    }

    /// Kinds registered by workers.
    pub async fn registered_kinds(&self) -> Result<HashMap<String, KindInfo>, StoreError> {
        let raw: HashMap<String, String> = self.conn.clone().hgetall(self.keys.kinds()).await?;
        Ok(raw
            .into_values()
            .filter_map(|v| serde_json::from_str::<KindInfo>(&v).ok())
            .map(|k| (k.name.clone(), k))
            .collect())
    }
}
