//! The one connection the store sends commands on: a standalone Redis or a Redis Cluster.
//!
//! `LRO_REDIS_URL` with one URL means a standalone Redis, reached through a reconnecting
//! [`ConnectionManager`]; a comma-separated list of seed nodes means a cluster, reached through
//! redis-rs's [`ClusterConnection`], which learns the slot map from the seeds, sends each command
//! (and each script, by its first key) to the master of its slot, and follows `MOVED`/`ASK` and
//! failovers. Both are multiplexed and cheap to clone. The enum implements
//! [`redis::aio::ConnectionLike`], so every command and script is written once for both; the one
//! difference callers see is [`Conn::each`]: commands whose keys may lie in different slots go as
//! one pipeline to a standalone Redis, but one by one (concurrently) to a cluster, which refuses a
//! pipeline across slots. And [`Conn::send_to_master_of`] sends one command to the master that holds a
//! bucket's keys (for `WAIT`, which must reach the node that took the write). This module knows
//! no key names.

use std::time::Duration;

use futures_util::future::try_join_all;
use redis::aio::{ConnectionLike, ConnectionManager};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use redis::{Cmd, FromRedisValue, Pipeline, RedisError, RedisFuture, Value};

use super::bucket::Bucket;
use super::replicas;
use crate::tls::ClientTls;

/// How long a (re)connect may take before it counts as failed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a command may wait for its answer.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);

/// The connection every command is sent on.
#[derive(Clone)]
pub(super) enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl Conn {
    /// Connects to the seed nodes `url` lists (`rediss://` trusting `tls`): one is a standalone
    /// Redis, more are a cluster. Also answers a client per seed, for pub/sub.
    pub(super) async fn connect(
        url: &str,
        tls: &ClientTls,
    ) -> Result<(Self, Vec<redis::Client>), RedisError> {
        let seeds: Vec<&str> = url
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        let clients = seeds
            .iter()
            .map(|u| tls.redis_client(u))
            .collect::<Result<Vec<_>, _>>()?;
        let conn = match clients.as_slice() {
            [] => {
                return Err(RedisError::from((
                    redis::ErrorKind::InvalidClientConfig,
                    "no redis url given",
                )));
            }
            [client] => {
                let config = redis::aio::ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(CONNECT_TIMEOUT))
                    .set_response_timeout(Some(RESPONSE_TIMEOUT))
                    .set_number_of_retries(2);
                Self::Single(ConnectionManager::new_with_config(client.clone(), config).await?)
            }
            _ => {
                let client = tls
                    .redis_cluster_client(&seeds)?
                    .connection_timeout(CONNECT_TIMEOUT)
                    .response_timeout(RESPONSE_TIMEOUT)
                    .build()?;
                Self::Cluster(client.get_async_connection().await?)
            }
        };
        Ok((conn, clients))
    }

    /// Sends independent commands, whose keys may be in different slots, and answers their
    /// replies in order: one pipeline on a standalone Redis, each to its own slot's node
    /// (concurrently, on the multiplexed connection) on a cluster.
    pub(super) async fn each<T: FromRedisValue>(
        &mut self,
        cmds: Vec<Cmd>,
    ) -> Result<Vec<T>, RedisError> {
        if cmds.is_empty() {
            return Ok(Vec::new());
        }
        match self {
            Self::Single(conn) => {
                let mut pipe = redis::pipe();
                for cmd in cmds {
                    pipe.add_command(cmd);
                }
                pipe.query_async(conn).await
            }
            Self::Cluster(conn) => {
                try_join_all(cmds.iter().map(|cmd| {
                    let mut conn = conn.clone();
                    async move { cmd.query_async::<T>(&mut conn).await }
                }))
                .await
            }
        }
    }
}

impl Conn {
    /// Sends `cmd` to the master holding `bucket`'s slot: on a standalone Redis, the one
    /// connection; on a cluster, the connection to that slot's master, the one its scripts took.
    pub(super) async fn send_to_master_of<T: FromRedisValue>(
        &mut self,
        bucket: Bucket,
        cmd: &Cmd,
    ) -> Result<T, RedisError> {
        match self {
            Self::Single(conn) => cmd.query_async(conn).await,
            Self::Cluster(conn) => {
                let route = Route::new(bucket.slot(), SlotAddr::Master);
                let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route));
                let value = conn.route_command(cmd.clone(), routing).await?;
                T::from_redis_value(value).map_err(RedisError::from)
            }
        }
    }

    /// Whether every master has at least one replica: `connected_slaves` of `INFO replication`
    /// on a standalone Redis, the replicas `CLUSTER NODES` lists on a cluster.
    pub(super) async fn every_master_has_a_replica(&mut self) -> Result<bool, RedisError> {
        match self {
            Self::Single(conn) => {
                let info: String = redis::cmd("INFO")
                    .arg("replication")
                    .query_async(conn)
                    .await?;
                Ok(replicas::connected_replicas(&info) >= 1)
            }
            Self::Cluster(conn) => {
                let nodes: String = redis::cmd("CLUSTER").arg("NODES").query_async(conn).await?;
                Ok(replicas::every_master_replicated(&nodes))
            }
        }
    }
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Self::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
        }
    }
}
