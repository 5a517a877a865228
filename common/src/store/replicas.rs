//! Replicated acknowledgements: after a create, and after a write that makes an operation done,
//! the store sends `WAIT numreplicas timeout` to the master that took the write, so the caller
//! answers only once a replica holds it — a master that dies then loses nothing acknowledged.
//!
//! Redis replication is asynchronous, and a script cannot call `WAIT`, so it is a separate
//! command sent right after the script, on the connection that carried it (`Conn::send_to_master_of`):
//! on a standalone Redis that is the one multiplexed connection, so the `WAIT` covers every write
//! sent on it so far (conservative, and correct); on a cluster, the connection to the master of
//! the written key's slot. How many replicas to wait for is decided once, at connect
//! ([`Replicas::Auto`] looks whether the masters have replicas); with 0, no `WAIT` is ever sent.
//!
//! A `WAIT` that confirms fewer replicas than asked is a [`super::StoreError::NotReplicated`],
//! unless that master has no replica connected at all: it has already lost its replica (its old
//! master died and it was promoted), so there is nothing to wait for. Such writes are
//! accepted with a warning, and `WAIT`s to that master are skipped for [`DEGRADED_FOR`] (else each
//! would wait out its timeout) — a second loss in that shard can lose them: the promise covers
//! losing one node. This module does not decide what a caller does with an unconfirmed write.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::bucket::{BUCKETS, Bucket};
use super::conn::Conn;
use crate::time::{Millis, now_millis};

/// How long `WAIT`s to a master found without any replica are skipped before it is tried again.
pub const DEGRADED_FOR: Duration = Duration::from_secs(5);

/// `LRO_REDIS_REPLICAS`: how many replicas must confirm a create or a terminal write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Replicas {
    /// 1 if every master has a replica when the process connects, else 0.
    #[default]
    Auto,
    /// Exactly this many (0: never wait).
    Count(u32),
}

impl Replicas {
    /// `auto` or a count, for clap's `value_parser`.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s.trim() {
            "auto" => Ok(Self::Auto),
            n => n
                .parse()
                .map(Self::Count)
                .map_err(|_| format!("{s:?} is neither `auto` nor a number of replicas")),
        }
    }
}

impl fmt::Display for Replicas {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Auto => f.write_str("auto"),
            Self::Count(n) => write!(f, "{n}"),
        }
    }
}

/// What [`Durability::confirm`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Confirmed {
    /// Enough replicas have the write (or none is asked for, or the master has none left).
    Yes,
    /// The master has replicas, but fewer than asked confirmed within the timeout.
    No { asked: u32, acked: u32 },
}

/// The decided number of replicas and timeout, with the masters currently found degraded.
#[derive(Clone)]
pub(super) struct Durability {
    replicas: u32,
    timeout: Duration,
    /// Per bucket (its master, on a cluster; all the same on a standalone Redis): until when
    /// its master counts as having no replica.
    degraded: Arc<[AtomicU64; BUCKETS as usize]>,
}

