//! `lro-worker`: runs lro jobs from RabbitMQ under cooperative cancellation. Also a library: build
//! your own worker with your own [`Kinds`] and call [`Worker::start`].
//!
//! A worker consumes the namespace's jobs queue (prefetch = concurrency, manual acks) and its own
//! cancel queue. Each job runs under a [`tokio_util::sync::CancellationToken`] kept in a
//! [`registry::Registry`] keyed by operation name, a child of the worker's drain token (fired when
//! a shutdown's grace period is over).
//!
//! The worker's attempts are held by one heartbeat in Redis for the whole process (every third
//! of its lease, however many jobs run), which also brings the cancels recorded for its jobs; a
//! reaper (in every worker and api) recovers the operations of a worker whose heartbeat expired. A worker whose
//! broker connection fails reconnects on its own while its jobs run on.
//! Jobs may fail retryably ([`JobError::Retry`]) and run again after a backoff; job messages no
//! worker can act on go to the dead-letter queue.

mod batch;
#[doc(hidden)]
pub mod benching;
mod builtin;
pub mod cli;
mod consumer;
mod context;
mod heartbeat;
pub mod job;
mod metrics;
pub mod registry;
mod session;

use std::sync::Arc;
use std::time::Duration;

use lro_common::broker::{AmqpError, Broker, Nodes};
use lro_common::config::Connections;
use lro_common::reaper;
use lro_common::store::StoreError;
use lro_common::tls::TlsError;
use session::Session;
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use job::{JobContext, JobError, JobResult, Kinds};
pub use registry::CancelReason;

/// The worker's default concurrency: most jobs are I/O-bound and cheap to hold.
pub const DEFAULT_CONCURRENCY: u16 = 64;
/// How long one heartbeat holds the worker's attempts by default. A dead worker's operations run
/// again within about this long (plus a reaper tick); it beats every third of it.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(3);
/// How long running jobs may go on finishing after a shutdown begins, by default, before their
/// tokens fire and they are handed back.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
/// How long a job may take to return once its token fired, by default, before it is aborted.
pub const DEFAULT_STOP_GRACE: Duration = Duration::from_secs(10);
/// The backoff before the second attempt of a job that failed retryably, by default; it doubles
/// with each attempt (up to 10 min).
pub const DEFAULT_RETRY_BACKOFF: Duration = Duration::from_secs(1);

/// Errors that stop a worker.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Amqp(#[from] AmqpError),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("worker id {0:?} must be 1-100 characters of A-Z a-z 0-9 - _ .")]
    BadWorkerId(String),
    #[error("concurrency must be at least 1")]
    BadConcurrency,
    #[error("lease must be between 300ms and 1h")]
    BadLease,
    #[error("cannot listen on {0} (admin): {1}")]
    AdminListen(String, std::io::Error),
    #[error("worker task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
}

/// How a worker is set up.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub connections: Connections,
    pub worker_id: String,
    pub concurrency: u16,
    /// How long one heartbeat holds this worker's attempts (`LRO_LEASE`).
    pub lease: Duration,
    /// After shutdown begins, how long running jobs may go on before they are stopped.
    pub shutdown_grace: Duration,
    /// After a job's token fires, how long it may take to return before it is aborted.
    pub stop_grace: Duration,
    /// The backoff before the second attempt of a job that failed retryably (then doubling).
    pub retry_backoff: Duration,
    /// Where to serve `/livez`, `/readyz` and `/metrics` (port 0: a free port, see
    /// [`Worker::admin_addr`]); `None`: nowhere. Unauthenticated by design (see
    /// `lro_common::admin`).
    pub admin_addr: Option<String>,
}

impl WorkerConfig {
    /// A worker with a fresh unique id and the default concurrency.
    pub fn new(connections: Connections) -> Self {
        Self {
            connections,
            worker_id: new_worker_id(),
            concurrency: DEFAULT_CONCURRENCY,
            lease: DEFAULT_LEASE,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            stop_grace: DEFAULT_STOP_GRACE,
            retry_backoff: DEFAULT_RETRY_BACKOFF,
            admin_addr: None,
        }
    }
}

/// A fresh, unique worker id.
pub fn new_worker_id() -> String {
    format!("w-{}", uuid::Uuid::now_v7().simple())
}

/// A started worker.
pub struct Worker {
    id: String,
    task: JoinHandle<Result<(), WorkerError>>,
    cancels_received: Arc<std::sync::atomic::AtomicU64>,
    admin_addr: Option<std::net::SocketAddr>,
}

