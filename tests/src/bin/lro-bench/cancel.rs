//! The `floor` and `cancel` scenarios' measurements: one Redis round trip and one AMQP publish →
//! consume with the same client crates, and cancel → token / → CANCELLED on in-process workers
//! (also used by `fanout` and `queues`).

use super::*;

pub(crate) async fn redis_floor(n: usize) -> anyhow::Result<Summary> {
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

pub(crate) async fn amqp_floor(n: usize) -> anyhow::Result<Summary> {
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
pub(crate) struct Cancels {
    /// Cancel → the job observes its token, ms.
    pub(crate) token: Summary,
    /// Cancel → the operation reads back CANCELLED, ms.
    pub(crate) cancelled: Summary,
    /// Cancel → the api's answer to it, ms (recorded in Redis, inbox written, message published).
    pub(crate) answered: Summary,
    /// Cancel messages the workers received, per cancel.
    pub(crate) deliveries: f64,
}

/// `n` jobs running on `workers` in-process workers, each cancelled over HTTP in turn.
pub(crate) async fn cancel_latency(n: usize, workers: usize) -> anyhow::Result<Cancels> {
    cancel_latency_on(n, workers, |_| {}).await
}

/// [`cancel_latency`] on the connections `configure` sets (another broker, queue type).
pub(crate) async fn cancel_latency_on(
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
    let (mut to_token, mut to_cancelled, mut to_answer) = (Vec::new(), Vec::new(), Vec::new());
    for name in &names {
        let t0 = Instant::now();
        let resp = http
            .post(system.url(&format!("{name}:cancel")))
            .send()
            .await?;
        if !resp.status().is_success() {
            bail!("cancel of {name} answered {}", resp.status());
        }
        to_answer.push(ms(t0.elapsed()));
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
        answered: Summary::of(&to_answer),
        deliveries: received as f64 / n as f64,
    })
}

pub(crate) async fn state(
    http: &reqwest::Client,
    system: &System,
    name: &str,
) -> anyhow::Result<String> {
    let op: Value = http.get(system.url(name)).send().await?.json().await?;
    Ok(op["metadata"]["state"]
        .as_str()
        .unwrap_or_default()
        .to_owned())
}
