use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use lro_api::tls::TlsArgs;
use lro_api::{ApiConfig, App};
use lro_common::config::{Connections, parse_duration_arg};
use tokio_util::sync::CancellationToken;

// mimalloc: under glibc's malloc the runtime's threads queue on arena locks when one frees what
// another allocated (a GET: +50 % requests/s with mimalloc, interleaved A/B in BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// Longest a `:wait` call blocks, e.g. "60s".
    #[arg(long, env = "LRO_MAX_WAIT", default_value = "60s", value_parser = parse_duration_arg)]
    max_wait: Duration,
    /// How long an operation is kept once done, e.g. "168h".
    #[arg(long, env = "LRO_RETENTION", default_value = "168h", value_parser = parse_duration_arg)]
    retention: Duration,
    #[command(flatten)]
    tls: TlsArgs,
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    if let Err(e) = run(Args::parse()).await {
        eprintln!("lro-api: {e:#}");
        std::process::exit(1);
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let app = App::connect(ApiConfig {
        connections: args.connections,
        max_wait: args.max_wait,
        retention: args.retention,
        tls: args.tls.files()?,
    })
    .await?;
    let http = listen(&args.http_addr).await?;
    let grpc = listen(&args.grpc_addr).await?;
    let scheme = app.scheme();
    tracing::info!(
        "lro-api listening on {scheme}://{} (REST) and {scheme}://{} (gRPC)",
        http.local_addr()?,
        grpc.local_addr()?
    );
    let shutdown = CancellationToken::new();
    tokio::spawn(lro_common::signal::shutdown_on_signal(shutdown.clone()));
    app.serve(http, grpc, shutdown).await
}

async fn listen(addr: &str) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))
}