impl Durability {
    /// Decides [`Replicas::Auto`] by looking at `conn`'s master(s), and logs the decision.
    pub(super) async fn decide(conn: &mut Conn, asked: Replicas, timeout: Duration) -> Self {
        let replicas = match asked {
            Replicas::Count(n) => n,
            // A Redis that refuses `INFO` / `CLUSTER NODES` (an ACL, a managed service) is
            // not looked into: nothing is waited for, and the log says why.
            Replicas::Auto => match conn.every_master_has_a_replica().await {
                Ok(replicated) => u32::from(replicated),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot see the redis replicas: no WAIT");
                    0
                }
            },
        };
        tracing::info!(
            replicas,
            asked = %asked,
            timeout_ms = timeout.as_millis() as u64,
            "creates and terminal writes acknowledged after WAIT for {replicas} replica(s)"
        );
        Self {
            replicas,
            timeout,
            degraded: Arc::new(std::array::from_fn(|_| AtomicU64::new(0))),
        }
    }

    /// The number of replicas asked for (0: none).
    pub(super) fn replicas(&self) -> u32 {
        self.replicas
    }

    /// `WAIT`s for the write just sent to `bucket`'s master. Sends nothing when no replica is
    /// asked for, or while that master is known to have none.
    pub(super) async fn confirm(
        &self,
        conn: &mut Conn,
        bucket: Bucket,
    ) -> Result<Confirmed, redis::RedisError> {
        if self.replicas == 0 {
            return Ok(Confirmed::Yes);
        }
        let slot = &self.degraded[usize::from(bucket.index())];
        let now = now_millis();
        if slot.load(Ordering::Relaxed) > now {
            return Ok(Confirmed::Yes);
        }
        let timeout_ms = self.timeout.as_millis() as u64;
        let mut wait = redis::cmd("WAIT");
        wait.arg(self.replicas).arg(timeout_ms.max(1));
        let acked: u32 = conn.send_to_master_of(bucket, &wait).await?;
        if acked >= self.replicas {
            return Ok(Confirmed::Yes);
        }
        let info: String = conn
            .send_to_master_of(bucket, redis::cmd("INFO").arg("replication"))
            .await?;
        if connected_replicas(&info) == 0 {
            let until = now_millis() + Millis::try_from(DEGRADED_FOR.as_millis()).unwrap_or(0);
            if slot.swap(until, Ordering::Relaxed) <= now {
                tracing::warn!(
                    bucket = bucket.index(),
                    "redis master has no replica: writes acknowledged unreplicated"
                );
            }
            return Ok(Confirmed::Yes);
        }
        Ok(Confirmed::No {
            asked: self.replicas,
            acked,
        })
    }
}

/// `connected_slaves` of an `INFO replication` answer.
pub(super) fn connected_replicas(info: &str) -> u32 {
    info.lines()
        .find_map(|l| l.trim().strip_prefix("connected_slaves:"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

/// Whether every master in a `CLUSTER NODES` answer has at least one replica that is not failed.
pub(super) fn every_master_replicated(nodes: &str) -> bool {
    let lines: Vec<Vec<&str>> = nodes
        .lines()
        .map(|l| l.split_whitespace().collect())
        .filter(|f: &Vec<&str>| f.len() >= 8)
        .collect();
    let failed = |flags: &str| flags.split(',').any(|f| f == "fail" || f == "fail?");
    let masters: Vec<&str> = lines
        .iter()
        .filter(|f| f[2].split(',').any(|x| x == "master") && !failed(f[2]))
        // A master without slots holds no operation.
        .filter(|f| f.len() > 8)
        .map(|f| f[0])
        .collect();
    !masters.is_empty()
        && masters.iter().all(|m| {
            lines
                .iter()
                .any(|f| f[3] == *m && f[2].split(',').any(|x| x == "slave") && !failed(f[2]))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replicas_parse() {
        assert_eq!(Replicas::parse("auto"), Ok(Replicas::Auto));
        assert_eq!(Replicas::parse("0"), Ok(Replicas::Count(0)));
        assert_eq!(Replicas::parse("2"), Ok(Replicas::Count(2)));
        assert!(Replicas::parse("some").is_err());
        assert_eq!(Replicas::Auto.to_string(), "auto");
    }

    #[test]
    fn info_replication_counts_connected_replicas() {
        let info = "# Replication\r\nrole:master\r\nconnected_slaves:2\r\nslave0:ip=…\r\n";
        assert_eq!(connected_replicas(info), 2);
        assert_eq!(
            connected_replicas("role:master\r\nconnected_slaves:0\r\n"),
            0
        );
    }

    #[test]
    fn cluster_nodes_show_whether_each_master_has_a_replica() {
        let m = |id: &str, flags: &str, slots: &str| {
            format!("{id} 127.0.0.1:1@2 {flags} - 0 0 1 connected {slots}\n")
        };
        let r = |id: &str, of: &str, flags: &str| {
            format!("{id} 127.0.0.1:1@2 {flags} {of} 0 0 1 connected\n")
        };
        let full = [
            m("a", "myself,master", "0-8000"),
            m("b", "master", "8001-16383"),
            r("c", "a", "slave"),
            r("d", "b", "slave"),
        ]
        .concat();
        assert!(every_master_replicated(&full));
        let orphan = [
            m("a", "myself,master", "0-8000"),
            m("b", "master", "8001-16383"),
            r("c", "a", "slave"),
            r("d", "b", "slave,fail"),
        ]
        .concat();
        assert!(!every_master_replicated(&orphan));
        assert!(!every_master_replicated(&m("a", "master", "0-16383")));
    }
}
