//! `lro-api`: Google's long-running operations API over HTTP/JSON and gRPC, plus job submission. It
//! records state in Redis and publishes jobs and cancels to RabbitMQ; it never runs jobs.

pub mod auth;
#[doc(hidden)]
pub mod benching;
pub mod cli;
mod dashboard;
mod error;
#[doc(hidden)]
pub mod fuzzing;
mod grpc;
mod http;
pub mod limit;
mod list;
mod metrics;
pub mod pb;
mod render;
mod route;
mod schema;
mod service;
pub mod tls;
mod view;
mod waiters;

use std::time::Duration;

use anyhow::Context;
use lro_common::broker::{AmqpError, Broker};
use lro_common::config::Connections;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use auth::AuthConfig;
pub use error::ApiError;
pub use http::{DEFAULT_MAX_WAIT, MAX_BODY_BYTES, OPENAPI_JSON};
pub use limit::RateLimit;
pub use service::AUDIT_TARGET;
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
    /// Credentials accepted; none configured means authentication is off.
    pub auth: AuthConfig,
    /// Requests per principal; `None`: unlimited.
    pub rate_limit: Option<RateLimit>,
    /// Serve REST and gRPC over TLS with these files; plain TCP when `None`.
    pub tls: Option<tls::TlsFiles>,
    /// Where to serve `/livez`, `/readyz` and `/metrics` (port 0: a free port, see
    /// [`App::admin_addr`]); `None`: nowhere. Unauthenticated, and allowed beyond loopback even
    /// with authentication off: it serves no operation (see `lro_common::admin`).
    pub admin_addr: Option<String>,
}

impl ApiConfig {
    pub fn new(connections: Connections) -> Self {
        Self {
            connections,
            max_wait: DEFAULT_MAX_WAIT,
            retention: DEFAULT_RETENTION,
            auth: AuthConfig::default(),
            rate_limit: None,
            tls: None,
            admin_addr: None,
        }
    }
}

/// The connected api, ready to serve.
pub struct App {
    service: Service,
    tls: Option<tls::ServerTls>,
    admin: Option<TcpListener>,
}

impl App {
    /// Connects to Redis and RabbitMQ and declares the topology.
    pub async fn connect(config: ApiConfig) -> anyhow::Result<Self> {
        let auth = auth::Auth::load(&config.auth)?;
        let tls = config.tls.as_ref().map(tls::ServerTls::load).transpose()?;
        let c = &config.connections;
        let client_tls = c.client_tls()?;
        let store = c
            .store(&client_tls)
            .await
            .with_context(|| format!("cannot reach redis at {}", c.redis_url))?;
        let publisher = match Broker::connect(&c.amqp_url, &client_tls, c.topology()).await {
            Ok(publisher) => publisher,
            // A queue of the other type: the message says what to do.
            Err(e @ AmqpError::QueueType(_)) => return Err(e.into()),
            Err(e) => {
                let at = redact(&c.amqp_url);
                return Err(anyhow::Error::new(e).context(format!("cannot reach rabbitmq at {at}")));
            }
        };
        let admin = match &config.admin_addr {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("cannot listen on {addr} (admin)"))?,
            ),
            None => None,
        };
        Ok(Self {
            service: Service::new(service::Shared {
                store,
                publisher,
                waiters: waiters::Waiters::default(),
                kinds: schema::KindCache::default(),
                max_wait: config.max_wait,
                retention_ms: u64::try_from(config.retention.as_millis()).unwrap_or(u64::MAX),
                auth,
                limiter: limit::Limiter::new(config.rate_limit),
                metrics: metrics::ApiMetrics::new(lro_common::metrics::Registry::new()),
            }),
            tls,
            admin,
        })
    }

    /// `https` when serving TLS, else `http`: for the "listening on" line.
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "https" } else { "http" }
    }

    /// The admin listener's bound address, if there is one.
    pub fn admin_addr(&self) -> Option<std::net::SocketAddr> {
        self.admin.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// Serves REST on `http` and gRPC on `grpc` until `shutdown` fires, and the admin listener
    /// (if any) until both have stopped: `/readyz` answers `draining` meanwhile.
    pub async fn serve(
        self,
        http: TcpListener,
        grpc: TcpListener,
        shutdown: CancellationToken,
    ) -> anyhow::Result<()> {
        let svc = self.service;
        tokio::spawn(svc.waiters.clone().follow(
            svc.store.clients().to_vec(),
            svc.store.keys().done_channel(),
            shutdown.clone(),
        ));
        // Recovers operations stranded by a crash (of this process too, on its next start).
        tokio::spawn(lro_common::reaper::run(
            svc.store.clone(),
            svc.publisher.clone(),
            REAPER_TICK,
            shutdown.clone(),
            lro_common::metrics::ReaperMetrics::new(svc.metrics.registry()),
        ));
        let exited = CancellationToken::new();
        let _exit = exited.clone().drop_guard();
        if let Some(listener) = self.admin {
            let readiness = lro_common::admin::Readiness::new(
                svc.store.clone(),
                svc.publisher.clone(),
                None,
                shutdown.clone(),
            );
            tokio::spawn(lro_common::admin::serve(
                listener,
                std::sync::Arc::new(readiness),
                svc.metrics.registry().clone(),
                exited,
            ));
        }
        let rest = async {
            let (router, stop) = (
                http::router(svc.clone()),
                shutdown.clone().cancelled_owned(),
            );
            match &self.tls {
                None => axum::serve(http, router).with_graceful_shutdown(stop).await,
                Some(tls) => {
                    let http = tls::RestListener::new(http, tls, shutdown.clone())?;
                    axum::serve(http, router).with_graceful_shutdown(stop).await
                }
            }
            .context("http server failed")
        };
        let grpc = async {
            grpc::serve(svc.clone(), grpc, self.tls.as_ref(), shutdown.clone())
                .await
                .context("grpc server failed")
        };
        // Either server failing ends both (and the process).
        tokio::try_join!(rest, grpc)?;
        Ok(())
    }
}

/// Refuses to serve strangers by accident: with authentication off, every listener must be on
/// a loopback address unless `auth_disabled` (`LRO_AUTH_DISABLED=true`) says it is meant.
/// The admin listener (`LRO_ADMIN_ADDR`) is not checked: it is unauthenticated by design, serves
/// no operation (health and metrics only), and orchestrators probe it from elsewhere.
pub fn check_exposure(
    auth: &AuthConfig,
    auth_disabled: bool,
    listeners: &[std::net::SocketAddr],
) -> Result<(), String> {
    if auth.is_on() || auth_disabled {
        return Ok(());
    }
    match listeners.iter().find(|a| !a.ip().is_loopback()) {
        Some(a) => Err(format!(
            "refusing to listen on {a} with authentication off: configure credentials \
             (LRO_AUTH_HS256_SECRET_FILE, LRO_AUTH_JWKS_FILE or LRO_API_KEYS_FILE) or set \
             LRO_AUTH_DISABLED=true"
        )),
        None => Ok(()),
    }
}

/// The URL without its password, for messages.
fn redact(urls: &str) -> String {
    let one = |url: &str| match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://…@{}", &url[..s], &url[at + 1..]),
        _ => url.to_owned(),
    };
    urls.split(',').map(one).collect::<Vec<_>>().join(",")
}
