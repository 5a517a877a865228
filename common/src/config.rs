//! Configuration both processes share: where Redis and RabbitMQ are, and the namespace.
//! Each value comes from a flag or its `LRO_*` environment variable (the flag wins).

use crate::store::Replicas;
use crate::topology::{QueueType, Topology};

/// The connections and namespace every process needs.
#[derive(Debug, Clone, clap::Args)]
pub struct Connections {
    /// Redis, the authoritative operation store.
    #[arg(long, env = "LRO_REDIS_URL", default_value = "redis://127.0.0.1:6379")]
    pub redis_url: String,
    /// RabbitMQ: one node, or a comma-separated list of the nodes of one cluster.
    #[arg(
        long,
        env = "LRO_AMQP_URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f"
    )]
    pub amqp_url: String,
    /// Prefix of every Redis key and AMQP exchange/queue name.
    #[arg(long, env = "LRO_NAMESPACE", default_value = "lro", value_parser = parse_namespace)]
    pub namespace: String,
    /// Type of the durable job queue.
    #[arg(long, env = "LRO_QUEUE_TYPE", value_enum, default_value_t = QueueType::Quorum)]
    pub queue_type: QueueType,
    /// Replicas that must confirm (Redis `WAIT`) each create and each write ending an operation
    /// before it is acknowledged: `auto` (1 if every master has a replica at start, else 0), 0
    /// (never wait) or a number. An lro extension.
    #[arg(long, env = "LRO_REDIS_REPLICAS", default_value = "auto", value_parser = Replicas::parse)]
    pub redis_replicas: Replicas,
    /// Longest one `WAIT` for replicas may take; a create not confirmed in time answers 503.
    #[arg(long, env = "LRO_REDIS_WAIT_TIMEOUT", default_value = "1s", value_parser = parse_duration_arg)]
    pub redis_wait_timeout: std::time::Duration,
    /// A PEM file of CA certificates trusted, besides the system's, for `rediss://` and `amqps://`.
    #[arg(long, env = "LRO_TLS_CA_FILE")]
    pub tls_ca_file: Option<std::path::PathBuf>,
}

impl Connections {
    /// The defaults, with another namespace (what tests use).
    pub fn local(namespace: &str) -> Self {
        Self {
            redis_url: "redis://127.0.0.1:6379".into(),
            amqp_url: "amqp://guest:guest@127.0.0.1:5672/%2f".into(),
            namespace: namespace.into(),
            queue_type: QueueType::Quorum,
            redis_replicas: Replicas::Auto,
            redis_wait_timeout: std::time::Duration::from_secs(1),
            tls_ca_file: None,
        }
    }

    /// The AMQP entities of this namespace.
    pub fn topology(&self) -> Topology {
        Topology::new(&self.namespace, self.queue_type)
    }

    /// Connects to the Redis store these settings name.
    pub async fn store(
        &self,
        tls: &crate::tls::ClientTls,
    ) -> Result<crate::store::Store, crate::store::StoreError> {
        crate::store::Store::connect(
            &self.redis_url,
            &self.namespace,
            tls,
            self.redis_replicas,
            self.redis_wait_timeout,
        )
        .await
    }

    /// What `rediss://` and `amqps://` trust: reads `tls_ca_file`, if set.
    pub fn client_tls(&self) -> Result<crate::tls::ClientTls, crate::tls::TlsError> {
        crate::tls::ClientTls::load(self.tls_ca_file.as_deref())
    }
}

/// A namespace is 1-64 characters of A-Z a-z 0-9 - _ : it is embedded in Redis keys (where `{`
/// and `}` would break hash tags) and AMQP names.
pub fn parse_namespace(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "namespace {s:?} must be 1-64 characters of A-Z a-z 0-9 - _"
        ))
    }
}

/// A duration flag (`"1.5s"`, `"250ms"`, `"2m"`, …) for clap's `value_parser`.
pub fn parse_duration_arg(s: &str) -> Result<std::time::Duration, String> {
    crate::time::parse_duration(s).map_err(|e| e.to_string())
}
