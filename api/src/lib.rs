//! `lro-api`: Google's long-running operations API over HTTP/JSON, plus job submission. It
//! records state in Redis and publishes jobs and cancels to RabbitMQ; it never runs jobs.

mod error;
mod grpc;
mod http;
mod list;
pub mod pb;
mod render;
mod route;
mod service;
mod waiters;

use std::time::Duration;

use anyhow::Context;
use lro_common::config::Connections;
use lro_common::store::Store;
use lro_common::topology::{Broker, Topology};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use error::ApiError;
pub use http::{DEFAULT_MAX_WAIT, MAX_BODY_BYTES, OPENAPI_JSON};
pub use service::Service;

/// How often the api's reaper looks for stranded operations.
const REAPER_TICK: Duration = Duration::from_secs(1);

/// How long done operations are kept by default: 7 days.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

/// How the api is set up.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    pub connections: Connections,
    /// Longest a `:wait` call may block.
    pub max_wait: Duration,
    /// How long an operation is kept once done.
    pub retention: Duration,
}

impl ApiConfig {
    pub fn new(connections: Connections) -> Self {
        Self {
            connections,
            max_wait: DEFAULT_MAX_WAIT,
            retention: DEFAULT_RETENTION,
        }
    }
}

/// The connected api, ready to serve.
pub struct App {
    service: Service,
}

impl App {
    /// Connects to Redis and RabbitMQ and declares the topology.
    pub async fn connect(config: ApiConfig) -> anyhow::Result<Self> {
        let c = &config.connections;
        let store = Store::connect(&c.redis_url, &c.namespace)
            .await
            .with_context(|| format!("cannot reach redis at {}", c.redis_url))?;
        let publisher = Broker::connect(&c.amqp_url, Topology::new(&c.namespace))
            .await
            .with_context(|| format!("cannot reach rabbitmq at {}", redact(&c.amqp_url)))?;
        Ok(Self {
            service: Service::new(service::Shared {
                store,
                publisher,
                waiters: waiters::Waiters::default(),
                max_wait: config.max_wait,
                retention_ms: u64::try_from(config.retention.as_millis()).unwrap_or(u64::MAX),
            }),
        })
    }

    /// Serves REST on `http` and gRPC on `grpc` until `shutdown` fires.
    pub async fn serve(
        self,
        http: TcpListener,
        grpc: TcpListener,
        shutdown: CancellationToken,
    ) -> anyhow::Result<()> {
        let svc = self.service;
        tokio::spawn(svc.waiters.clone().follow(
            svc.store.client().clone(),
            svc.store.keys().done_channel(),
            shutdown.clone(),
        ));
        // Recovers operations stranded by a crash (of this process too, on its next start).
        tokio::spawn(lro_common::reaper::run(
            svc.store.clone(),
            svc.publisher.clone(),
            REAPER_TICK,
            shutdown.clone(),
        ));
        let rest = async {
            axum::serve(http, http::router(svc.clone()))
                .with_graceful_shutdown(shutdown.clone().cancelled_owned())
                .await
                .context("http server failed")
        };
        let grpc = async {
            grpc::serve(svc.clone(), grpc, shutdown.clone())
                .await
                .context("grpc server failed")
        };
        // Either server failing ends both (and the process).
        tokio::try_join!(rest, grpc)?;
        Ok(())
    }
}

/// The URL without its password, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://…@{}", &url[..s], &url[at + 1..]),
        _ => url.to_owned(),
    }
}
