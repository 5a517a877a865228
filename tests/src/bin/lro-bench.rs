//! `lro-bench`: measures the running system against the machine's floor, in one run.
//!
//! Scenario "cancel": N `sleep`-like jobs run on one worker; each is cancelled over HTTP in turn,
//! timing (a) until the job observes its token and (b) until the operation reads back CANCELLED.
//! The floor is measured first with the same client crates: one Redis round trip and one AMQP
//! publish → consume.
//!
//! Usage: `cargo run --release -p lro-tests --bin lro-bench -- [N]` (default 100).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lro_tests::{Summary, System};
use lro_worker::{JobError, Kinds};
use serde_json::{Value, json};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let n: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()
        .context("N must be a number")?
        .unwrap_or(100);
    let redis = redis_floor(1000).await?;
    let amqp = amqp_floor(1000).await?;
    let (token, cancelled) = cancel_latency(n).await?;
    let floor = redis.p50 + amqp.p50;
    println!(
        "{:<44} {:>5} {:>9} {:>9} {:>9} {:>9}",
        "figure (ms)", "n", "p50", "p99", "min", "max"
    );
    for (label, s) in [
        ("floor: redis round trip (PING)", redis),
        ("floor: amqp publish -> consume", amqp),
        ("cancel -> job observes its token", token),
        ("cancel -> operation reads CANCELLED", cancelled),
    ] {
        println!(
            "{label:<44} {:>5} {:>9.3} {:>9.3} {:>9.3} {:>9.3}",
            s.n, s.p50, s.p99, s.min, s.max
        );
    }
    println!(
        "ratio p50 (token observed) / (redis + amqp floor) = {:.2}",
        token.p50 / floor
    );
    println!(
        "ratio p50 (CANCELLED read back) / (redis + amqp floor) = {:.2}",
        cancelled.p50 / floor
    );
    Ok(())
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

/// Returns (cancel → token observed, cancel → CANCELLED read back), in ms.
async fn cancel_latency(n: usize) -> anyhow::Result<(Summary, Summary)> {
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
    let mut system = System::start("bench").await?;
    let concurrency = u16::try_from(n.max(1)).unwrap_or(u16::MAX);
    system.add_worker(kinds, concurrency).await?;
    let http = reqwest::Client::new();
    let mut names = Vec::with_capacity(n);
    for _ in 0..n {
        let op: Value = http
            .post(system.url("jobs"))
            .json(&json!({"kind": "bench-wait"}))
            .send()
            .await?
            .json()
            .await?;
        names.push(op["name"].as_str().context("no name")?.to_owned());
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
    Ok((Summary::of(&to_token), Summary::of(&to_cancelled)))
}

async fn state(http: &reqwest::Client, system: &System, name: &str) -> anyhow::Result<String> {
    let op: Value = http.get(system.url(name)).send().await?.json().await?;
    Ok(op["metadata"]["state"]
        .as_str()
        .unwrap_or_default()
        .to_owned())
}
