//! The `celery` scenario: Celery 5 (`tests/celery/`, in a virtualenv it makes) on the same
//! RabbitMQ and Redis: `noop` throughput, and its cooperative abort (`AbortableTask`) of running
//! tasks, each beside lro's figure from this run.

use anyhow::{Context, bail};
use lro_tests::Summary;
use serde_json::Value;

use crate::{Args, Row};

/// Runs `tests/celery/run.sh` and sets Celery's figures beside lro's from this run.
pub(crate) async fn celery(
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
