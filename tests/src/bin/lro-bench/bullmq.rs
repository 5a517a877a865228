//! The `bullmq` scenario: BullMQ, the job queue lro users would most often pick instead, side by
//! side with lro on the same machine and the same Redis (`tests/bullmq/`, installed from npm
//! under the target dir by its `run.sh`).
//!
//! Rounds are interleaved — lro's throughput run, then BullMQ's — so both see the same machine:
//! - end to end, `noop`s: lro's submit → done (the real `lro-api` and `--workers` `lro-worker`
//!   processes, `--clients` HTTP clients) and BullMQ's add → `completed` (a producer with as many
//!   adds in flight, 2 worker processes), the same number of jobs each; lro ÷ BullMQ per round;
//! - CPU per job of every process of both systems over that window (`/proc`): lro's api, each
//!   worker, Redis, RabbitMQ and this process (the clients); BullMQ's producer, each worker and
//!   Redis. Redis and RabbitMQ are the machine's shared services, so other work on them in the
//!   window is counted too;
//! - in the last round, BullMQ's cancel as its users build it (it has none across processes): a
//!   Redis pub/sub relay to `worker.cancelJob`, publish → the processor's AbortSignal fires,
//!   beside lro's cancel → token (the `cancel` scenario of this run).
//!
//! It does not compare features: lro's job carries a durable record with indexes, an HTTP hop
//! and a confirmed persistent AMQP message; BullMQ's is a Redis hash and list moves.

use anyhow::{Context, bail};
use lro_tests::Summary;
use lro_tests::procs::Procs;
use serde_json::Value;

use crate::{Args, Row, Submitting, cpu, noops};

/// Ports of the shared services (those lro-bench and the BullMQ script connect to).
pub(crate) const REDIS_PORT: u16 = 6379;
pub(crate) const AMQP_PORT: u16 = 5672;

/// CPU µs per job of named processes, one value per round, in the order first seen.
#[derive(Default)]
pub(crate) struct CpuTable(Vec<(String, Vec<f64>)>);

impl CpuTable {
    pub(crate) fn add(&mut self, name: &str, us: f64) {
        match self.0.iter_mut().find(|(n, _)| n == name) {
            Some((_, v)) => v.push(us),
            None => self.0.push((name.to_owned(), vec![us])),
        }
    }

    /// One row per process, and the sum of every process per round.
    pub(crate) fn rows(
        &self,
        scenario: &'static str,
        system: &str,
        goal: Option<&str>,
    ) -> Vec<Row> {
        let rounds = self.0.first().map_or(0, |(_, v)| v.len());
        let totals: Vec<f64> = (0..rounds)
            .map(|r| self.0.iter().filter_map(|(_, v)| v.get(r)).sum())
            .collect();
        let mut rows: Vec<Row> = self
            .0
            .iter()
            .map(|(name, v)| {
                Row::summary(
                    scenario,
                    &format!("{system} CPU per job: {name}"),
                    "us",
                    Summary::of(v),
                )
            })
            .collect();
        let total = Summary::of(&totals);
        let mut row = Row::summary(
            scenario,
            &format!("{system} CPU per job: all processes"),
            "us",
            total,
        );
        if let Some(goal) = goal {
            row = row.compared(total.p50 / 250.0, goal);
        }
        rows.push(row);
        rows
    }
}

