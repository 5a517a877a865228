//! The `lro-worker` command line, as a function: the binary runs it with the built-in kinds, and
//! a team's own worker binary can run it with theirs (`lro_worker::cli::main(kinds)`).

use std::time::Duration;

use clap::Parser;
use lro_common::config::{Connections, parse_duration_arg};
use lro_common::logging::LogFormat;
use tokio_util::sync::CancellationToken;

use crate::{Kinds, Worker, WorkerConfig};

/// Runs lro jobs from RabbitMQ.
#[derive(Parser)]
#[command(name = "lro-worker", version)]
struct Args {
    #[command(flatten)]
    connections: Connections,
    /// Most jobs this worker runs at once.
    #[arg(long, env = "LRO_CONCURRENCY", default_value_t = crate::DEFAULT_CONCURRENCY)]
    concurrency: u16,
    /// Identity recorded on the operations it runs (generated when absent).
    #[arg(long, env = "LRO_WORKER_ID")]
    worker_id: Option<String>,
    /// How long one heartbeat holds this worker's operations (it beats every third of it); a
    /// dead worker's operations run again after about this long.
    #[arg(long, env = "LRO_LEASE", default_value = "3s", value_parser = parse_duration_arg)]
    lease: Duration,
    /// After SIGTERM, how long running jobs may go on finishing before they are stopped and
    /// handed back (to run again elsewhere).
    #[arg(long, env = "LRO_SHUTDOWN_GRACE", default_value = "30s", value_parser = parse_duration_arg)]
    shutdown_grace: Duration,
    /// After a job's token fires, how long it may take to return before it is aborted.
    #[arg(long, env = "LRO_STOP_GRACE", default_value = "10s", value_parser = parse_duration_arg)]
    stop_grace: Duration,
    /// The backoff before the second attempt of a job that failed retryably; it doubles with
    /// each attempt, up to 10 min.
    #[arg(long, env = "LRO_RETRY_BACKOFF", default_value = "1s", value_parser = parse_duration_arg)]
    retry_backoff: Duration,
    /// Health and metrics listener (`/livez`, `/readyz`, `/metrics`; unauthenticated); port 0
    /// picks a free port (the bound address is logged).
    #[arg(long, env = "LRO_ADMIN_ADDR", default_value = "127.0.0.1:9091")]
    admin_addr: String,
    /// Log line format: `text` for people, `json` (one object a line) for log routers.
    #[arg(long, env = "LRO_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

/// Parses flags and environment, runs a worker with `kinds` until SIGINT/SIGTERM, and exits the
/// process non-zero with one clear line if it cannot start or fails.
pub fn main(kinds: Kinds) {
    let args = Args::parse();
    let log_format = args.log_format;
    let config = WorkerConfig {
        worker_id: args.worker_id.unwrap_or_else(crate::new_worker_id),
        concurrency: args.concurrency,
        lease: args.lease,
        shutdown_grace: args.shutdown_grace,
        stop_grace: args.stop_grace,
        retry_backoff: args.retry_backoff,
        admin_addr: Some(args.admin_addr),
        connections: args.connections,
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("lro-worker: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    let result = runtime.block_on(async {
        let telemetry = lro_common::logging::init(log_format, "lro-worker");
        let result = run(config, kinds).await;
        telemetry.shutdown().await;
        result
    });
    if let Err(e) = result {
        eprintln!("lro-worker: {e}");
        std::process::exit(1);
    }
}

/// Runs a worker with `kinds` until SIGINT/SIGTERM and its drain are over.
async fn run(config: WorkerConfig, kinds: Kinds) -> Result<(), crate::WorkerError> {
    let shutdown = CancellationToken::new();
    tokio::spawn(lro_common::signal::shutdown_on_signal(shutdown.clone()));
    let worker = Worker::start(config, kinds, shutdown).await?;
    if let Some(admin) = worker.admin_addr() {
        tracing::info!("lro-worker admin (health, metrics) on http://{admin}");
    }
    worker.wait().await
}
