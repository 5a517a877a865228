//! `lro-bench`: measures the running system against baselines taken in the same run, and prints
//! a table (also written as JSON).
//!
//! Scenarios (`--scenarios`, default all):
//! - `floor`: one Redis round trip, one AMQP publish → consume (same client crates);
//! - `cancel`: N jobs running on an in-process worker, each cancelled over HTTP in turn: time to
//!   (a) the job observing its token, (b) the operation reading back CANCELLED (`cancel.rs`, with
//!   the floors);
//! - `throughput`: the real `lro-api` and `lro-worker` processes; many clients submit `noop`s;
//!   submits per second, and operations per second end to end (submit → done, counted on the
//!   done channel), beside Redis writes per second at the same concurrency;
//! - `reads`: `GET` of operations at a fixed concurrency vs raw Redis `HGET` of the same records
//!   (`reads.rs`, as `auth`);
//! - `auth`: the same `GET`s with a JWT on every request vs authentication off (two api
//!   processes, measured in turn);
//! - `fanout`: 200 jobs on 1, 2, 4 and 8 workers, each cancelled: cancel messages the workers
//!   received per cancel (routed to the owner: 1 whatever the workers), and the latency;
//! - `scale`: N long `sleep`s in flight on two worker processes (N from `--scale`): the workers'
//!   memory per operation, and cancel → CANCELLED (seen by `:wait`) at that load (`scale.rs`);
//! - `batch`: `:batchCancel` of N operations queued under one parent (written straight to the
//!   store, never published), run by the real `lro-worker` (concurrency 1): time until the
//!   batch is done, operations cancelled per second, counts checked (matched = cancelled = N);
//!   median of `--batch-runs` (`batch.rs`);
//! - `metrics`: ns per operation of recording its metrics (the real api and worker recording
//!   code in a tight loop), as a share of an operation's CPU: the whole system's (from
//!   `BENCHMARKS.md`) and the api's and workers' own, measured here over `--ops` `noop`s
//!   (`metrics.rs`);
//! - `queues`: the quorum job queue beside the classic one, on the shared broker and on a private
//!   3-node cluster: end-to-end throughput and cancel latency, rounds interleaved (`queues.rs`);
//! - `cluster`: the standalone Redis beside a private 3-master Redis Cluster with replicas, `WAIT`
//!   off and on: end-to-end throughput and cancel latency, rounds interleaved (`cluster.rs`);
//! - `celery`: Celery 5 (`tests/celery/`, in a virtualenv it makes) on the same RabbitMQ and
//!   Redis: `noop` throughput, and its cooperative abort (`AbortableTask`) of running tasks,
//!   each beside lro's figure from this run (`celery.rs`);
//! - `bullmq`: BullMQ (`tests/bullmq/`, installed from npm under the target dir) on the same
//!   Redis, rounds interleaved with lro's throughput run: `noop` jobs/s end to end beside lro's
//!   ops/s, CPU per job of every process of both systems, and a pub/sub relay to
//!   `worker.cancelJob` beside lro's cancel (`bullmq.rs`);
//! - `bulk`: batch submission (`jobs:batchSubmit`, `--bulk` jobs per request) beside single
//!   submits and beside BullMQ's `addBulk` of as many, rounds interleaved (`bulk.rs`).
//!
//! The processes and their clients for `throughput` (and the scenarios that reuse it) are in
//! `throughput.rs`.
//!
//! Usage: `cargo build --release --workspace && target/release/lro-bench` (see `--help`).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lro_tests::procs::Procs;
use lro_tests::{Summary, System};
use lro_worker::{JobError, Kinds};
use serde_json::{Value, json};

mod batch;
mod bulk;
mod bullmq;
mod cancel;
mod celery;
mod cluster;
mod cpu;
mod metrics;
mod queues;
mod reads;
mod scale;
mod script_cluster;
mod throughput;

pub(crate) use cancel::cancel_latency_on;
use cancel::{Cancels, amqp_floor, cancel_latency, redis_floor};
use throughput::throughput;
pub(crate) use throughput::{Submitting, noops, submit, submit_many, throughput_on, warm_up};