pub(crate) async fn bullmq(args: &Args, lro_token_p50: Option<f64>) -> anyhow::Result<Vec<Row>> {
    let redis = cpu::listener(REDIS_PORT)
        .with_context(|| format!("no process found listening on port {REDIS_PORT}"))?;
    let rabbitmq = cpu::listener(AMQP_PORT)
        .with_context(|| format!("no process found listening on port {AMQP_PORT}"))?;
    let (mut lro_rates, mut bull_rates, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    let (mut lro_cpu, mut bull_cpu) = (CpuTable::default(), CpuTable::default());
    let mut cancel = None;
    let mut version = String::new();
    for round in 0..args.bullmq_rounds {
        let (_, lro) = lro_round(args, redis, rabbitmq, &mut lro_cpu, Submitting::One).await?;
        let last = round + 1 == args.bullmq_rounds;
        let cancels = if last { args.bullmq_cancels } else { 0 };
        let out = bullmq_round(args, redis, cancels, 0).await?;
        let t = &out["throughput"];
        let bull = f(&t["e2e_per_s"]);
        let jobs = t["ops"].as_f64().unwrap_or(f64::NAN);
        if let Some(cpu) = t["cpu_us_per_job"].as_object() {
            for (name, us) in cpu {
                bull_cpu.add(name, f(us));
            }
        }
        println!(
            "bullmq round {}: lro {lro:.0} ops/s, bullmq {bull:.0} jobs/s ({jobs} jobs), \
             lro / bullmq = {:.2}",
            round + 1,
            lro / bull
        );
        lro_rates.push(lro);
        bull_rates.push(bull);
        ratios.push(lro / bull);
        if last && !out["cancel"].is_null() {
            cancel = Some(out["cancel"].clone());
        }
        version = out["bullmq"].as_str().unwrap_or("?").to_owned();
    }
    let rounds = args.bullmq_rounds;
    let ratio = Summary::of(&ratios);
    let mut rows = vec![
        Row::summary(
            "bullmq",
            &format!("bullmq {version} noop add -> completed, end to end"),
            "jobs/s",
            Summary::of(&bull_rates),
        ),
        Row::summary(
            "bullmq",
            "lro noop submit -> done, end to end (same rounds)",
            "ops/s",
            Summary::of(&lro_rates),
        )
        .compared(
            ratio.p50,
            &format!(
                "lro / bullmq >= 1.0 (median of {rounds} interleaved rounds; min {:.2}, max {:.2})",
                ratio.min, ratio.max
            ),
        ),
    ];
    rows.extend(lro_cpu.rows("bullmq", "lro", Some("<= 250 us (ratio: / 250)")));
    rows.extend(bull_cpu.rows("bullmq", "bullmq", None));
    if let Some(c) = cancel {
        let s = Summary {
            n: c["n"].as_u64().unwrap_or(0) as usize,
            p50: f(&c["p50_ms"]),
            p99: f(&c["p99_ms"]),
            min: f(&c["min_ms"]),
            max: f(&c["max_ms"]),
        };
        let mut row = Row::summary(
            "bullmq",
            "bullmq cancel relay: publish -> processor aborted",
            "ms",
            s,
        );
        if let Some(lro) = lro_token_p50 {
            row = row.compared(lro / s.p50, "lro p50 (cancel -> token) / bullmq p50");
        }
        rows.push(row);
    }
    Ok(rows)
}

pub(crate) fn f(x: &Value) -> f64 {
    x.as_f64().unwrap_or(f64::NAN)
}

/// lro's throughput run of `--bullmq-ops` noops submitted `how`, with every process's CPU per job
/// recorded in `table`; returns the submit rate and the end-to-end rate, ops/s.
pub(crate) async fn lro_round(
    args: &Args,
    redis: u32,
    rabbitmq: u32,
    table: &mut CpuTable,
    how: Submitting,
) -> anyhow::Result<(f64, f64)> {
    let procs = Procs::start("bench", args.workers, 256).await?;
    let mut watch: Vec<(String, u32)> = Vec::new();
    watch.extend(procs.api_pid().map(|p| ("lro-api".to_owned(), p)));
    for (i, p) in procs.worker_pids().into_iter().enumerate() {
        watch.push((format!("lro-worker {}", i + 1), p));
    }
    watch.push(("redis-server".to_owned(), redis));
    watch.push(("rabbitmq (beam.smp)".to_owned(), rabbitmq));
    watch.push(("lro-bench (the clients)".to_owned(), std::process::id()));
    let pids: Vec<u32> = watch.iter().map(|(_, p)| *p).collect();
    let measured = noops(args, &procs, args.bullmq_ops, &pids, how).await;
    procs.stop().await;
    let m = measured?;
    for ((name, _), ns) in watch.iter().zip(&m.cpu_ns) {
        table.add(name, ns / 1000.0 / m.total as f64);
    }
    Ok((m.total as f64 / m.submit_secs, m.total as f64 / m.e2e_secs))
}

/// One run of `tests/bullmq/run.sh`, adding one job at a time (`bulk` 0) from `--clients` loops or
/// `bulk` at a time with `addBulk` from [`bulk::CLIENTS`] loops; its JSON line.
pub(crate) async fn bullmq_round(
    args: &Args,
    redis: u32,
    cancels: usize,
    bulk: usize,
) -> anyhow::Result<Value> {
    let inflight = if bulk > 0 {
        crate::bulk::CLIENTS
    } else {
        args.clients
    };
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/bullmq/run.sh");
    let out = tokio::process::Command::new("bash")
        .arg(script)
        .args(["--ops", &args.bullmq_ops.to_string()])
        .args(["--inflight", &inflight.to_string()])
        .args(["--bulk", &bulk.to_string()])
        .args(["--workers", &args.workers.to_string()])
        .args(["--concurrency", &args.bullmq_concurrency.to_string()])
        .args(["--cancels", &cancels.to_string()])
        .args(["--redis-url", &format!("redis://127.0.0.1:{REDIS_PORT}")])
        .args(["--redis-pid", &redis.to_string()])
        .stderr(std::process::Stdio::inherit())
        .output()
        .await
        .context("cannot run the bullmq benchmark")?;
    if !out.status.success() {
        bail!("bullmq benchmark failed: {}", out.status);
    }
    let line = out
        .stdout
        .rsplit(|&b| b == b'\n')
        .find(|l| !l.is_empty())
        .context("no output from the bullmq benchmark")?;
    Ok(serde_json::from_slice(line)?)
}
