//! The admin listener (`LRO_ADMIN_ADDR`) of the api and of workers: `/livez`, `/readyz` naming
//! what is missing while Redis or RabbitMQ is cut (through a proxy the test owns) or while a worker
//! drains, and `/metrics` in the Prometheus text format, whose figures move by exactly what the
//! test did — per component, though all of them share this process.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use lro_worker::{Worker, WorkerConfig};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::harness::{Env, Probe, eventually, name_of, state_of};
use crate::proxy::Proxy;

const ADMIN: &str = "127.0.0.1:0";

/// An api with its admin listener on a free port.
async fn env_with(configure: impl FnOnce(&mut lro_api::ApiConfig)) -> Env {
    Env::start_with(|c| {
        c.admin_addr = Some(ADMIN.into());
        configure(c);
    })
    .await
}

/// Starts a worker with an admin listener; returns its admin address.
async fn admin_worker(
    env: &mut Env,
    kinds: lro_worker::Kinds,
    configure: impl FnOnce(&mut WorkerConfig),
) -> SocketAddr {
    let mut config = WorkerConfig::new(env.sys.connections());
    config.admin_addr = Some(ADMIN.into());
    configure(&mut config);
    let worker = env
        .sys
        .add_worker_with(kinds, config)
        .await
        .expect("worker starts");
    worker.admin_addr().expect("admin listener")
}

fn api_admin(env: &Env) -> SocketAddr {
    env.sys.admin_addr.expect("api admin listener")
}

/// `GET http://addr/path`: status and body.
async fn admin_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let reply = reqwest::Client::new()
        .get(format!("http://{addr}{path}"))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .expect("admin answers");
    let status = reply.status().as_u16();
    (status, reply.text().await.expect("body"))
}

/// `/readyz`: status and what it says is missing.
async fn readyz(addr: SocketAddr) -> (u16, Vec<String>) {
    let (status, body) = admin_get(addr, "/readyz").await;
    let body: Value = serde_json::from_str(&body).expect("readyz JSON");
    let ready = body["ready"].as_bool().expect("ready");
    assert_eq!(ready, status == 200, "{status} {body}");
    let missing = body["missing"]
        .as_array()
        .map(|m| {
            m.iter()
                .map(|v| v.as_str().expect("name").to_owned())
                .collect()
        })
        .unwrap_or_default();
    if ready {
        assert_eq!(body, json!({ "ready": true }));
    }
    (status, missing)
}

/// Waits until `/readyz` at `addr` answers `status` with exactly `missing` among its names.
async fn ready_becomes(addr: SocketAddr, status: u16, missing: &[&str]) -> Vec<String> {
    let what = format!("readyz {status} naming {missing:?}");
    eventually(&what, || async {
        let (s, m) = readyz(addr).await;
        (s == status && missing.iter().all(|n| m.iter().any(|x| x == n))).then_some(m)
    })
    .await
}

/// One sample of the Prometheus text format.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

fn parse(text: &str) -> Vec<Sample> {
    let mut samples = Vec::new();
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("sample line");
        let value: f64 = value.parse().expect("sample value");
        let (name, labels) = match series.split_once('{') {
            None => (series, BTreeMap::new()),
            Some((name, rest)) => {
                let rest = rest.strip_suffix('}').expect("closing brace");
                let labels = rest
                    .split("\",")
                    .filter(|p| !p.is_empty())
                    .map(|p| {
                        let (k, v) = p.split_once("=\"").expect("label");
                        (k.to_owned(), v.trim_end_matches('"').to_owned())
                    })
                    .collect();
                (name, labels)
            }
        };
        samples.push(Sample {
            name: name.to_owned(),
            labels,
            value,
        });
    }
    samples
}

/// The component's metrics, parsed.
async fn metrics(addr: SocketAddr) -> Vec<Sample> {
    let (status, text) = admin_get(addr, "/metrics").await;
    assert_eq!(status, 200, "{text}");
    parse(&text)
}