#[derive(Parser)]
#[command(name = "lro-bench")]
struct Args {
    /// Scenarios to run, comma-separated: floor, cancel, throughput, reads, auth, fanout,
    /// scale, batch, metrics, queues, cluster, celery, bullmq, bulk.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "floor,cancel,throughput,reads,auth,fanout,scale,batch,metrics,queues,cluster,celery,bullmq,bulk"
    )]
    scenarios: Vec<String>,
    /// Operations in flight in the scale scenario, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "100,10000,100000")]
    scale: Vec<usize>,
    /// Tasks submitted to Celery in the celery scenario.
    #[arg(long, default_value_t = 10_000)]
    celery_ops: usize,
    /// Running Celery tasks aborted one by one in the celery scenario.
    #[arg(long, default_value_t = 200)]
    celery_aborts: usize,
    /// Interleaved rounds of the bullmq scenario (each runs lro, then BullMQ).
    #[arg(long, default_value_t = 3)]
    bullmq_rounds: usize,
    /// Jobs per round and system in the bullmq scenario.
    #[arg(long, default_value_t = 20_000)]
    bullmq_ops: usize,
    /// Concurrency of each BullMQ worker process in the bullmq scenario.
    #[arg(long, default_value_t = 100)]
    bullmq_concurrency: usize,
    /// Running BullMQ jobs cancelled one by one (in the last round) in the bullmq scenario.
    #[arg(long, default_value_t = 200)]
    bullmq_cancels: usize,
    /// Jobs per batch in the bulk scenario (`jobs:batchSubmit`, BullMQ's `addBulk`).
    #[arg(long, default_value_t = 1000)]
    bulk: usize,
    /// Jobs running (and cancelled one by one) in the cancel scenario.
    #[arg(long, default_value_t = 1000)]
    cancels: usize,
    /// Operations submitted in the throughput scenario.
    #[arg(long, default_value_t = 20_000)]
    ops: usize,
    /// Concurrent HTTP clients (throughput, reads).
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Worker processes (throughput).
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Operations queued under one parent and batch-cancelled in the batch scenario.
    #[arg(long, default_value_t = 10_000)]
    batch_ops: usize,
    /// Batches run (each over fresh operations) in the batch scenario; the median is reported.
    #[arg(long, default_value_t = 3)]
    batch_runs: usize,
    /// Records per timed round of the metrics scenario's micro-benchmark.
    #[arg(long, default_value_t = 1_000_000)]
    metrics_records: usize,
    /// Rounds of the queues scenario (each runs every broker and queue type once).
    #[arg(long, default_value_t = 3)]
    queue_rounds: usize,
    /// Operations submitted per configuration and round in the queues scenario.
    #[arg(long, default_value_t = 5_000)]
    queue_ops: usize,
    /// Running jobs cancelled per configuration and round in the queues scenario.
    #[arg(long, default_value_t = 200)]
    queue_cancels: usize,
    /// Rounds of the cluster scenario (each runs every Redis configuration once).
    #[arg(long, default_value_t = 3)]
    cluster_rounds: usize,
    /// Operations submitted per configuration and round in the cluster scenario.
    #[arg(long, default_value_t = 3_000)]
    cluster_ops: usize,
    /// Running jobs cancelled per configuration and round in the cluster scenario.
    #[arg(long, default_value_t = 100)]
    cluster_cancels: usize,
    /// Seconds each side of the reads scenario runs.
    #[arg(long, default_value_t = 5)]
    read_secs: u64,
    /// Where the JSON copy of the table goes.
    #[arg(long, default_value = "bench-results.json")]
    json: PathBuf,
}

/// One line of the table.
#[derive(Debug, Clone, serde::Serialize)]
struct Row {
    scenario: &'static str,
    figure: String,
    unit: &'static str,
    n: usize,
    p50: f64,
    p99: f64,
    min: f64,
    max: f64,
    /// This figure divided by the baseline it is compared to, and the goal for that ratio or
    /// value, where there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    ratio: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    goal: Option<String>,
}

impl Row {
    fn summary(scenario: &'static str, figure: &str, unit: &'static str, s: Summary) -> Self {
        Self {
            scenario,
            figure: figure.to_owned(),
            unit,
            n: s.n,
            p50: s.p50,
            p99: s.p99,
            min: s.min,
            max: s.max,
            ratio: None,
            goal: None,
        }
    }

    /// A single figure (a rate): the same value in every column.
    fn value(scenario: &'static str, figure: &str, unit: &'static str, n: usize, v: f64) -> Self {
        Self::summary(
            scenario,
            figure,
            unit,
            Summary {
                n,
                p50: v,
                p99: v,
                min: v,
                max: v,
            },
        )
    }

