//! The admin listener (`LRO_ADMIN_ADDR`) both processes serve: `GET /livez`, `GET /readyz` and
//! `GET /metrics`, on a small router of its own.
//!
//! It is **unauthenticated by design** and never serves operations: it says whether the process
//! is up and ready and how much it did, nothing about any operation. So, unlike the api's REST and
//! gRPC listeners, which refuse a non-loopback address while authentication is off, it may
//! listen anywhere: orchestrators and Prometheus probe it from outside the host.
//!
//! Readiness is cheap: a Redis `PING` and the RabbitMQ connection's status (which also lets a
//! publisher that lost its connection reconnect), each bounded by [`CHECK_TIMEOUT`], looked at
//! most every [`CHECK_EVERY`] however often it is probed (answers in between are the last look's).
//! From the shutdown token until the process exits, `/readyz` answers 503 `draining`, so that an
//! orchestrator stops sending traffic before the process stops taking it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::sync::Mutex;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::broker::Broker;
use crate::metrics::Registry;
use crate::store::Store;

/// Longest one readiness check (a Redis `PING`, a RabbitMQ reconnect) may take before it counts
/// as not answering.
pub const CHECK_TIMEOUT: Duration = Duration::from_millis(300);
/// A readiness answer is reused for this long.
pub const CHECK_EVERY: Duration = Duration::from_millis(500);

/// What `/readyz` looks at.
pub struct Readiness {
    store: Store,
    broker: Broker,
    /// A worker's "consuming" flag (set by its loop while it has a session and is not draining);
    /// `None` for the api.
    consuming: Option<Arc<AtomicBool>>,
    /// Fired when the process begins to shut down.
    shutdown: CancellationToken,
    last: Mutex<Option<(Instant, Vec<&'static str>)>>,
}

impl Readiness {
    pub fn new(
        store: Store,
        broker: Broker,
        consuming: Option<Arc<AtomicBool>>,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            store,
            broker,
            consuming,
            shutdown,
            last: Mutex::new(None),
        }
    }

    /// What is missing for the process to be ready (empty: ready): `redis`, `rabbitmq`,
    /// `consuming`, `draining`.
    pub async fn missing(&self) -> Vec<&'static str> {
        let mut missing = {
            // Held while checking: concurrent probes share one look.
            let mut last = self.last.lock().await;
            match &*last {
                Some((at, missing)) if at.elapsed() < CHECK_EVERY => missing.clone(),
                _ => {
                    let missing = self.check().await;
                    *last = Some((Instant::now(), missing.clone()));
                    missing
                }
            }
        };
        // The process's own flags are read fresh on every probe; only the network checks are
        // cached.
        if let Some(c) = &self.consuming
            && !c.load(Ordering::Relaxed)
        {
            missing.push("consuming");
        }
        if self.shutdown.is_cancelled() {
            missing.push("draining");
        }
        missing
    }

    async fn check(&self) -> Vec<&'static str> {
        let redis = tokio::time::timeout(CHECK_TIMEOUT, self.store.ping());
        let rabbitmq = tokio::time::timeout(CHECK_TIMEOUT, self.broker.ready());
        let (redis, rabbitmq) = tokio::join!(redis, rabbitmq);
        let mut missing = Vec::new();
        if !matches!(redis, Ok(Ok(()))) {
            missing.push("redis");
        }
        if rabbitmq != Ok(true) {
            missing.push("rabbitmq");
        }
        missing
    }
}

#[derive(Clone)]
struct Admin {
    readiness: Arc<Readiness>,
    metrics: Registry,
}

/// The admin router: `/livez`, `/readyz`, `/metrics`.
pub fn router(readiness: Arc<Readiness>, metrics: Registry) -> Router {
    Router::new()
        .route("/livez", get(livez))
        .route("/readyz", get(readyz))
        .route("/metrics", get(render_metrics))
        .with_state(Admin { readiness, metrics })
}

/// Serves the admin router on `listener` until `stop` fires (the process is exiting: later than
/// its shutdown token, so `/readyz` says `draining` meanwhile), and keeps the registry's
/// histograms folded.
pub async fn serve(
    listener: TcpListener,
    readiness: Arc<Readiness>,
    metrics: Registry,
    stop: CancellationToken,
) {
    tokio::spawn(metrics.clone().upkeep(stop.clone()));
    let served = axum::serve(listener, router(readiness, metrics))
        .with_graceful_shutdown(stop.cancelled_owned())
        .await;
    if let Err(e) = served {
        tracing::error!(error = %e, "admin listener failed");
    }
}

async fn livez() -> Response {
    json(StatusCode::OK, r#"{"live":true}"#.to_owned())
}

async fn readyz(State(admin): State<Admin>) -> Response {
    let missing = admin.readiness.missing().await;
    if missing.is_empty() {
        json(StatusCode::OK, r#"{"ready":true}"#.to_owned())
    } else {
        let body = serde_json::json!({ "ready": false, "missing": missing });
        json(StatusCode::SERVICE_UNAVAILABLE, body.to_string())
    }
}

async fn render_metrics(State(admin): State<Admin>) -> Response {
    let mut resp = admin.metrics.render().into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    resp
}

fn json(status: StatusCode, body: String) -> Response {
    let mut resp = (status, body).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}
