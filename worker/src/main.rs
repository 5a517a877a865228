use clap::Parser;
use lro_common::config::Connections;
use lro_worker::{Kinds, Worker, WorkerConfig};
use tokio_util::sync::CancellationToken;

/// Runs lro jobs from RabbitMQ.
#[derive(Parser)]
#[command(name = "lro-worker", version)]
struct Args {
    #[command(flatten)]
    connections: Connections,
    /// Most jobs this worker runs at once.
    #[arg(long, env = "LRO_CONCURRENCY", default_value_t = lro_worker::DEFAULT_CONCURRENCY)]
    concurrency: u16,
    /// Identity recorded on the operations it runs (generated when absent).
    #[arg(long, env = "LRO_WORKER_ID")]
    worker_id: Option<String>,
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();
    let config = WorkerConfig {
        worker_id: args.worker_id.unwrap_or_else(lro_worker::new_worker_id),
        concurrency: args.concurrency,
        connections: args.connections,
    };
    let shutdown = CancellationToken::new();
    tokio::spawn(lro_common::signal::shutdown_on_signal(shutdown.clone()));
    let result = match Worker::start(config, Kinds::builtin(), shutdown).await {
        Ok(worker) => worker.wait().await,
        Err(e) => Err(e),
    };
    if let Err(e) = result {
        eprintln!("lro-worker: {e}");
        std::process::exit(1);
    }
}