    fn goal(mut self, goal: &str) -> Self {
        self.goal = Some(goal.to_owned());
        self
    }

    fn compared(mut self, ratio: f64, goal: &str) -> Self {
        self.ratio = Some(ratio);
        self.goal = Some(goal.to_owned());
        self
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut rows = Vec::new();
    let run = |s: &str| args.scenarios.iter().any(|x| x == s);
    let redis = redis_floor(1000).await?;
    let amqp = amqp_floor(1000).await?;
    let floor = redis.p50 + amqp.p50;
    if run("floor") {
        rows.push(Row::summary(
            "floor",
            "redis round trip (PING)",
            "ms",
            redis,
        ));
        rows.push(Row::summary("floor", "amqp publish -> consume", "ms", amqp));
    }
    let mut lro_token_p50 = None;
    let mut lro_e2e = None;
    if run("cancel") {
        let Cancels {
            token,
            cancelled,
            answered,
            ..
        } = cancel_latency(args.cancels, 1).await?;
        lro_token_p50 = Some(token.p50);
        rows.push(
            Row::summary("cancel", "cancel -> job observes its token", "ms", token).compared(
                token.p50 / floor,
                "p50 <= 2x (redis + amqp floor); p99 <= 5 ms",
            ),
        );
        rows.push(
            Row::summary(
                "cancel",
                "cancel -> operation reads CANCELLED",
                "ms",
                cancelled,
            )
            .compared(cancelled.p50 / floor, "p50 / (redis + amqp floor)"),
        );
        rows.push(
            Row::summary("cancel", "cancel -> the api answers it", "ms", answered)
                .compared(answered.p50 / floor, "p50 / (redis + amqp floor)"),
        );
    }
    if run("throughput") {
        let measured = throughput(&args).await?;
        lro_e2e = measured.last().map(|r| r.p50);
        rows.extend(measured);
    }
    if run("reads") {
        rows.extend(reads::reads(&args).await?);
    }
    if run("auth") {
        rows.extend(reads::auth(&args).await?);
    }
    if run("fanout") {
        for workers in [1, 2, 4, 8] {
            let c = cancel_latency(200, workers).await?;
            let label = |what: &str| format!("{what}, {workers} workers");
            rows.push(
                Row::value(
                    "fanout",
                    &label("cancel messages per cancel"),
                    "msgs",
                    200,
                    c.deliveries,
                )
                .goal("1 whatever the workers"),
            );
            rows.push(Row::summary(
                "fanout",
                &label("cancel -> job observes its token"),
                "ms",
                c.token,
            ));
        }
    }
    if run("scale") {
        for &n in &args.scale {
            rows.extend(scale::scale(&args, n).await?);
        }
    }
    if run("batch") {
        rows.extend(batch::batch(args.batch_ops, args.batch_runs).await?);
    }
    if run("metrics") {
        rows.extend(metrics::metrics(&args).await?);
    }
    if run("queues") {
        rows.extend(queues::queues(&args).await?);
    }
    if run("cluster") {
        rows.extend(cluster::cluster(&args).await?);
    }
    if run("celery") {
        rows.extend(celery::celery(&args, lro_e2e, lro_token_p50).await?);
    }
    if run("bullmq") {
        rows.extend(bullmq::bullmq(&args, lro_token_p50).await?);
    }
    if run("bulk") {
        rows.extend(bulk::bulk(&args).await?);
    }
    print_table(&rows);
    std::fs::write(&args.json, serde_json::to_vec_pretty(&rows)?)
        .with_context(|| format!("cannot write {}", args.json.display()))?;
    println!("(also written to {})", args.json.display());
    Ok(())
}

fn print_table(rows: &[Row]) {
    println!(
        "{:<11} {:<44} {:>6} {:>6} {:>10} {:>10} {:>10} {:>10} {:>7}  goal",
        "scenario", "figure", "unit", "n", "p50", "p99", "min", "max", "ratio"
    );
    for r in rows {
        let ratio = r.ratio.map(|x| format!("{x:.2}")).unwrap_or_default();
        println!(
            "{:<11} {:<44} {:>6} {:>6} {:>10.3} {:>10.3} {:>10.3} {:>10.3} {:>7}  {}",
            r.scenario,
            r.figure,
            r.unit,
            r.n,
            r.p50,
            r.p99,
            r.min,
            r.max,
            ratio,
            r.goal.as_deref().unwrap_or("")
        );
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
