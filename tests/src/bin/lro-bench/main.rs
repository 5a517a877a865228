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
//! Usage: `cargo build --release --workspace && target/release/lro-bench` (see `--help`).

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use futures_util::{FutureExt, StreamExt};
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

pub(crate) use cancel::cancel_latency_on;
use cancel::{Cancels, amqp_floor, cancel_latency, redis_floor};

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
            token, cancelled, ..
        } = cancel_latency(args.cancels, 1).await?;
        lro_token_p50 = Some(token.p50);
        rows.push(
            Row::summary("cancel", "cancel -> job observes its token", "ms", token).compared(
                token.p50 / floor,
                "p50 <= 3x (redis + amqp floor); p99 <= 10 ms",
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

/// Submits `ops` noops from `clients` clients to the real processes; measures the submit rate and
/// the end-to-end rate (until every one is announced done), beside Redis writes per second at the
/// same concurrency.
async fn throughput(args: &Args) -> anyhow::Result<Vec<Row>> {
    throughput_on(args, args.ops, &[]).await
}

/// [`throughput`] of `ops` operations, every process given the `shared` variables.
async fn throughput_on(
    args: &Args,
    ops: usize,
    shared: &[(&str, String)],
) -> anyhow::Result<Vec<Row>> {
    let procs = Procs::start_on("bench", args.workers, 256, &[], shared).await?;
    let measured = noops(args, &procs, ops, &[], Submitting::One).await;
    procs.stop().await;
    let Noops {
        total,
        submit_secs,
        e2e_secs,
        ..
    } = measured?;
    let redis_url = "redis://127.0.0.1:6379";
    let redis_rate = redis_write_rate(redis_url, args.clients, 20_000).await?;
    let e2e = total as f64 / e2e_secs;
    Ok(vec![
        Row::value(
            "throughput",
            "redis SET/s, same clients (baseline)",
            "ops/s",
            20_000,
            redis_rate,
        ),
        Row::value(
            "throughput",
            "submits/s (api alone)",
            "ops/s",
            total,
            total as f64 / submit_secs,
        ),
        Row::value(
            "throughput",
            "noop submit -> done, end to end",
            "ops/s",
            total,
            e2e,
        )
        .compared(e2e / redis_rate, ">= 5000 ops/s"),
    ])
}

/// What one run of [`noops`] measured.
struct Noops {
    total: usize,
    /// First submit → last submit answered.
    submit_secs: f64,
    /// First submit → last operation announced done.
    e2e_secs: f64,
    /// CPU time (user + system) of each watched process over the end-to-end window, ns.
    cpu_ns: Vec<f64>,
}

/// How a run's clients submit.
#[derive(Debug, Clone, Copy)]
enum Submitting {
    /// One job per request, from `--clients` clients.
    One,
    /// `jobs:batchSubmit` with this many jobs per request, from [`bulk::CLIENTS`] clients.
    Batch(usize),
}

/// Submits `ops` noops to `procs` as `how` says and waits until every one is announced done on
/// the done channel; `watch` are the processes whose CPU time is measured meanwhile.
async fn noops(
    args: &Args,
    procs: &Procs,
    ops: usize,
    watch: &[u32],
    how: Submitting,
) -> anyhow::Result<Noops> {
    let client = redis::Client::open("redis://127.0.0.1:6379")?;
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub
        .subscribe(format!("{}:done", procs.namespace))
        .await?;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.clients)
        .build()?;
    // Workers register their kinds and connect in the background; one op proves they run.
    warm_up(&http, procs).await?;

    let (url, noop) = (procs.url("jobs"), json!({ "kind": "noop" }));
    let batch_url = procs.url("jobs:batchSubmit");
    let cpu_before = watch
        .iter()
        .map(|&p| cpu::ns(p))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let started = Instant::now();
    let mut pending: HashSet<String> = HashSet::new();
    let mut stream = pubsub.on_message();
    let submitted = match how {
        Submitting::One => submit_many(&http, &url, &noop, ops, args.clients).boxed(),
        Submitting::Batch(size) => bulk::submit_batches(&http, &batch_url, ops, size).boxed(),
    };
    tokio::pin!(submitted);
    let mut done_early = Vec::new();
    // Count completions while submitting, so the channel never backs up.
    let all = loop {
        tokio::select! {
            all = &mut submitted => break all?,
            msg = stream.next() => {
                let msg = msg.context("done channel closed")?;
                done_early.push(msg.get_payload::<String>()?);
            }
        }
    };
    let submit_secs = started.elapsed().as_secs_f64();
    let total = all.len();
    pending.extend(all);
    for name in done_early {
        pending.remove(&name);
    }
    let deadline = Instant::now() + Duration::from_secs(300);
    while !pending.is_empty() {
        let msg = tokio::time::timeout_at(deadline.into(), stream.next())
            .await
            .context("operations not done within 300 s")?
            .context("done channel closed")?;
        pending.remove(&msg.get_payload::<String>()?);
    }
    let e2e_secs = started.elapsed().as_secs_f64();
    let cpu_ns = watch
        .iter()
        .zip(cpu_before)
        .map(|(&p, before)| Ok(cpu::ns(p)? - before))
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(Noops {
        total,
        submit_secs,
        e2e_secs,
        cpu_ns,
    })
}

/// Submits a job of `kind` to `url` (a `…/jobs` URL); returns the operation's name.
async fn submit(http: &reqwest::Client, url: &str, kind: &str) -> anyhow::Result<String> {
    submit_body(http, url, &json!({ "kind": kind })).await
}

/// Submits `body` about `n` times (rounded up to a multiple of `clients`) from `clients`
/// concurrent clients; returns the operations' names.
async fn submit_many(
    http: &reqwest::Client,
    url: &str,
    body: &Value,
    n: usize,
    clients: usize,
) -> anyhow::Result<Vec<String>> {
    let per_client = n.div_ceil(clients);
    let submits = (0..clients).map(|_| async move {
        let mut names = Vec::with_capacity(per_client);
        for _ in 0..per_client {
            names.push(submit_body(http, url, body).await?);
        }
        anyhow::Ok(names)
    });
    let all = futures_util::future::try_join_all(submits).await?;
    Ok(all.into_iter().flatten().collect())
}

/// Submits `body` to `url` (a `…/jobs` URL); returns the operation's name.
async fn submit_body(http: &reqwest::Client, url: &str, body: &Value) -> anyhow::Result<String> {
    let op: Value = http
        .post(url)
        .json(body)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    Ok(op["name"].as_str().context("no name")?.to_owned())
}

async fn warm_up(http: &reqwest::Client, procs: &Procs) -> anyhow::Result<()> {
    let name = submit(http, &procs.url("jobs"), "noop").await?;
    let done: Value = http
        .post(procs.url(&format!("{name}:wait")))
        .json(&json!({"timeout": "30s"}))
        .send()
        .await?
        .json()
        .await?;
    if done["done"] != true {
        bail!("warm-up operation not done: {done}");
    }
    Ok(())
}

/// `n` SETs from `clients` concurrent tasks on one multiplexed connection, per second.
async fn redis_write_rate(url: &str, clients: usize, n: usize) -> anyhow::Result<f64> {
    let client = redis::Client::open(url)?;
    let conn = client.get_multiplexed_async_connection().await?;
    let key = format!("bench-floor-{}", uuid::Uuid::now_v7().simple());
    let started = Instant::now();
    let tasks = (0..clients).map(|_| {
        let mut conn = conn.clone();
        let key = key.clone();
        async move {
            for _ in 0..n.div_ceil(clients) {
                let _: () = redis::cmd("SET")
                    .arg(&key)
                    .arg("x")
                    .query_async(&mut conn)
                    .await?;
            }
            anyhow::Ok(())
        }
    });
    futures_util::future::try_join_all(tasks).await?;
    let rate = n as f64 / started.elapsed().as_secs_f64();
    let _: i64 = redis::cmd("DEL")
        .arg(&key)
        .query_async(&mut conn.clone())
        .await?;
    Ok(rate)
}
