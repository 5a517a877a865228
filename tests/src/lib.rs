//! Support for running a whole lro system in one process against the real Redis and RabbitMQ: the
//! api on a port-0 listener and any number of workers, all in a fresh namespace. Used by the
//! benchmark program; stops everything when dropped. [`procs`] runs the real binaries instead.

pub mod procs;
pub mod redis_nodes;

use std::net::SocketAddr;

use lro_api::{ApiConfig, App};
use lro_common::config::Connections;
use lro_worker::{Kinds, Worker, WorkerConfig};
use tokio_util::sync::CancellationToken;

/// An api and its workers in one fresh namespace.
pub struct System {
    pub namespace: String,
    pub addr: SocketAddr,
    /// The gRPC listener's address.
    pub grpc_addr: SocketAddr,
    /// The admin listener's address (`/livez`, `/readyz`, `/metrics`), when configured
    /// (`config.admin_addr = Some("127.0.0.1:0".into())`).
    pub admin_addr: Option<SocketAddr>,
    pub shutdown: CancellationToken,
    pub workers: Vec<Worker>,
    /// `https` when the api serves TLS, else `http`.
    pub scheme: &'static str,
    connections: Connections,
}

impl System {
    /// Starts the api in a fresh namespace (prefix + random suffix).
    pub async fn start(prefix: &str) -> anyhow::Result<Self> {
        Self::start_with(prefix, |_| {}).await
    }

    /// Starts the api in a fresh namespace, its configuration adjusted by `configure`.
    pub async fn start_with(
        prefix: &str,
        configure: impl FnOnce(&mut ApiConfig),
    ) -> anyhow::Result<Self> {
        let namespace = format!("{prefix}{}", uuid::Uuid::now_v7().simple());
        let shutdown = CancellationToken::new();
        let mut config = ApiConfig::new(connections_for(&namespace));
        configure(&mut config);
        let connections = config.connections.clone();
        let app = App::connect(config).await?;
        let scheme = app.scheme();
        let admin_addr = app.admin_addr();
        let http = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let grpc = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let (addr, grpc_addr) = (http.local_addr()?, grpc.local_addr()?);
        tokio::spawn(app.serve(http, grpc, shutdown.clone()));
        Ok(Self {
            namespace,
            addr,
            grpc_addr,
            admin_addr,
            shutdown,
            workers: Vec::new(),
            scheme,
            connections,
        })
    }

    /// Starts one more worker running `kinds`.
    pub async fn add_worker(&mut self, kinds: Kinds, concurrency: u16) -> anyhow::Result<&Worker> {
        let mut config = WorkerConfig::new(self.connections());
        config.concurrency = concurrency;
        self.add_worker_with(kinds, config).await
    }

    /// Starts one more worker with this configuration.
    pub async fn add_worker_with(
        &mut self,
        kinds: Kinds,
        config: WorkerConfig,
    ) -> anyhow::Result<&Worker> {
        let worker = Worker::start(config, kinds, self.shutdown.child_token()).await?;
        self.workers.push(worker);
        Ok(self.workers.last().expect("just pushed"))
    }

    /// What the api was started with (workers added later use the same).
    pub fn connections(&self) -> Connections {
        self.connections.clone()
    }

    /// `http://addr/v1/` (or `https://`) + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}://{}/v1/{path}", self.scheme, self.addr)
    }
}

impl Drop for System {
    /// Stops the api and workers, then removes the namespace from Redis and RabbitMQ, so that
    /// test runs leave nothing behind on the shared services.
    fn drop(&mut self) {
        self.shutdown.cancel();
        let connections = self.connections();
        // A thread and runtime of its own: this may run on the test's runtime, which cannot
        // block on itself.
        let cleaned = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                tokio::time::timeout(
                    std::time::Duration::from_secs(10),
                    remove_namespace(&connections),
                )
                .await?
            })
        })
        .join();
        if let Ok(Err(e)) = cleaned {
            eprintln!("namespace {} not fully removed: {e}", self.namespace);
        }
    }
}

/// The shared services, in `namespace` — or, for a pass of the suite against a cluster, the nodes
/// `LRO_TEST_AMQP_URL` (a RabbitMQ cluster) and `LRO_TEST_REDIS_URL` (a Redis Cluster's seeds)
/// list (`deploy/test.sh` sets them).
pub fn connections_for(namespace: &str) -> Connections {
    let mut connections = Connections::local(namespace);
    if let Ok(urls) = std::env::var("LRO_TEST_AMQP_URL") {
        connections.amqp_url = urls;
    }
    if let Ok(urls) = std::env::var("LRO_TEST_REDIS_URL") {
        connections.redis_url = urls;
    }
    connections
}

/// Deletes every Redis key and AMQP entity of a namespace.
pub async fn remove_namespace(connections: &Connections) -> anyhow::Result<()> {
    let ns = &connections.namespace;
    let tls = connections.client_tls()?;
    redis_nodes::remove_keys(&connections.redis_url, &tls, ns).await?;
    let topology = connections.topology();
    let amqp = lro_common::broker::Nodes::parse(&connections.amqp_url)?
        .connect(&tls)
        .await?;
    let channel = amqp.create_channel().await?;
    for queue in [topology.jobs_queue(), topology.dead_queue()] {
        channel
            .queue_delete(queue.as_str().into(), Default::default())
            .await?;
    }
    channel
        .exchange_delete(
            topology.cancel_exchange().as_str().into(),
            Default::default(),
        )
        .await?;
    let _ = amqp.close(200, "namespace removed".into()).await;
    Ok(())
}

/// Median, p99, min and max of a set of samples (in any unit).
#[derive(Debug, Clone, Copy)]
pub struct Summary {
    pub n: usize,
    pub p50: f64,
    pub p99: f64,
    pub min: f64,
    pub max: f64,
}

impl Summary {
    pub fn of(samples: &[f64]) -> Self {
        let mut s = samples.to_vec();
        s.sort_by(f64::total_cmp);
        let at = |q: f64| s[((s.len() - 1) as f64 * q).round() as usize];
        Self {
            n: s.len(),
            p50: at(0.5),
            p99: at(0.99),
            min: s[0],
            max: s[s.len() - 1],
        }
    }
}
