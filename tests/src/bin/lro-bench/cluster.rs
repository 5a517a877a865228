//! The `cluster` scenario: the shared standalone Redis beside a private Redis Cluster of 3
//! masters, each with a replica (`deploy/redis-cluster.sh`), the cluster once with `WAIT` off
//! (`LRO_REDIS_REPLICAS=0`) and once on (`auto`, which decides 1 there). For each: `noop` submit
//! → done end to end (the real processes), and cancel → the job observing its token. Rounds
//! alternate the configurations, and each figure is the median over the rounds.
//!
//! Everything shares the machine's 2 cores, so the cluster cannot show its speed-up here (its 6
//! nodes compete with the api and the workers for the same cores): the figures show what one
//! operation costs on each, and what `WAIT` adds.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::StreamExt;
use lro_common::store::Replicas;
use lro_tests::Summary;
use lro_tests::procs::Procs;
use serde_json::json;

use crate::script_cluster::ScriptCluster;
use crate::{Args, Row, cancel_latency_on, submit_many, warm_up};

/// One configuration: its label, `LRO_REDIS_URL` and `LRO_REDIS_REPLICAS`.
struct Setup {
    label: &'static str,
    urls: String,
    replicas: Replicas,
}

pub async fn cluster(args: &Args) -> anyhow::Result<Vec<Row>> {
    let cluster = ScriptCluster::start("redis-cluster.sh", "lro-bench-redis", "redis")?;
    let standalone = lro_common::config::Connections::local("unused").redis_url;
    let setups = [
        Setup {
            label: "1 standalone",
            urls: standalone,
            replicas: Replicas::Auto,
        },
        Setup {
            label: "3 masters, WAIT off",
            urls: cluster.urls.clone(),
            replicas: Replicas::Count(0),
        },
        Setup {
            label: "3 masters + replicas, WAIT 1",
            urls: cluster.urls.clone(),
            replicas: Replicas::Auto,
        },
    ];
    let (mut e2e, mut token) = (vec![Vec::new(); 3], vec![Vec::new(); 3]);
    for _round in 0..args.cluster_rounds {
        for (i, setup) in setups.iter().enumerate() {
            e2e[i].push(throughput(args, setup).await?);
            let cancels = cancel_latency_on(args.cluster_cancels, 1, |c| {
                c.redis_url = setup.urls.clone();
                c.redis_replicas = setup.replicas;
            })
            .await?;
            token[i].push(cancels.token.p50);
        }
    }
    let median = |v: &[f64]| Summary::of(v).p50;
    let mut rows = Vec::new();
    for (i, setup) in setups.iter().enumerate() {
        let label = |what: &str| format!("{what}, {}", setup.label);
        let (rate, p50) = (median(&e2e[i]), median(&token[i]));
        let mut rate_row = Row::value(
            "cluster",
            &label("noop submit -> done"),
            "ops/s",
            args.cluster_ops,
            rate,
        );
        let mut token_row = Row::value(
            "cluster",
            &label("cancel -> token, p50"),
            "ms",
            args.cluster_cancels,
            p50,
        );
        let (base, note) = match i {
            0 => (None, ""),
            1 => (
                Some(0),
                "/ standalone; 2 cores cannot show a cluster's speed-up",
            ),
            _ => (Some(1), "/ same cluster, WAIT off: the cost of WAIT"),
        };
        if let Some(b) = base {
            rate_row = rate_row.compared(rate / median(&e2e[b]), note);
            token_row = token_row.compared(p50 / median(&token[b]), note);
        }
        rows.push(rate_row);
        rows.push(token_row);
    }
    Ok(rows)
}

/// `noop` submit → done, per second, through the real processes on `setup`'s Redis.
async fn throughput(args: &Args, setup: &Setup) -> anyhow::Result<f64> {
    let vars = [
        ("LRO_REDIS_URL", setup.urls.clone()),
        ("LRO_REDIS_REPLICAS", setup.replicas.to_string()),
    ];
    let procs = Procs::start_on("bench", args.workers, 256, &[], &vars).await?;
    // A PUBLISH on any node of a cluster reaches subscribers on every node.
    let first = setup.urls.split(',').next().unwrap_or(&setup.urls);
    let mut pubsub = redis::Client::open(first)?.get_async_pubsub().await?;
    pubsub
        .subscribe(format!("{}:done", procs.namespace))
        .await?;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.clients)
        .build()?;
    warm_up(&http, &procs).await?;
    let (url, noop) = (procs.url("jobs"), json!({ "kind": "noop" }));
    let started = Instant::now();
    let mut stream = pubsub.on_message();
    let submitted = submit_many(&http, &url, &noop, args.cluster_ops, args.clients);
    tokio::pin!(submitted);
    let mut done = HashSet::new();
    // Count completions while submitting, so the channel never backs up.
    let all = loop {
        tokio::select! {
            all = &mut submitted => break all?,
            msg = stream.next() => {
                done.insert(msg.context("done channel closed")?.get_payload::<String>()?);
            }
        }
    };
    let mut pending: HashSet<String> = all.into_iter().filter(|n| !done.contains(n)).collect();
    let deadline = Instant::now() + Duration::from_secs(300);
    while !pending.is_empty() {
        let msg = tokio::time::timeout_at(deadline.into(), stream.next())
            .await
            .context("operations not done within 300 s")?
            .context("done channel closed")?;
        pending.remove(&msg.get_payload::<String>()?);
    }
    let rate = args.cluster_ops as f64 / started.elapsed().as_secs_f64();
    drop(stream);
    procs.stop().await;
    Ok(rate)
}
