//! The `batch` scenario: `POST /v1/projects/bench/operations:batchCancel {"filter": "done=false"}`
//! over N queued operations, against the real `lro-api` and one `lro-worker` (concurrency 1)
//! that runs the batch.
//!
//! The queued operations are written straight to the store and never published (as
//! `tests/tests/it/batch.rs` does), so no worker takes them and creating them costs only Redis:
//! they stay QUEUED until the batch cancels them. Timed from the POST to the batch's `:wait`
//! answering done; its response counts are checked (matched = cancelled = N).

use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use futures_util::{StreamExt, TryStreamExt};
use lro_common::name::Parent;
use lro_common::operation::{NewOperation, Operation};
use lro_common::time::now_millis;
use lro_tests::Summary;
use lro_tests::procs::Procs;
use serde_json::{Value, json};

use super::Row;

const PARENT: &str = "projects/bench";

/// One batch over `n` queued operations.
struct Run {
    secs: f64,
    matched: u64,
    cancelled: u64,
    /// `alreadyDone + notCancellable`: 0 when every queued operation was cancelled.
    others: u64,
}

/// `runs` batches, each over `n` fresh queued operations in a fresh namespace.
pub(crate) async fn batch(n: usize, runs: usize) -> anyhow::Result<Vec<Row>> {
    let mut all = Vec::with_capacity(runs);
    for _ in 0..runs {
        all.push(one(n).await?);
    }
    for r in &all {
        ensure!(
            r.matched == n as u64 && r.cancelled == n as u64 && r.others == 0,
            "batch over {n} queued operations answered matched {}, cancelled {}, others {}",
            r.matched,
            r.cancelled,
            r.others
        );
    }
    let secs = Summary::of(&all.iter().map(|r| r.secs).collect::<Vec<_>>());
    let rates: Vec<f64> = all.iter().map(|r| n as f64 / r.secs).collect();
    let label = |what: &str| format!("{what}, {n} queued ({runs} runs)");
    Ok(vec![
        Row::summary("batch", &label(":batchCancel -> batch done"), "s", secs)
            .goal("matched = cancelled = N (checked)"),
        Row::summary(
            "batch",
            &label("operations cancelled per second"),
            "ops/s",
            Summary::of(&rates),
        ),
    ])
}

async fn one(n: usize) -> anyhow::Result<Run> {
    let procs = Procs::start("bench", 1, 1).await?;
    let measured = measure(&procs, n).await;
    procs.stop().await;
    measured
}

async fn measure(procs: &Procs, n: usize) -> anyhow::Result<Run> {
    let connections = lro_common::config::Connections::local(&procs.namespace);
    let store = connections.store(&connections.client_tls()?).await?;
    let parent = Parent::parse(PARENT)?;
    futures_util::stream::iter(0..n)
        .map(|_| {
            let (store, parent) = (&store, &parent);
            async move {
                let name = parent.operation(&uuid::Uuid::now_v7().to_string())?;
                let op = Operation::new(
                    NewOperation {
                        name,
                        kind: "sleep".into(),
                        input: json!({}),
                        cancellable: true,
                        request_id: None,
                        timeout_ms: None,
                        retention_ms: None,
                    },
                    now_millis(),
                );
                store.create(&op, &[]).await?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(64)
        .try_collect::<()>()
        .await?;

    let http = reqwest::Client::new();
    let started = Instant::now();
    let op: Value = http
        .post(procs.url(&format!("{PARENT}/operations:batchCancel")))
        .json(&json!({"filter": "done=false"}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let name = op["name"].as_str().context("no name")?.to_owned();
    let deadline = started + Duration::from_secs(600);
    let done = loop {
        let op: Value = http
            .post(procs.url(&format!("{name}:wait")))
            .json(&json!({"timeout": "30s"}))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        if op["done"] == true {
            break op;
        }
        if Instant::now() > deadline {
            bail!("batch {name} not done within 600 s: {op}");
        }
    };
    let secs = started.elapsed().as_secs_f64();
    if done["metadata"]["state"] != "SUCCEEDED" {
        bail!("batch {name} did not succeed: {done}");
    }
    let counts = &done["response"]["value"];
    let count = |k: &str| {
        counts[k]
            .as_u64()
            .with_context(|| format!("no {k}: {done}"))
    };
    Ok(Run {
        secs,
        matched: count("matched")?,
        cancelled: count("cancelled")?,
        others: count("alreadyDone")? + count("notCancellable")?,
    })
}
