//! `lro-bench`: measures the running system against baselines taken in the same run, and prints
//! a table (also written as JSON).
//!
//! Scenarios (`--scenarios`, default all):
//! - `floor`: one Redis round trip, one AMQP publish → consume (same client crates);
//! - `cancel`: N jobs running on an in-process worker, each cancelled over HTTP in turn: time to
//!   (a) the job observing its token, (b) the operation reading back CANCELLED;
//! - `throughput`: the real `lro-api` and `lro-worker` processes; many clients submit `noop`s;
//!   submits per second, and operations per second end to end (submit → done, counted on the
//!   done channel), beside Redis writes per second at the same concurrency;
//! - `reads`: `GET` of operations at a fixed concurrency vs raw Redis `HGET` of the same records;
//! - `auth`: the same `GET`s with a JWT on every request vs authentication off (two api
//!   processes, measured in turn);
//! - `fanout`: 200 jobs on 1, 2, 4 and 8 workers, each cancelled: cancel messages the workers
//!   received per cancel (routed to the owner: 1 whatever the workers), and the latency;
//! - `scale`: N long `sleep`s in flight on two worker processes (N from `--scale`): the workers'
//!   memory per operation, and cancel → CANCELLED (seen by `:wait`) at that load;
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
//!   each beside lro's figure from this run.
//!
//! Usage: `cargo build --release --workspace && target/release/lro-bench` (see `--help`).

use std::collections::{HashMap, HashSet};
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
mod cluster;
mod metrics;
mod queues;

#[derive(Parser)]
#[command(name = "lro-bench")]
struct Args {
    /// Scenarios to run, comma-separated: floor, cancel, throughput, reads, auth, fanout,
    /// scale, batch, metrics, queues, cluster, celery.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "floor,cancel,throughput,reads,auth,fanout,scale,batch,metrics,queues,cluster,celery"
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
        rows.extend(reads(&args).await?);
    }
    if run("auth") {
        rows.extend(auth(&args).await?);
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
            rows.extend(scale(&args, n).await?);
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
        rows.extend(celery(&args, lro_e2e, lro_token_p50).await?);
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

async fn redis_floor(n: usize) -> anyhow::Result<Summary> {
    let client = redis::Client::open("redis://127.0.0.1:6379")?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let _: String = redis::cmd("PING").query_async(&mut conn).await?;
        samples.push(ms(t.elapsed()));
    }
    Ok(Summary::of(&samples))
}

