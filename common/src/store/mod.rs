//! The Redis store: the single source of truth for every operation, and the only code of the api
//! and the worker that reads or writes Redis keys (the api's `:wait` follower only subscribes, to
//! the channel named here, through [`Store::clients`]).
//!
//! Every change is read → pure transition ([`crate::operation`]) → one script that writes only if
//! the version is unchanged (`scripts.rs`); a lost race re-reads and re-applies. A script that
//! makes an operation done, or deletes it, publishes its name on [`Keys::done_channel`] so waiters
//! wake without polling. The key names are `keys.rs`'s ([`Keys`]), the 24 buckets a parent's
//! operations are spread over `bucket.rs`'s ([`Bucket`]), the merged reads of a parent's bucket
//! indexes `index.rs`'s, the reaper's to-do lists `watch.rs`'s ([`Watch`]), the workers'
//! heartbeats, cancel inboxes and owned sets `workers.rs`'s, the registered kinds `kinds.rs`'s.
//! Every write of a record also keeps the owned set of the worker it runs on (`{ns}:owned:…`, in
//! the record's slot) in the same script: which operations Redis says each worker runs. A create, and a write that makes an operation done, answer only once a
//! replica holds them when the deployment has replicas (`replicas.rs`).
//!
//! Every command goes through one private accessor (`Store::conn`), so the connection is chosen
//! in one place: a standalone Redis or a Redis Cluster (`conn.rs`), the same code for both. This module knows nothing of the broker, and decides no transition: callers pass
//! them in.

mod bucket;
mod conn;
mod index;
mod keys;
mod kinds;
mod replicas;
mod scripts;
mod watch;
mod workers;

use std::sync::Arc;
use std::time::Duration;

use crate::name::OperationName;
use crate::operation::{Operation, Refused};
use crate::time::Millis;
use crate::tls::ClientTls;
use crate::wire::{self, WireError};
pub use bucket::{BUCKETS, Bucket};
use conn::Conn;
pub use keys::Keys;
pub use replicas::Replicas;
use replicas::{Confirmed, Durability};
use scripts::{Owned, Scripts, Versioned};
pub use watch::{Watch, WatchEffect};
pub use workers::Beat;

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
    /// The write was made, but fewer replicas than asked confirmed it within the timeout: a
    /// crash of its master now could still lose it.
    #[error("write not confirmed by {asked} replica(s) ({acked} did)")]
    NotReplicated { asked: u32, acked: u32 },
}

/// What [`Store::create`] did.
#[derive(Debug)]
pub enum Created {
    New,
    /// The request id was already used: this is the operation it created.
    Existing(OperationName),
}

/// How many times a compare-and-set is retried when other writers keep winning.
const MAX_CAS_RETRIES: usize = 64;

/// A cheap-to-clone handle on the store.
#[derive(Clone)]
pub struct Store {
    conn: Conn,
    /// One client per seed node, for the connections that must not share the multiplexed one.
    clients: Vec<redis::Client>,
    keys: Keys,
    scripts: Arc<Scripts>,
    durability: Durability,
}

impl Store {
    /// Connects to Redis (`rediss://` trusting `tls`): one URL is a standalone Redis, a
    /// comma-separated list the seed nodes of a Redis Cluster. Fails if it does not answer.
    /// Creates and terminal writes are confirmed by `replicas` replicas, each `WAIT` for at most
    /// `wait_timeout` ([`Replicas::Auto`] is decided here, by looking at the masters).
    pub async fn connect(
        url: &str,
        namespace: &str,
        tls: &ClientTls,
        replicas: Replicas,
        wait_timeout: Duration,
    ) -> Result<Self, StoreError> {
        let (mut conn, clients) = Conn::connect(url, tls).await?;
        let durability = Durability::decide(&mut conn, replicas, wait_timeout).await;
        let store = Self {
            conn,
            clients,
            keys: Keys::new(namespace),
            scripts: Arc::new(Scripts::new()),
            durability,
        };
        store.ping().await?;
        Ok(store)
    }

    /// A `PING` on the shared connection, for readiness probes.
    pub async fn ping(&self) -> Result<(), StoreError> {
        let _: String = redis::cmd("PING").query_async(&mut self.conn()).await?;
        Ok(())
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// One client per seed node, for connections that must not share the multiplexed one
    /// (pub/sub: on a cluster, a message published on any node reaches subscribers on every
    /// node, so subscribing through any one seed is enough).
    pub fn clients(&self) -> &[redis::Client] {
        &self.clients
    }

    /// How many replicas confirm a create or a terminal write (0: none is waited for).
    pub fn replicas(&self) -> u32 {
        self.durability.replicas()
    }

    /// Waits until the write just made to `name`'s master is on the replicas asked for.
    async fn confirm(&self, name: &OperationName) -> Result<(), StoreError> {
        let bucket = Bucket::of_id(name.id());
        match self.durability.confirm(&mut self.conn(), bucket).await? {
            Confirmed::Yes => Ok(()),
            Confirmed::No { asked, acked } => Err(StoreError::NotReplicated { asked, acked }),
        }
    }

    /// The connection to send a command on: the one place that picks it.
    fn conn(&self) -> Conn {
        self.conn.clone()
    }

    /// Stores a new operation (version 1) and indexes it.
    /// Creates the record; with a new one, the watch-list entries in `watches` are armed (each
    /// "no later than" its time) in the same step. Answers once the replicas asked for hold it
    /// (also when the request id was taken: the first create may not have been confirmed);
    /// [`StoreError::NotReplicated`] if they do not, though the record exists.
    pub async fn create(
        &self,
        op: &Operation,
        watches: &[(Watch, Millis)],
    ) -> Result<Created, StoreError> {
        let existing = self.script_create(op, watches).await?;
        self.confirm(&op.name).await?;
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
            .query_async(&mut self.conn())
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
    /// record as written and what `f` answered. A write that makes the operation done answers once
    /// the replicas asked for hold it, else [`StoreError::NotReplicated`] (though it was made).
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
            let owned = Owned::of(&before, &after);
            let written = self
                .script_cas(name, version, &after, became_done, effect(&after), owned)
                .await?;
            match written {
                Versioned::Written => {
                    if became_done {
                        self.confirm(name).await?;
                    }
                    return Ok((after, answer));
                }
                Versioned::Gone => return Err(StoreError::NotFound),
                Versioned::Stale => continue,
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
            let deleted = self
                .script_delete(name, version, op.request_id.as_deref())
                .await?;
            match deleted {
                Versioned::Written => return Ok(true),
                Versioned::Gone => return Ok(false),
                Versioned::Stale => continue,
            }
        }
        Err(StoreError::Contended(name.to_string()))
    }

    /// [`Conn::each`] on the store's connection.
    async fn each<T: redis::FromRedisValue>(
        &self,
        cmds: Vec<redis::Cmd>,
    ) -> Result<Vec<T>, redis::RedisError> {
        self.conn().each(cmds).await
    }
}
