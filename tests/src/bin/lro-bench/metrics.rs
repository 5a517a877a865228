//! The `metrics` scenario: what recording metrics costs an operation. Metrics are always on (no
//! switch to compare against), so the cost is measured directly:
//!
//! - a tight loop over the real recording code (through the `benching` shims of `lro_api` and
//!   `lro_worker`): what one `noop` records in the api (its REST request's duration histogram and
//!   the kind's submit counter) and in the worker (queue wait, running gauge up and down, outcome
//!   counter, duration histogram); a render (which folds histogram samples into buckets, as the
//!   upkeep task does every 5 s) every 25,000 records is included; rounds interleaved, median;
//!   once on one thread and once with two threads recording into the same handles (the api's
//!   runtime threads do);
//! - beside the CPU an operation costs: the api and worker processes' CPU time (`/proc`) over
//!   `--ops` `noop`s submitted → done, measured here, and the whole system's ~0.36 ms per
//!   operation (`BENCHMARKS.md`: `top` during the throughput scenario, RabbitMQ and Redis
//!   included).

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::bail;
use futures_util::StreamExt;
use lro_tests::Summary;
use lro_tests::procs::Procs;
use serde_json::json;

use super::{Args, Row};

/// The whole system's CPU per `noop` (api, workers, Redis, RabbitMQ, clients), from
/// `BENCHMARKS.md` ("What limits…", throughput).
const SYSTEM_CPU_PER_OP_NS: f64 = 360_000.0;
/// Records between two renders: ~5 s of the throughput scenario's rate.
const FOLD_EVERY: usize = 25_000;
const ROUNDS: usize = 5;

pub(crate) async fn metrics(args: &Args) -> anyhow::Result<Vec<Row>> {
    let records = args.metrics_records;
    let (api_ns, worker_ns, api2_ns, worker2_ns) =
        tokio::task::spawn_blocking(move || record_costs(records)).await?;
    let lro_cpu_ns = lro_cpu_per_op(args).await?;
    let per_op = api_ns.p50 + worker_ns.p50;
    let per_op2 = api2_ns.p50 + worker2_ns.p50;
    println!(
        "metrics cost per operation: {per_op:.0} ns = {:.3} % of an operation's CPU \
         ({SYSTEM_CPU_PER_OP_NS:.0} ns, whole system) = {:.3} % of the api's and workers' \
         {lro_cpu_ns:.0} ns measured here; two threads recording at once: {per_op2:.0} ns",
        100.0 * per_op / SYSTEM_CPU_PER_OP_NS,
        100.0 * per_op / lro_cpu_ns,
    );
    Ok(vec![
        Row::summary(
            "metrics",
            "api: one submit's records, 1 thread",
            "ns",
            api_ns,
        ),
        Row::summary(
            "metrics",
            "worker: one job's records, 1 thread",
            "ns",
            worker_ns,
        ),
        Row::summary(
            "metrics",
            "api: one submit's records, 2 threads",
            "ns",
            api2_ns,
        ),
        Row::summary(
            "metrics",
            "worker: one job's records, 2 threads",
            "ns",
            worker2_ns,
        ),
        Row::value(
            "metrics",
            "api + workers CPU per noop, submit -> done",
            "ns",
            args.ops,
            lro_cpu_ns,
        ),
        Row::value(
            "metrics",
            "metrics cost per operation",
            "ns",
            ROUNDS,
            per_op,
        ),
        Row::value(
            "metrics",
            "  as % of an operation's CPU (~0.36 ms, whole system)",
            "%",
            ROUNDS,
            100.0 * per_op / SYSTEM_CPU_PER_OP_NS,
        ),
        Row::value(
            "metrics",
            "  as % of the api's and workers' CPU per operation",
            "%",
            ROUNDS,
            100.0 * per_op / lro_cpu_ns,
        ),
    ])
}

/// ns per record: api and worker, on one thread and on two at once; `ROUNDS` interleaved rounds
/// of `records` each.
fn record_costs(records: usize) -> (Summary, Summary, Summary, Summary) {
    let api = lro_api::benching::Metrics::default();
    let worker = lro_worker::benching::Metrics::new(&["noop", "sleep", "batch-cancel"]);
    let api_round = |n: usize| {
        for i in 0..n {
            api.submit(black_box("noop"), took(i));
            if i % FOLD_EVERY == FOLD_EVERY - 1 {
                black_box(api.render());
            }
        }
    };
    let worker_round = |n: usize| {
        for i in 0..n {
            worker.job(black_box("noop"), took(i / 2), took(i));
            if i % FOLD_EVERY == FOLD_EVERY - 1 {
                black_box(worker.render());
            }
        }
    };
    // Registers the handles (first use), as the first request does.
    api_round(FOLD_EVERY);
    worker_round(FOLD_EVERY);
    let timed = |f: &(dyn Fn(usize) + Sync), threads: usize| {
        let t = Instant::now();
        std::thread::scope(|s| {
            for _ in 0..threads {
                s.spawn(|| f(records));
            }
        });
        // Per record on each thread: what each of them paid.
        t.elapsed().as_secs_f64() * 1e9 / records as f64
    };
    let (mut a, mut w, mut a2, mut w2) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        a.push(timed(&api_round, 1));
        w.push(timed(&worker_round, 1));
        a2.push(timed(&api_round, 2));
        w2.push(timed(&worker_round, 2));
    }
    (
        Summary::of(&a),
        Summary::of(&w),
        Summary::of(&a2),
        Summary::of(&w2),
    )
}

/// A request or job duration spread over the buckets (0 to ~5 ms).
fn took(i: usize) -> Duration {
    Duration::from_micros((i % 5_000) as u64)
}

/// CPU time (user + system) of the api and worker processes per `noop` over `--ops` of them,
/// submitted by `--clients` clients and counted done on the done channel.
async fn lro_cpu_per_op(args: &Args) -> anyhow::Result<f64> {
    let procs = Procs::start("bench", args.workers, 256).await?;
    let measured = measure_cpu(args, &procs).await;
    procs.stop().await;
    measured
}

async fn measure_cpu(args: &Args, procs: &Procs) -> anyhow::Result<f64> {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.clients)
        .build()?;
    super::warm_up(&http, procs).await?;
    let client = redis::Client::open("redis://127.0.0.1:6379")?;
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub
        .subscribe(format!("{}:done", procs.namespace))
        .await?;
    let done = Arc::new(AtomicUsize::new(0));
    let counted = done.clone();
    let counter = tokio::spawn(async move {
        let mut stream = pubsub.on_message();
        while stream.next().await.is_some() {
            counted.fetch_add(1, Ordering::Relaxed);
        }
    });
    let mut pids: Vec<u32> = procs.worker_pids();
    pids.extend(procs.api_pid());
    let before = cpu_ns(&pids)?;
    let body = json!({ "kind": "noop" });
    let names =
        super::submit_many(&http, &procs.url("jobs"), &body, args.ops, args.clients).await?;
    let deadline = Instant::now() + Duration::from_secs(300);
    while done.load(Ordering::Relaxed) < names.len() {
        if Instant::now() > deadline {
            bail!("operations not done within 300 s");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let spent = cpu_ns(&pids)? - before;
    counter.abort();
    Ok(spent / names.len() as f64)
}

/// User + system CPU of these processes so far, in ns.
fn cpu_ns(pids: &[u32]) -> anyhow::Result<f64> {
    pids.iter().map(|&p| super::cpu::ns(p)).sum()
}
