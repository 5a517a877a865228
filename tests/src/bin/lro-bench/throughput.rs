//! The `throughput` scenario and what other scenarios share with it: the real processes driven
//! with `noop`s by many HTTP clients (one job per request, or in batches), counted done on the
//! done channel, with the CPU time of watched processes over the window; the submit helpers and
//! the Redis write-rate baseline.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::{FutureExt, StreamExt};
use lro_tests::procs::Procs;
use serde_json::{Value, json};

use crate::{Args, Row, bulk, cpu};

/// Submits `ops` noops from `clients` clients to the real processes; measures the submit rate and
/// the end-to-end rate (until every one is announced done), beside Redis writes per second at the
/// same concurrency.
pub(crate) async fn throughput(args: &Args) -> anyhow::Result<Vec<Row>> {
    throughput_on(args, args.ops, &[]).await
}

/// [`throughput`] of `ops` operations, every process given the `shared` variables.
pub(crate) async fn throughput_on(
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
pub(crate) struct Noops {
    pub(crate) total: usize,
    /// First submit → last submit answered.
    pub(crate) submit_secs: f64,
    /// First submit → last operation announced done.
    pub(crate) e2e_secs: f64,
    /// CPU time (user + system) of each watched process over the end-to-end window, ns.
    pub(crate) cpu_ns: Vec<f64>,
}

/// How a run's clients submit.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Submitting {
    /// One job per request, from `--clients` clients.
    One,
    /// `jobs:batchSubmit` with this many jobs per request, from [`bulk::CLIENTS`] clients.
    Batch(usize),
}

/// Submits `ops` noops to `procs` as `how` says and waits until every one is announced done on
/// the done channel; `watch` are the processes whose CPU time is measured meanwhile.
pub(crate) async fn noops(
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
pub(crate) async fn submit(
    http: &reqwest::Client,
    url: &str,
    kind: &str,
) -> anyhow::Result<String> {
    submit_body(http, url, &json!({ "kind": kind })).await
}

/// Submits `body` about `n` times (rounded up to a multiple of `clients`) from `clients`
/// concurrent clients; returns the operations' names.
pub(crate) async fn submit_many(
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

pub(crate) async fn warm_up(http: &reqwest::Client, procs: &Procs) -> anyhow::Result<()> {
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