impl Worker {
    /// Connects, declares the topology, registers the kinds and starts consuming. Returns once the
    /// worker is consuming; it runs until `shutdown` fires and every job has settled (see
    /// [`Worker::wait`]). Losing the broker does not stop it: it reconnects while its jobs run on.
    pub async fn start(
        config: WorkerConfig,
        kinds: Kinds,
        shutdown: CancellationToken,
    ) -> Result<Self, WorkerError> {
        let id = config.worker_id;
        let id_ok = !id.is_empty()
            && id.len() <= 100
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !id_ok {
            return Err(WorkerError::BadWorkerId(id));
        }
        if config.concurrency == 0 {
            return Err(WorkerError::BadConcurrency);
        }
        if !(Duration::from_millis(300)..=Duration::from_secs(3600)).contains(&config.lease) {
            return Err(WorkerError::BadLease);
        }
        let admin = match &config.admin_addr {
            Some(addr) => Some(
                tokio::net::TcpListener::bind(addr)
                    .await
                    .map_err(|e| WorkerError::AdminListen(addr.clone(), e))?,
            ),
            None => None,
        };
        let admin_addr = admin.as_ref().and_then(|l| l.local_addr().ok());
        let conns = &config.connections;
        let tls = conns.client_tls()?;
        let store = conns.store(&tls).await?;
        store.register_kinds(&kinds.infos()).await?;

        let topology = conns.topology();
        let session_config = session::SessionConfig {
            nodes: Arc::new(Nodes::parse(&conns.amqp_url)?),
            tls: tls.clone(),
            topology: topology.clone(),
            worker_id: id.clone(),
            concurrency: config.concurrency,
        };
        let session = Session::open(&session_config).await?;
        let broker = Broker::connect(&conns.amqp_url, &tls, topology).await?;
        tracing::info!(worker = %id, concurrency = config.concurrency, "worker consuming");

        let cancels_received: Arc<std::sync::atomic::AtomicU64> = Arc::default();
        let registry = lro_common::metrics::Registry::new();
        let kind_names = kinds.infos().into_iter().map(|k| k.name);
        let consuming = Arc::new(std::sync::atomic::AtomicBool::new(true));
        // Fired when a shutdown's grace is over: every job's token is its child.
        let drain = CancellationToken::new();
        let shared = Arc::new(consumer::Shared {
            store: Arc::new(store.clone()),
            publisher: broker.clone(),
            kinds,
            registry: registry::Registry::new(drain.clone()),
            worker_id: id.clone(),
            slots: Arc::new(Semaphore::new(usize::from(config.concurrency))),
            lease: config.lease,
            stop_grace: config.stop_grace,
            retry_backoff: config.retry_backoff,
            liveness: heartbeat::Liveness::new(),
            reconcile: Notify::new(),
            cancels_received: cancels_received.clone(),
            metrics: metrics::WorkerMetrics::new(registry.clone(), kind_names),
            consuming: consuming.clone(),
        });
        // The heartbeat and the reaper outlive the consume loop until its jobs have settled.
        let settled = CancellationToken::new();
        tokio::spawn(heartbeat::run(shared.clone(), settled.clone()));
        let tick = (config.lease / 4).min(Duration::from_secs(1));
        if let Some(listener) = admin {
            let readiness = lro_common::admin::Readiness::new(
                store.clone(),
                broker.clone(),
                Some(consuming),
                shutdown.clone(),
            );
            // Until the worker has stopped: `/readyz` says `draining` while it drains.
            tokio::spawn(lro_common::admin::serve(
                listener,
                Arc::new(readiness),
                registry.clone(),
                settled.clone(),
            ));
        }
        let reaped = lro_common::metrics::ReaperMetrics::new(&registry);
        tokio::spawn(reaper::run(store, broker, tick, settled.clone(), reaped));
        let task = tokio::spawn(async move {
            let result = consumer::run(
                shared,
                session,
                session_config,
                shutdown,
                drain,
                config.shutdown_grace,
            )
            .await;
            settled.cancel();
            result
        });
        Ok(Self {
            id,
            task,
            cancels_received,
            admin_addr,
        })
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// The admin listener's bound address, if there is one.
    pub fn admin_addr(&self) -> Option<std::net::SocketAddr> {
        self.admin_addr
    }

    /// How many cancel messages this worker has received: one per cancel of a job it runs, and
    /// none for other workers' jobs (cancels are routed, not broadcast).
    pub fn cancels_received(&self) -> u64 {
        self.cancels_received
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Waits until the worker has stopped.
    pub async fn wait(self) -> Result<(), WorkerError> {
        self.task.await?
    }
}