/// The sum of the samples named `name` whose labels include `labels`.
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == name)
        .filter(|s| {
            labels
                .iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
        .sum()
}

/// Waits until the metric at `addr` reaches `want` (figures move after the answer a client saw,
/// e.g. a worker counts an attempt once it has settled it).
async fn metric_becomes(addr: SocketAddr, name: &str, labels: &[(&str, &str)], want: f64) {
    let what = format!("{name}{labels:?} = {want}");
    eventually(&what, || async {
        let got = value(&metrics(addr).await, name, labels);
        assert!(got <= want, "{what}: got {got}");
        (got == want).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn livez_and_readyz_answer_for_api_and_worker() {
    let mut env = env_with(|_| {}).await;
    let worker = admin_worker(&mut env, lro_worker::Kinds::builtin(), |_| {}).await;
    for addr in [api_admin(&env), worker] {
        let (status, body) = admin_get(addr, "/livez").await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(readyz(addr).await, (200, vec![]));
        let (status, _) = admin_get(addr, "/v1/operations").await;
        assert_eq!(status, 404, "the admin listener serves no operations");
        // Both run a reaper, and show its actions from the start.
        let m = metrics(addr).await;
        let actions: Vec<&str> = m
            .iter()
            .filter(|s| s.name == "lro_reaper_actions_total")
            .map(|s| s.labels["action"].as_str())
            .collect();
        assert_eq!(actions.len(), 4, "{actions:?}");
        assert_eq!(value(&m, "lro_reaper_actions_total", &[]), 0.0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_names_redis_while_it_is_cut_and_recovers() {
    let proxy = Proxy::start("127.0.0.1:6379").await;
    let redis = format!("redis://{}", proxy.addr);
    let mut env = env_with(|c| c.connections.redis_url = redis.clone()).await;
    let worker = admin_worker(&mut env, lro_worker::Kinds::builtin(), |c| {
        c.connections.redis_url = redis.clone();
    })
    .await;
    let api = api_admin(&env);
    for addr in [api, worker] {
        ready_becomes(addr, 200, &[]).await;
    }
    proxy.cut();
    for addr in [api, worker] {
        let missing = ready_becomes(addr, 503, &["redis"]).await;
        assert_eq!(missing, ["redis"], "only redis is missing");
        // Still alive: an orchestrator must not restart it for an outage elsewhere.
        assert_eq!(admin_get(addr, "/livez").await.0, 200);
    }
    proxy.restore();
    for addr in [api, worker] {
        ready_becomes(addr, 200, &[]).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_names_rabbitmq_while_it_is_cut_and_recovers() {
    let proxy = Proxy::start("127.0.0.1:5672").await;
    let amqp = format!("amqp://guest:guest@{}/%2f", proxy.addr);
    let mut env = env_with(|c| c.connections.amqp_url = amqp.clone()).await;
    let worker = admin_worker(&mut env, lro_worker::Kinds::builtin(), |c| {
        c.connections.amqp_url = amqp.clone();
    })
    .await;
    let api = api_admin(&env);
    for addr in [api, worker] {
        ready_becomes(addr, 200, &[]).await;
    }
    proxy.cut();
    let missing = ready_becomes(api, 503, &["rabbitmq"]).await;
    assert_eq!(missing, ["rabbitmq"]);
    // A worker without its broker is not consuming either.
    let missing = ready_becomes(worker, 503, &["rabbitmq", "consuming"]).await;
    assert!(!missing.iter().any(|m| m == "redis"), "{missing:?}");
    proxy.restore();
    for addr in [api, worker] {
        ready_becomes(addr, 200, &[]).await;
    }
    // And it works again: a job runs.
    let name = name_of(&env.api.submit("", "noop", json!({})).await);
    assert_eq!(state_of(&env.api.done(&name).await), "SUCCEEDED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_worker_says_so_until_it_exits() {
    let env = env_with(|_| {}).await;
    let probe = Probe::default();
    let shutdown = CancellationToken::new();
    let mut config = WorkerConfig::new(env.sys.connections());
    config.admin_addr = Some(ADMIN.into());
    config.shutdown_grace = Duration::from_secs(60);
    let worker = Worker::start(config, probe.kinds(), shutdown.clone())
        .await
        .expect("worker starts");
    let addr = worker.admin_addr().expect("admin listener");
    let running = name_of(&env.api.submit("", "gate", json!({})).await);
    probe.started(&running).await;
    ready_becomes(addr, 200, &[]).await;

    shutdown.cancel();
    // Draining while its job runs on (the grace is long): not ready, and says why.
    let missing = ready_becomes(addr, 503, &["draining"]).await;
    assert!(missing.iter().any(|m| m == "consuming"), "{missing:?}");
    assert_eq!(admin_get(addr, "/livez").await.0, 200);

    probe.release(&running);
    assert_eq!(state_of(&env.api.done(&running).await), "SUCCEEDED");
    tokio::time::timeout(Duration::from_secs(20), worker.wait())
        .await
        .expect("worker exits")
        .expect("cleanly");
    // Exited: the listener is gone.
    let gone = reqwest::Client::new()
        .get(format!("http://{addr}/livez"))
        .timeout(Duration::from_secs(2))
        .send()
        .await;
    assert!(gone.is_err(), "{gone:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_exactly_what_each_component_did() {
    let mut env = env_with(|_| {}).await;
    let api = api_admin(&env);
    // Before any worker: a cancel of a queued operation, and of a kind that cannot be cancelled.
    let queued = name_of(&env.api.submit("", "noop", json!({})).await);
    assert_eq!(env.api.cancel(&queued).await.ok(), json!({}));
    let stubborn = name_of(
        &env.api
            .submit("", "uninterruptible", json!({"duration": "1ms"}))
            .await,
    );
    env.api.cancel(&stubborn).await.error(501, "UNIMPLEMENTED");
    env.api
        .cancel("operations/0190a9c8-0000-7000-8000-000000000000")
        .await
        .error(404, "NOT_FOUND");

    let probe = Probe::default();
    let w1 = admin_worker(&mut env, probe.kinds(), |_| {}).await;
    let w2 = admin_worker(&mut env, probe.kinds(), |_| {}).await;
    let mut noops = Vec::new();
    for _ in 0..3 {
        noops.push(name_of(&env.api.submit("", "noop", json!({})).await));
    }
    for name in &noops {
        assert_eq!(state_of(&env.api.done(name).await), "SUCCEEDED");
    }
    assert_eq!(state_of(&env.api.done(&stubborn).await), "SUCCEEDED");
    // A running job cancelled, then once more when it is done.
    let running = name_of(&env.api.submit("", "gate", json!({})).await);
    probe.started(&running).await;
    assert_eq!(env.api.cancel(&running).await.ok(), json!({}));
    assert_eq!(state_of(&env.api.done(&running).await), "CANCELLED");
    assert_eq!(env.api.cancel(&running).await.ok(), json!({}));

    let m = metrics(api).await;
    let submitted = |kind| value(&m, "lro_operations_submitted_total", &[("kind", kind)]);
    assert_eq!(submitted("noop"), 4.0);
    assert_eq!(submitted("uninterruptible"), 1.0);
    assert_eq!(submitted("gate"), 1.0);
    let cancels = |outcome| value(&m, "lro_cancel_requests_total", &[("outcome", outcome)]);
    assert_eq!(cancels("cancelled"), 1.0);
    assert_eq!(cancels("not_cancellable"), 1.0);
    assert_eq!(cancels("not_found"), 1.0);
    assert_eq!(cancels("cancelling"), 1.0);
    assert_eq!(cancels("already_done"), 1.0);
    assert_eq!(cancels("denied"), 0.0);
    let rest = [("transport", "rest"), ("method", "submit"), ("code", "OK")];
    assert_eq!(value(&m, "lro_request_duration_seconds_count", &rest), 6.0);
    assert!(
        value(&m, "lro_request_duration_seconds_bucket", &[("le", "+Inf")]) > 0.0,
        "histograms have buckets"
    );
    let not_found = [("method", "cancel"), ("code", "NOT_FOUND")];
    assert_eq!(
        value(&m, "lro_request_duration_seconds_count", &not_found),
        1.0
    );

    // The workers: three noops, one uninterruptible and one gate between them, added up.
    let finished = |kind: &'static str, outcome: &'static str, want: f64| async move {
        let labels = [("kind", kind), ("outcome", outcome)];
        eventually("workers' figures add up", || async {
            let got = value(&metrics(w1).await, "lro_jobs_finished_total", &labels)
                + value(&metrics(w2).await, "lro_jobs_finished_total", &labels);
            assert!(got <= want, "{kind} {outcome}: {got} > {want}");
            (got == want).then_some(())
        })
        .await;
    };
    finished("noop", "succeeded", 3.0).await;
    finished("uninterruptible", "succeeded", 1.0).await;
    finished("gate", "cancelled", 1.0).await;
    finished("noop", "failed", 0.0).await;
    let (m1, m2) = (metrics(w1).await, metrics(w2).await);
    let both = |name, labels: &[(&str, &str)]| value(&m1, name, labels) + value(&m2, name, labels);
    assert_eq!(
        both("lro_job_duration_seconds_count", &[("kind", "noop")]),
        3.0
    );
    assert_eq!(
        both("lro_queue_wait_seconds_count", &[("kind", "noop")]),
        3.0
    );
    assert_eq!(
        both(
            "lro_queue_wait_seconds_bucket",
            &[("kind", "noop"), ("le", "+Inf")]
        ),
        3.0
    );
    assert_eq!(both("lro_cancel_latency_seconds_count", &[]), 1.0);
    assert_eq!(both("lro_jobs_running", &[]), 0.0);
    // The worker that ran the gate job counted its cancel latency; the other did not.
    let gated = if value(&m1, "lro_cancel_latency_seconds_count", &[]) == 1.0 {
        w1
    } else {
        w2
    };
    metric_becomes(
        gated,
        "lro_jobs_finished_total",
        &[("kind", "gate"), ("outcome", "cancelled")],
        1.0,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_running_is_a_gauge_of_the_jobs_in_flight() {
    let mut env = env_with(|_| {}).await;
    let probe = Probe::default();
    let worker = admin_worker(&mut env, probe.kinds(), |_| {}).await;
    let a = name_of(&env.api.submit("", "gate", json!({})).await);
    let b = name_of(&env.api.submit("", "gate", json!({})).await);
    probe.started(&a).await;
    probe.started(&b).await;
    metric_becomes(worker, "lro_jobs_running", &[], 2.0).await;
    probe.release(&a);
    probe.release(&b);
    for name in [&a, &b] {
        assert_eq!(state_of(&env.api.done(name).await), "SUCCEEDED");
    }
    eventually("no job running", || async {
        (value(&metrics(worker).await, "lro_jobs_running", &[]) == 0.0).then_some(())
    })
    .await;
    let m = metrics(worker).await;
    assert_eq!(
        value(
            &m,
            "lro_jobs_finished_total",
            &[("kind", "gate"), ("outcome", "succeeded")]
        ),
        2.0
    );
    // Every outcome of every kind it runs is there from the start, at zero.
    assert_eq!(
        m.iter()
            .filter(|s| s.name == "lro_jobs_finished_total" && s.labels["kind"] == "noop")
            .count(),
        5
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_cancels_count_as_denied_and_grpc_requests_are_timed() {
    let creds = crate::auth::Creds::new();
    let env = creds.env(|c| c.admin_addr = Some(ADMIN.into())).await;
    let api = api_admin(&env);
    let name = "operations/0190a9c8-0000-7000-8000-000000000000";
    // No credentials, then a key whose scopes do not include cancel.
    env.api.cancel(name).await.error(401, "UNAUTHENTICATED");
    env.api
        .with_header("x-goog-api-key", "key-reader")
        .cancel(name)
        .await
        .error(403, "PERMISSION_DENIED");
    let mut grpc = crate::grpc::Grpc::connect(&env).await;
    let refused = grpc
        .ops
        .cancel_operation(lro_api::pb::google::longrunning::CancelOperationRequest {
            name: name.into(),
        })
        .await
        .expect_err("unauthenticated");
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);

    let m = metrics(api).await;
    assert_eq!(
        value(&m, "lro_cancel_requests_total", &[("outcome", "denied")]),
        3.0
    );
    assert_eq!(
        value(&m, "lro_cancel_requests_total", &[("outcome", "not_found")]),
        0.0
    );
    let grpc_cancel = [
        ("transport", "grpc"),
        ("method", "cancel"),
        ("code", "UNAUTHENTICATED"),
    ];
    assert_eq!(
        value(&m, "lro_request_duration_seconds_count", &grpc_cancel),
        1.0
    );
    let rest_denied = [
        ("transport", "rest"),
        ("method", "cancel"),
        ("code", "PERMISSION_DENIED"),
    ];
    assert_eq!(
        value(&m, "lro_request_duration_seconds_count", &rest_denied),
        1.0
    );
}

/// `/readyz` of a process that may not be listening yet: `None` until it answers.
async fn try_readyz(addr: SocketAddr) -> Option<u16> {
    let reply = reqwest::Client::new()
        .get(format!("http://{addr}/readyz"))
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .ok()?;
    Some(reply.status().as_u16())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_makes_the_real_worker_not_ready_until_it_exits() {
    let env = Env::start().await;
    // A free port picked first (the process logs what it bound, but its output is not kept).
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port");
    let admin = addr.to_string();
    let vars = [
        ("LRO_ADMIN_ADDR", admin.as_str()),
        ("LRO_SHUTDOWN_GRACE", "60s"),
    ];
    let mut child = env.worker_process("probed", 2, &vars);
    eventually("worker ready", || async {
        (try_readyz(addr).await == Some(200)).then_some(())
    })
    .await;
    let input = json!({ "duration": "60s", "steps": 600 });
    let name = name_of(&env.api.submit("", "sleep", input).await);
    env.api.running(&name).await;
    metric_becomes(addr, "lro_jobs_running", &[], 1.0).await;

    let pid = child.id().expect("child running").to_string();
    let status = std::process::Command::new("kill")
        .args(["-s", "TERM", "--", &pid])
        .status()
        .expect("kill runs");
    assert!(status.success());
    ready_becomes(addr, 503, &["draining"]).await;
    assert_eq!(admin_get(addr, "/livez").await.0, 200);

    // Still draining, it still takes cancels: the job ends CANCELLED and the worker exits.
    assert_eq!(env.api.cancel(&name).await.ok(), json!({}));
    assert_eq!(state_of(&env.api.done(&name).await), "CANCELLED");
    let exit = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .expect("worker exits")
        .expect("exit status");
    assert!(exit.success(), "{exit}");
    assert_eq!(
        try_readyz(addr).await,
        None,
        "the listener went with the process"
    );
}
