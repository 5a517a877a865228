//! The `bulk` scenario: batch submission, as platform users submit in bulk. Rounds interleaved, on
//! the same machine and Redis, `--bullmq-ops` noops each:
//! - lro, one job per request from `--clients` clients (as the `throughput` scenario);
//! - lro, `POST /v1/jobs:batchSubmit` of `--bulk` jobs per request from [`CLIENTS`] clients;
//! - BullMQ, `queue.addBulk` of `--bulk` jobs per call from [`CLIENTS`] loops.
//!
//! Jobs accepted per second (first submit → last answer) and end to end (→ last done), and CPU per
//! job of every process, for each; batched ÷ single and lro batched ÷ BullMQ `addBulk`.

use anyhow::Context;
use lro_tests::Summary;
use serde_json::{Value, json};

use crate::bullmq::{AMQP_PORT, CpuTable, REDIS_PORT, bullmq_round, f, lro_round};
use crate::{Args, Row, Submitting, cpu};

/// Concurrent batch requests (lro) and `addBulk` loops (BullMQ).
pub(crate) const CLIENTS: usize = 4;

pub(crate) async fn bulk(args: &Args) -> anyhow::Result<Vec<Row>> {
    let redis = cpu::listener(REDIS_PORT).context("no Redis on its port")?;
    let rabbitmq = cpu::listener(AMQP_PORT).context("no RabbitMQ on its port")?;
    let (mut single_cpu, mut batch_cpu, mut bull_cpu) = Default::default();
    let mut rates: [[Vec<f64>; 2]; 3] = Default::default();
    for round in 0..args.bullmq_rounds {
        let single = lro_round(args, redis, rabbitmq, &mut single_cpu, Submitting::One).await?;
        let how = Submitting::Batch(args.bulk);
        let batch = lro_round(args, redis, rabbitmq, &mut batch_cpu, how).await?;
        let out = bullmq_round(args, redis, 0, args.bulk).await?;
        let t = &out["throughput"];
        let bull = (f(&t["submits_per_s"]), f(&t["e2e_per_s"]));
        add_cpu(&mut bull_cpu, &t["cpu_us_per_job"]);
        println!(
            "bulk round {}: accepted/s single {:.0}, batched {:.0}, addBulk {:.0}; \
             end to end {:.0} / {:.0} / {:.0}",
            round + 1,
            single.0,
            batch.0,
            bull.0,
            single.1,
            batch.1,
            bull.1
        );
        for (i, (submit, e2e)) in [single, batch, bull].into_iter().enumerate() {
            rates[i][0].push(submit);
            rates[i][1].push(e2e);
        }
    }
    let size = args.bulk;
    let names = [
        "lro one job per request".to_owned(),
        format!("lro jobs:batchSubmit of {size}"),
        format!("bullmq addBulk of {size}"),
    ];
    let mut rows = Vec::new();
    for (what, w) in [("jobs accepted", 0), ("noop submit -> done, end to end", 1)] {
        for (i, name) in names.iter().enumerate() {
            let s = Summary::of(&rates[i][w]);
            let mut row = Row::summary("bulk", &format!("{name}: {what}"), "ops/s", s);
            if i == 1 {
                let ratio = ratio_of(&rates[1][w], &rates[0][w]);
                row = row.compared(ratio, "batched / one per request, same rounds");
            }
            if i == 2 {
                let ratio = ratio_of(&rates[1][w], &rates[2][w]);
                row = row.compared(ratio, "lro batched / bullmq addBulk >= 1.0, same rounds");
            }
            rows.push(row);
        }
    }
    rows.extend(single_cpu.rows("bulk", "lro one per request", None));
    rows.extend(batch_cpu.rows("bulk", "lro batched", Some("<= 250 us (ratio: / 250)")));
    rows.extend(bull_cpu.rows("bulk", "bullmq addBulk", None));
    Ok(rows)
}

/// The median over rounds of `a[r] / b[r]`.
fn ratio_of(a: &[f64], b: &[f64]) -> f64 {
    let ratios: Vec<f64> = a.iter().zip(b).map(|(x, y)| x / y).collect();
    Summary::of(&ratios).p50
}

fn add_cpu(table: &mut CpuTable, cpu: &Value) {
    for (name, us) in cpu.as_object().into_iter().flatten() {
        table.add(name, f(us));
    }
}

/// Submits `ops` noops to `url` (a `…/jobs:batchSubmit` URL) in batches of `size` from
/// [`CLIENTS`] concurrent clients; returns the operations' names.
pub(crate) async fn submit_batches(
    http: &reqwest::Client,
    url: &str,
    ops: usize,
    size: usize,
) -> anyhow::Result<Vec<String>> {
    let batches = ops.div_ceil(size.max(1));
    let next = std::sync::atomic::AtomicUsize::new(0);
    let body = json!({ "requests": vec![json!({ "kind": "noop" }); size] });
    let clients = (0..CLIENTS).map(|_| async {
        let mut names = Vec::new();
        while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < batches {
            let answer: Value = http
                .post(url)
                .json(&body)
                .send()
                .await?
                .error_for_status()?
                .json()
                .await?;
            let ops = answer["operations"].as_array().context("no operations")?;
            for op in ops {
                names.push(op["name"].as_str().context("no name")?.to_owned());
            }
        }
        anyhow::Ok(names)
    });
    let all = futures_util::future::try_join_all(clients).await?;
    Ok(all.into_iter().flatten().collect())
}
