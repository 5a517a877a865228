//! Support for running a whole lro system in one process against the real Redis and RabbitMQ: the
//! api on a port-0 listener and any number of workers, all in a fresh namespace. Used by the
//! benchmark program; stops everything when dropped.

use std::net::SocketAddr;

use lro_api::{ApiConfig, App};
use lro_common::config::Connections;
use lro_worker::{Kinds, Worker, WorkerConfig};
use tokio_util::sync::CancellationToken;

/// An api and its workers in one fresh namespace.
pub struct System {
    pub namespace: String,
    pub addr: SocketAddr,
    pub shutdown: CancellationToken,
    pub workers: Vec<Worker>,
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
        let mut config = ApiConfig::new(Connections::local(&namespace));
        configure(&mut config);
        let app = App::connect(config).await?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        tokio::spawn(app.serve(listener, shutdown.clone()));
        Ok(Self {
            namespace,
            addr,
            shutdown,
            workers: Vec::new(),
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

    pub fn connections(&self) -> Connections {
        Connections::local(&self.namespace)
    }

    /// `http://addr/v1/` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}/v1/{path}", self.addr)
    }
}

impl Drop for System {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
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
