//! The `lro-api` command line, as a function (the binary and the tests' copy of it run this):
//! flags and `LRO_*` variables, the refusal to serve strangers with authentication off, then
//! [`crate::App`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use lro_common::config::{Connections, parse_duration_arg};
use lro_common::logging::LogFormat;
use tokio_util::sync::CancellationToken;

use crate::tls::TlsArgs;
use crate::{ApiConfig, App, AuthConfig, RateLimit};

/// Google's long-running operations API over HTTP/JSON and gRPC, plus job submission.
#[derive(Parser)]
#[command(name = "lro-api", version)]
struct Args {
    #[command(flatten)]
    connections: Connections,
    /// Listen address; port 0 picks a free port (the bound address is logged).
    #[arg(long, env = "LRO_HTTP_ADDR", default_value = "127.0.0.1:8080")]
    http_addr: String,
    /// gRPC listen address; port 0 picks a free port (the bound address is logged).
    #[arg(long, env = "LRO_GRPC_ADDR", default_value = "127.0.0.1:8081")]
    grpc_addr: String,
    /// Health and metrics listener (`/livez`, `/readyz`, `/metrics`; unauthenticated, may be
    /// beyond loopback); port 0 picks a free port (the bound address is logged).
    #[arg(long, env = "LRO_ADMIN_ADDR", default_value = "127.0.0.1:9090")]
    admin_addr: String,
    /// Longest a `:wait` call blocks, e.g. "60s".
    #[arg(long, env = "LRO_MAX_WAIT", default_value = "60s", value_parser = parse_duration_arg)]
    max_wait: Duration,
    /// How long an operation is kept once done, e.g. "168h".
    #[arg(long, env = "LRO_RETENTION", default_value = "168h", value_parser = parse_duration_arg)]
    retention: Duration,
    /// File holding the shared secret of HS256-signed JWTs.
    #[arg(long, env = "LRO_AUTH_HS256_SECRET_FILE")]
    auth_hs256_secret_file: Option<PathBuf>,
    /// JWKS file: RS256 and ES256 JWTs are verified against its keys (by `kid`).
    #[arg(long, env = "LRO_AUTH_JWKS_FILE")]
    auth_jwks_file: Option<PathBuf>,
    /// When set, a JWT's `iss` must be this.
    #[arg(long, env = "LRO_AUTH_ISSUER")]
    auth_issuer: Option<String>,
    /// When set, a JWT's `aud` must include this.
    #[arg(long, env = "LRO_AUTH_AUDIENCE")]
    auth_audience: Option<String>,
    /// JSON file of API keys (their SHA-256 hashes, scopes and parents).
    #[arg(long, env = "LRO_API_KEYS_FILE")]
    api_keys_file: Option<PathBuf>,
    /// Allow listening beyond loopback with authentication off.
    #[arg(long, env = "LRO_AUTH_DISABLED", default_value_t = false, action = clap::ArgAction::Set)]
    auth_disabled: bool,
    /// Requests per principal, e.g. "200/s" or "200/s,burst=50"; unlimited when unset.
    #[arg(long, env = "LRO_RATE_LIMIT")]
    rate_limit: Option<RateLimit>,
    /// Log lines as text or as one JSON object each.
    #[arg(long, env = "LRO_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(flatten)]
    tls: TlsArgs,
}

/// Parses the command line and serves until SIGTERM/SIGINT; exits the process on failure with
/// one line on stderr.
#[tokio::main]
pub async fn main() {
    let args = Args::parse();
    let telemetry = lro_common::logging::init(args.log_format, "lro-api");
    let result = run(args).await;
    telemetry.shutdown().await;
    if let Err(e) = result {
        eprintln!("lro-api: {e:#}");
        std::process::exit(1);
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let tls = args.tls.files()?;
    let auth = AuthConfig {
        hs256_secret_file: args.auth_hs256_secret_file,
        jwks_file: args.auth_jwks_file,
        issuer: args.auth_issuer,
        audience: args.auth_audience,
        api_keys_file: args.api_keys_file,
    };
    // Checked before binding where the addresses are plain ip:port, so a refused setup never
    // listens at all; and again on what was bound (a host name may resolve beyond loopback).
    let planned: Vec<SocketAddr> = [&args.http_addr, &args.grpc_addr]
        .iter()
        .filter_map(|a| a.parse().ok())
        .collect();
    crate::check_exposure(&auth, args.auth_disabled, &planned).map_err(anyhow::Error::msg)?;
    let http = listen(&args.http_addr).await?;
    let grpc = listen(&args.grpc_addr).await?;
    let bound = [http.local_addr()?, grpc.local_addr()?];
    crate::check_exposure(&auth, args.auth_disabled, &bound).map_err(anyhow::Error::msg)?;
    let app = App::connect(ApiConfig {
        connections: args.connections,
        max_wait: args.max_wait,
        retention: args.retention,
        auth,
        rate_limit: args.rate_limit,
        tls,
        admin_addr: Some(args.admin_addr),
    })
    .await?;
    let scheme = app.scheme();
    tracing::info!(
        "lro-api listening on {scheme}://{} (REST) and {scheme}://{} (gRPC)",
        http.local_addr()?,
        grpc.local_addr()?
    );
    if let Some(admin) = app.admin_addr() {
        tracing::info!("lro-api admin (health, metrics) on http://{admin}");
    }
    let shutdown = CancellationToken::new();
    tokio::spawn(lro_common::signal::shutdown_on_signal(shutdown.clone()));
    app.serve(http, grpc, shutdown).await
}

async fn listen(addr: &str) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))
}