async fn amqp_floor(n: usize) -> anyhow::Result<Summary> {
    let conn = lapin::Connection::connect(
        "amqp://guest:guest@127.0.0.1:5672/%2f",
        lapin::ConnectionProperties::default(),
    )
    .await?;
    let channel = conn.create_channel().await?;
    let queue = format!("bench-floor-{}", uuid::Uuid::now_v7().simple());
    channel
        .queue_declare(
            queue.as_str().into(),
            QueueDeclareOptions {
                auto_delete: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await?;
    let mut consumer = channel
        .basic_consume(
            queue.as_str().into(),
            "floor".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        channel
            .basic_publish(
                "".into(),
                queue.as_str().into(),
                BasicPublishOptions::default(),
                b"x",
                lapin::BasicProperties::default(),
            )
            .await?;
        let d = consumer.next().await.context("consumer ended")??;
        samples.push(ms(t.elapsed()));
        d.ack(BasicAckOptions::default()).await?;
    }
    let _ = conn.close(200, "done".into()).await;
    Ok(Summary::of(&samples))
}

/// What one cancel run measured.
struct Cancels {
    /// Cancel → the job observes its token, ms.
    token: Summary,
    /// Cancel → the operation reads back CANCELLED, ms.
    cancelled: Summary,
    /// Cancel messages the workers received, per cancel.
    deliveries: f64,
}

/// `n` jobs running on `workers` in-process workers, each cancelled over HTTP in turn.
async fn cancel_latency(n: usize, workers: usize) -> anyhow::Result<Cancels> {
    cancel_latency_on(n, workers, |_| {}).await
}

/// [`cancel_latency`] on the connections `configure` sets (another broker, queue type).
async fn cancel_latency_on(
    n: usize,
    workers: usize,
    configure: impl FnOnce(&mut lro_common::config::Connections),
) -> anyhow::Result<Cancels> {
    let observed: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let seen = observed.clone();
    let kinds = Kinds::builtin().kind("bench-wait", move |_input, ctx| {
        let seen = seen.clone();
        async move {
            ctx.cancelled().await;
            seen.lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(ctx.name().to_string(), Instant::now());
            Err(JobError::Cancelled)
        }
    });
    let mut system = System::start_with("bench", |c| configure(&mut c.connections)).await?;
    let concurrency = u16::try_from(n.div_ceil(workers) + 1).unwrap_or(u16::MAX);
    for _ in 0..workers {
        system.add_worker(kinds.clone(), concurrency).await?;
    }
    let http = reqwest::Client::new();
    let mut names = Vec::with_capacity(n);
    for _ in 0..n {
        names.push(submit(&http, &system.url("jobs"), "bench-wait").await?);
    }
    for name in &names {
        let deadline = Instant::now() + Duration::from_secs(30);
        while state(&http, &system, name).await? != "RUNNING" {
            if Instant::now() > deadline {
                bail!("{name} never started");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    let (mut to_token, mut to_cancelled) = (Vec::new(), Vec::new());
    for name in &names {
        let t0 = Instant::now();
        let resp = http
            .post(system.url(&format!("{name}:cancel")))
            .send()
            .await?;
        if !resp.status().is_success() {
            bail!("cancel of {name} answered {}", resp.status());
        }
        while state(&http, &system, name).await? != "CANCELLED" {
            if t0.elapsed() > Duration::from_secs(10) {
                bail!("{name} not CANCELLED after 10s");
            }
        }
        to_cancelled.push(ms(t0.elapsed()));
        let at = observed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .copied()
            .context("job did not observe its token")?;
        to_token.push(ms(at.duration_since(t0)));
    }
    let received: u64 = system.workers.iter().map(|w| w.cancels_received()).sum();
    Ok(Cancels {
        token: Summary::of(&to_token),
        cancelled: Summary::of(&to_cancelled),
        deliveries: received as f64 / n as f64,
    })
}

async fn state(http: &reqwest::Client, system: &System, name: &str) -> anyhow::Result<String> {
    let op: Value = http.get(system.url(name)).send().await?.json().await?;
    Ok(op["metadata"]["state"]
        .as_str()
        .unwrap_or_default()
        .to_owned())
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
    let redis_url = "redis://127.0.0.1:6379";
    let client = redis::Client::open(redis_url)?;
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub
        .subscribe(format!("{}:done", procs.namespace))
        .await?;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.clients)
        .build()?;
    // Workers register their kinds and connect in the background; one op proves they run.
    warm_up(&http, &procs).await?;

    let (url, noop) = (procs.url("jobs"), json!({ "kind": "noop" }));
    let started = Instant::now();
    let mut pending: HashSet<String> = HashSet::new();
    let mut stream = pubsub.on_message();
    let submitted = submit_many(&http, &url, &noop, ops, args.clients);
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
    drop(stream);
    procs.stop().await;

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

/// `GET /v1/{name}` of done operations from `clients` clients for `read_secs`, vs `HGET` of the
/// same records at the same concurrency.
async fn reads(args: &Args) -> anyhow::Result<Vec<Row>> {
    let procs = Procs::start("bench", 1, 64).await?;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.clients)
        .build()?;
    warm_up(&http, &procs).await?;
    let mut names = Vec::new();
    for _ in 0..200 {
        names.push(submit(&http, &procs.url("jobs"), "noop").await?);
    }
    let names = Arc::new(names);
    let window = Duration::from_secs(args.read_secs);

    let http_count = get_loop(procs.addr, &names, args.clients, window, None).await?;

    let keys = lro_common::store::Keys::new(&procs.namespace);
    let client = redis::Client::open("redis://127.0.0.1:6379")?;
    let op_keys: Arc<Vec<String>> = Arc::new(
        names
            .iter()
            .map(|n| lro_common::name::OperationName::parse(n).map(|n| keys.op(&n)))
            .collect::<Result<_, _>>()?,
    );
    // The baseline at the same concurrency: each of the `clients` loops on its own connection,
    // waiting for each answer, as each HTTP client does on its own keep-alive connection.
    let mut conns = Vec::new();
    for _ in 0..args.clients {
        conns.push(client.get_multiplexed_async_connection().await?);
    }
    let hget = |conn: &redis::aio::MultiplexedConnection, i: usize| {
        let mut conn = conn.clone();
        let key = op_keys[i % op_keys.len()].clone();
        async move {
            let _: Option<Vec<u8>> = redis::cmd("HGET")
                .arg(&key)
                .arg("r")
                .query_async(&mut conn)
                .await?;
            anyhow::Ok(())
        }
    };
    let redis_count = closed_loop(args.clients, window, |c, i| hget(&conns[c], i)).await?;
    // For scale: the same loops sharing one connection, which pipelines their commands.
    let pipelined_count = closed_loop(args.clients, window, |_, i| hget(&conns[0], i)).await?;
    procs.stop().await;

    let secs = window.as_secs_f64();
    let (api, raw) = (http_count as f64 / secs, redis_count as f64 / secs);
    Ok(vec![
        Row::value(
            "reads",
            "redis HGET/s of the records, a connection per client (baseline)",
            "req/s",
            redis_count,
            raw,
        ),
        Row::value(
            "reads",
            "redis HGET/s, the same clients on one pipelined connection",
            "req/s",
            pipelined_count,
            pipelined_count as f64 / secs,
        ),
        Row::value("reads", "GET /v1/{name}", "req/s", http_count, api)
            .compared(api / raw, ">= 0.5"),
    ])
}

/// `GET /v1/{name}` of `names` in turn from `clients` loops for `window`, each with an
/// `Authorization` header when `authorization` is given; returns how many were answered.
async fn get_loop(
    addr: std::net::SocketAddr,
    names: &[String],
    clients: usize,
    window: Duration,
    authorization: Option<&str>,
) -> anyhow::Result<usize> {
    // A lean HTTP/1.1 client (hyper, one keep-alive connection per loop): the clients share
    // the machine's 2 cores with the api, so a heavier client would measure itself.
    let mut senders = Vec::new();
    for _ in 0..clients {
        let stream = tokio::net::TcpStream::connect(addr).await?;
        let (sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        senders.push(tokio::sync::Mutex::new(sender));
    }
    let paths: Vec<hyper::Uri> = names
        .iter()
        .map(|n| format!("/v1/{n}").parse())
        .collect::<Result<_, _>>()?;
    closed_loop(clients, window, |c, i| {
        let (senders, path) = (&senders, paths[i % paths.len()].clone());
        async move {
            let mut sender = senders[c].lock().await;
            sender.ready().await?;
            let mut req = hyper::Request::get(path).header(hyper::header::HOST, "127.0.0.1");
            if let Some(a) = authorization {
                req = req.header(hyper::header::AUTHORIZATION, a);
            }
            let req = req.body(http_body_util::Empty::<bytes::Bytes>::new())?;
            let res = sender.send_request(req).await?;
            if !res.status().is_success() {
                bail!("GET answered {}", res.status());
            }
            http_body_util::BodyExt::collect(res.into_body()).await?;
            anyhow::Ok(())
        }
    })
    .await
}

/// `GET /v1/{name}` with a JWT on every request (HS256, verified once and cached by the api)
/// vs the same without authentication: two api processes, measured in turn `rounds` times;
/// the median of the per-round ratios.
async fn auth(args: &Args) -> anyhow::Result<Vec<Row>> {
    let dir = std::env::temp_dir().join(format!("lro-bench-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir)?;
    let secret = dir.join("secret");
    std::fs::write(&secret, b"bench-secret-bench-secret-bench-secret")?;
    let plain = Procs::start("bench", 0, 1).await?;
    let secured = Procs::start_with(
        "bench",
        0,
        1,
        &[("LRO_AUTH_HS256_SECRET_FILE", secret.display().to_string())],
    )
    .await?;
    let exp = jsonwebtoken::get_current_timestamp() + 3600;
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({"sub": "bench", "scope": "lro.admin", "exp": exp}),
        &jsonwebtoken::EncodingKey::from_secret(b"bench-secret-bench-secret-bench-secret")?,
    )?;
    let bearer = format!("Bearer {token}");
    let http = reqwest::Client::new();
    let (mut plain_names, mut secured_names) = (Vec::new(), Vec::new());
    for _ in 0..200 {
        plain_names.push(submit(&http, &plain.url("jobs"), "noop").await?);
        let name = http
            .post(secured.url("jobs"))
            .header("authorization", &bearer)
            .json(&json!({"kind": "noop"}))
            .send()
            .await?
            .error_for_status()?
            .json::<Value>()
            .await?["name"]
            .as_str()
            .context("no name")?
            .to_owned();
        secured_names.push(name);
    }
    let window = Duration::from_secs(args.read_secs);
    let (mut without, mut with, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..3 {
        let a = get_loop(plain.addr, &plain_names, args.clients, window, None).await?;
        let b = get_loop(
            secured.addr,
            &secured_names,
            args.clients,
            window,
            Some(&bearer),
        )
        .await?;
        let secs = window.as_secs_f64();
        without.push(a as f64 / secs);
        with.push(b as f64 / secs);
        ratios.push(b as f64 / a as f64);
    }
    plain.stop().await;
    secured.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
    let ratio = Summary::of(&ratios).p50;
    Ok(vec![
        Row::summary(
            "auth",
            "GET /v1/{name}, authentication off (baseline)",
            "req/s",
            Summary::of(&without),
        ),
        Row::summary(
            "auth",
            "GET /v1/{name} with a JWT on every request",
            "req/s",
            Summary::of(&with),
        )
        .compared(ratio, ">= 0.9 (median of 3 interleaved rounds)"),
    ])
}

/// Runs `clients` loops of `request(client, i)` for `window` (`i` spreads the loops over the
/// records); returns how many completed.
async fn closed_loop<F, Fut>(clients: usize, window: Duration, request: F) -> anyhow::Result<usize>
where
    F: Fn(usize, usize) -> Fut + Clone,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let until = Instant::now() + window;
    let loops = (0..clients).map(|c| {
        let request = request.clone();
        async move {
            let mut count = 0;
            while Instant::now() < until {
                request(c, c * 7919 + count).await?;
                count += 1;
            }
            anyhow::Ok(count)
        }
    });
    Ok(futures_util::future::try_join_all(loops)
        .await?
        .into_iter()
        .sum())
}

/// Runs `tests/celery/run.sh` and sets Celery's figures beside lro's from this run.
async fn celery(
    args: &Args,
    lro_e2e: Option<f64>,
    lro_token_p50: Option<f64>,
) -> anyhow::Result<Vec<Row>> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/celery/run.sh");
    let out = tokio::process::Command::new("bash")
        .arg(script)
        .args(["--ops", &args.celery_ops.to_string()])
        .args(["--aborts", &args.celery_aborts.to_string()])
        .stderr(std::process::Stdio::inherit())
        .output()
        .await
        .context("cannot run the celery benchmark")?;
    if !out.status.success() {
        bail!("celery benchmark failed: {}", out.status);
    }
    let v: Value = serde_json::from_slice(
        out.stdout
            .rsplit(|&b| b == b'\n')
            .find(|l| !l.is_empty())
            .context("no output")?,
    )?;
    let t = &v["throughput"];
    let c = &v["cancel"];
    let f = |x: &Value| x.as_f64().unwrap_or(f64::NAN);
    let ops = t["ops"].as_u64().unwrap_or(0) as usize;
    let e2e = f(&t["e2e_per_s"]);
    let mut e2e_row = Row::value("celery", "celery noop submit -> result", "ops/s", ops, e2e);
    if let Some(lro) = lro_e2e {
        e2e_row = e2e_row.compared(lro / e2e, "lro / celery >= 3");
    }
    let abort = Summary {
        n: c["n"].as_u64().unwrap_or(0) as usize,
        p50: f(&c["p50_ms"]),
        p99: f(&c["p99_ms"]),
        min: f(&c["min_ms"]),
        max: f(&c["max_ms"]),
    };
    let mut abort_row = Row::summary("celery", "celery abort -> running task stops", "ms", abort);
    if let Some(lro) = lro_token_p50 {
        abort_row = abort_row.compared(abort.p50 / lro, "celery p50 / lro p50 (token)");
    }
    Ok(vec![
        Row::value(
            "celery",
            "celery submits/s",
            "ops/s",
            ops,
            f(&t["submits_per_s"]),
        ),
        e2e_row,
        abort_row,
    ])
}

/// `n` long sleeps in flight on two worker processes: the workers' resident memory per operation
/// (growth over an idle worker), and 100 cancels → CANCELLED at that load.
async fn scale(args: &Args, n: usize) -> anyhow::Result<Vec<Row>> {
    let procs = Procs::start("bench", 2, n / 2 + 64).await?;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.clients)
        .build()?;
    warm_up(&http, &procs).await?;
    let idle = workers_rss(&procs)?;
    let body = json!({ "kind": "sleep", "input": { "duration": "600s", "steps": 60 } });
    let url = procs.url("jobs");
    let names = submit_many(&http, &url, &body, n, args.clients).await?;
    let total = names.len();
    let deadline = Instant::now() + Duration::from_secs(300);
    while running(&http, &procs).await? < total {
        if Instant::now() > deadline {
            bail!("not all {total} operations running within 300 s");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let loaded = workers_rss(&procs)?;
    let per_op = loaded.saturating_sub(idle) as f64 / total as f64;

    let mut samples = Vec::new();
    for name in names.iter().step_by((total / 100).max(1)).take(100) {
        let t0 = Instant::now();
        http.post(procs.url(&format!("{name}:cancel")))
            .send()
            .await?
            .error_for_status()?;
        let op: Value = http
            .post(procs.url(&format!("{name}:wait")))
            .json(&json!({ "timeout": "10s" }))
            .send()
            .await?
            .json()
            .await?;
        if op["metadata"]["state"] != "CANCELLED" {
            bail!("{name} not CANCELLED 10 s after its cancel: {op}");
        }
        samples.push(ms(t0.elapsed()));
    }
    procs.stop().await;
    let label = |what: &str| format!("{what}, {total} in flight");
    Ok(vec![
        Row::value(
            "scale",
            &label("worker memory per operation"),
            "bytes",
            total,
            per_op,
        )
        .compared(per_op / 2048.0, "<= 2 KiB"),
        Row::summary(
            "scale",
            &label("cancel -> CANCELLED (:wait)"),
            "ms",
            Summary::of(&samples),
        )
        .goal("flat across loads"),
    ])
}

/// How many of the namespace's operations are RUNNING (all pages).
async fn running(http: &reqwest::Client, procs: &Procs) -> anyhow::Result<usize> {
    let mut count = 0;
    let mut token = String::new();
    loop {
        let mut url = format!(
            "{}?pageSize=1000&filter=metadata.state%3DRUNNING",
            procs.url("operations")
        );
        if !token.is_empty() {
            url += &format!("&pageToken={token}");
        }
        let page: Value = http
            .get(&url)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        count += page["operations"].as_array().map_or(0, Vec::len);
        match page["nextPageToken"].as_str() {
            Some(t) => token = t.to_owned(),
            None => return Ok(count),
        }
    }
}

/// The worker processes' resident memory, in bytes.
fn workers_rss(procs: &Procs) -> anyhow::Result<u64> {
    let mut total = 0;
    for pid in procs.worker_pids() {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        let kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .context("no VmRSS")?;
        total += kib * 1024;
    }
    Ok(total)
}
