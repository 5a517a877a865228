//! The `scale` scenario: N long `sleep`s in flight on two worker processes — memory per operation,
//! the Redis commands per second they cost while they run (liveness is one heartbeat per worker,
//! so this should not grow with N), and cancel → CANCELLED at that load.

use super::*;

/// `n` long sleeps in flight on two worker processes: the workers' resident memory per operation
/// (growth over an idle worker), and 100 cancels → CANCELLED at that load.
pub(crate) async fn scale(args: &Args, n: usize) -> anyhow::Result<Vec<Row>> {
    let procs = Procs::start("bench", 2, n / 2 + 64).await?;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.clients)
        .build()?;
    warm_up(&http, &procs).await?;
    let idle = workers_rss(&procs)?;
    // One step: no progress report while they run, so what Redis does is liveness alone (a
    // job's own progress costs a write per report, at most four a second: its own data).
    let body = json!({ "kind": "sleep", "input": { "duration": "600s", "steps": 1 } });
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
    let per_second = redis_commands_per_second(REDIS_WINDOW).await?;

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
            &label("Redis commands/s while they run (all processes)"),
            "cmd/s",
            total,
            per_second,
        )
        .compared(per_second / 500.0, "<= 500/s at 20,000"),
        Row::value(
            "scale",
            &label("Redis commands/s per running job"),
            "cmd/s",
            total,
            per_second / total as f64,
        ),
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

/// How long the Redis command rate is sampled while the jobs run.
const REDIS_WINDOW: Duration = Duration::from_secs(10);

/// Commands per second the (shared, otherwise idle) Redis processes over `window`, from
/// `INFO stats`' `total_commands_processed`, less the two `INFO` calls themselves.
async fn redis_commands_per_second(window: Duration) -> anyhow::Result<f64> {
    let client = redis::Client::open("redis://127.0.0.1:6379")?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let mut processed = async || -> anyhow::Result<u64> {
        let info: String = redis::cmd("INFO")
            .arg("stats")
            .query_async(&mut conn)
            .await?;
        info.lines()
            .find_map(|l| l.strip_prefix("total_commands_processed:"))
            .and_then(|v| v.trim().parse().ok())
            .context("no total_commands_processed in INFO stats")
    };
    let before = processed().await?;
    let t0 = Instant::now();
    tokio::time::sleep(window).await;
    let after = processed().await?;
    Ok(after.saturating_sub(before + 1) as f64 / t0.elapsed().as_secs_f64())
}

/// How many of the namespace's operations are RUNNING (all pages).
pub(crate) async fn running(http: &reqwest::Client, procs: &Procs) -> anyhow::Result<usize> {
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
pub(crate) fn workers_rss(procs: &Procs) -> anyhow::Result<u64> {
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
