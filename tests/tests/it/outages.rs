//! RabbitMQ and Redis going away and coming back, seen through a proxy the test cuts: the api
//! answers 503 for what needs the missing service and keeps serving the rest, and api and worker
//! reconnect on their own — nothing accepted is lost, no cancel is lost.

use std::time::Duration;

use lro_worker::CancelReason;
use serde_json::json;

use crate::broker::PrivateRabbit;
use crate::harness::{DoneCounter, Env, Probe, eventually, name_of, state_of};
use crate::proxy::Proxy;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_outage_refuses_submits_and_a_cancel_sent_meanwhile_is_honoured() {
    let proxy = Proxy::start("127.0.0.1:5672").await;
    let amqp = format!("amqp://guest:guest@{}/%2f", proxy.addr);
    let mut env = Env::start_with(|c| c.connections.amqp_url = amqp.clone()).await;
    let probe = Probe::default();
    env.worker_with(probe.kinds(), |c| {
        c.connections.amqp_url = amqp.clone();
    })
    .await;

    let running = name_of(&env.api.submit("", "gate", json!({})).await);
    probe.started(&running).await;

    proxy.cut();
    // Submitting needs RabbitMQ: 503 in the envelope, and nothing is created.
    let reply = env
        .api
        .submit_with("", json!({ "kind": "noop", "requestId": "during" }))
        .await;
    reply.error(503, "UNAVAILABLE");
    let listed = env.api.list("operations", "").await.ok();
    assert_eq!(
        listed["operations"].as_array().map(Vec::len),
        Some(1),
        "{listed}"
    );
    // Reads and cancels need only Redis. The cancel's message cannot be delivered.
    assert_eq!(state_of(&env.api.get(&running).await.ok()), "RUNNING");
    let cancelled = std::time::Instant::now();
    assert_eq!(env.api.cancel(&running).await.ok(), json!({}));

    // The worker's heartbeat (every second, at the default configuration) finds the cancel in
    // its inbox while the broker is still away: the job stops, and its outcome needs only Redis.
    let seen = probe.until(&running, |s| s.stopped.is_some()).await;
    let took = cancelled.elapsed();
    assert_eq!(seen.stopped, Some(CancelReason::User));
    let done = env.api.done(&running).await;
    assert_eq!(state_of(&done), "CANCELLED", "{done}");
    eprintln!("a cancel whose message was dropped reached its job {took:?} after it was made");
    assert!(
        took <= Duration::from_secs(2),
        "cancel took {took:?} (goal: 2 s)"
    );

    proxy.restore();

    // The api reconnects too: a client retrying its submit (same request id) gets it accepted,
    // once, and the reconnected worker runs it.
    let accepted = eventually("submit accepted again", || async {
        let reply = env
            .api
            .submit_with("", json!({ "kind": "noop", "requestId": "during" }))
            .await;
        assert!(matches!(reply.status, 200 | 503), "{reply:?}");
        (reply.status == 200).then_some(reply.body)
    })
    .await;
    let done = env.api.done(&name_of(&accepted)).await;
    assert_eq!(state_of(&done), "SUCCEEDED", "{done}");
    let listed = env.api.list("operations", "").await.ok();
    assert_eq!(
        listed["operations"].as_array().map(Vec::len),
        Some(2),
        "{listed}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_answers_503_and_running_jobs_finish_after_it() {
    let proxy = Proxy::start("127.0.0.1:6379").await;
    let redis = format!("redis://{}", proxy.addr);
    let mut env = Env::start_with(|c| c.connections.redis_url = redis.clone()).await;
    let probe = Probe::default();
    env.worker_with(probe.kinds(), |c| {
        c.connections.redis_url = redis.clone();
    })
    .await;

    let running = name_of(&env.api.submit("", "gate", json!({})).await);
    probe.started(&running).await;

    proxy.cut();
    env.api.get(&running).await.error(503, "UNAVAILABLE");
    env.api
        .submit_with("", json!({ "kind": "noop" }))
        .await
        .error(503, "UNAVAILABLE");
    // The job finishes while Redis is away; its outcome is written once Redis is back.
    probe.release(&running);

    proxy.restore();
    let done = eventually("redis reachable again", || async {
        let reply = env.api.wait(&running, "1s").await;
        assert!(matches!(reply.status, 200 | 503), "{reply:?}");
        (reply.status == 200 && reply.body["done"] == true).then_some(reply.body)
    })
    .await;
    assert_eq!(state_of(&done), "SUCCEEDED", "{done}");
    assert_eq!(done["metadata"]["attempt"], 1);

    let next = name_of(&env.api.submit("", "noop", json!({})).await);
    assert_eq!(state_of(&env.api.done(&next).await), "SUCCEEDED");
}

/// Jepsen-style accounting (see the notes on faults): every submit lands in exactly one bucket —
/// accepted (2xx: must end in exactly one terminal state), or refused (503: must have left
/// nothing behind). Lost and unexpected must be zero.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_outage_under_load_loses_nothing_accepted() {
    const PER_PHASE: usize = 60;
    let proxy = Proxy::start("127.0.0.1:5672").await;
    let amqp = format!("amqp://guest:guest@{}/%2f", proxy.addr);
    let mut env = Env::start_with(|c| c.connections.amqp_url = amqp.clone()).await;
    let counter = DoneCounter::subscribe(&env).await;
    env.worker_with(lro_worker::Kinds::builtin(), |c| {
        c.connections.amqp_url = amqp.clone();
        c.concurrency = 16;
    })
    .await;

    // Submits in three phases — up, down, up again — four at a time, with short jobs running
    // throughout. After the outage a client retries a refused submit (same request id) until it
    // is accepted, as a client of a 503 should.
    let mut accepted = Vec::new();
    let mut refused = 0;
    for phase in 0..3 {
        match phase {
            1 => proxy.cut(),
            2 => proxy.restore(),
            _ => {}
        }
        for batch in 0..PER_PHASE / 4 {
            let submits = (0..4).map(|i| {
                let api = env.api.clone();
                let body = json!({
                    "kind": "sleep",
                    "input": { "duration": "0.05s", "steps": 1 },
                    "requestId": format!("p{phase}-{batch}-{i}"),
                });
                async move {
                    let mut refused = 0;
                    loop {
                        let reply = api.submit_with("", body.clone()).await;
                        match reply.status {
                            200 => return (Some(name_of(&reply.body)), refused),
                            503 => reply.error(503, "UNAVAILABLE"),
                            _ => panic!("unexpected answer: {reply:?}"),
                        }
                        refused += 1;
                        if phase != 2 {
                            return (None, refused);
                        }
                        assert!(refused < 1000, "never accepted again");
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            });
            for (name, r) in futures_util::future::join_all(submits).await {
                refused += r;
                accepted.extend(name);
            }
        }
    }

    // Every accepted operation ends, exactly once; nothing else exists.
    let mut retried = 0;
    for name in &accepted {
        let op = env.api.done(name).await;
        assert_eq!(state_of(&op), "SUCCEEDED", "{op}");
        if op["metadata"]["attempt"] != 1 {
            retried += 1;
        }
    }
    let listed = env.api.list_all("operations", "").await;
    assert_eq!(listed.len(), accepted.len(), "unexpected operations exist");
    let counts = counter.counts().await;
    for name in &accepted {
        assert_eq!(counts.get(name), Some(&1), "terminal writes of {name}");
    }
    assert!(refused > 0, "the outage refused nothing");
    assert!(
        accepted.len() >= 2 * PER_PHASE,
        "too few accepted: {}",
        accepted.len()
    );
    // The done channel also announces the records a refused submit took back.
    let terminal: usize = accepted.iter().filter_map(|n| counts.get(n)).sum();
    eprintln!(
        "rabbitmq outage under load: {} distinct requests, {} accepted, {refused} refusals (503, \
         each leaving nothing), {terminal} terminal writes, 0 lost, {retried} ran more than once",
        3 * PER_PHASE,
        accepted.len(),
    );
}

/// The broker itself crashes (`kill -9` of a private node) with a backlog of jobs, and restarts
/// from its disk: the jobs it had confirmed are still there, submits in between were refused, and
/// every accepted operation ends exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_crash_and_restart_with_a_backlog_loses_nothing_accepted() {
    let mut rabbit = PrivateRabbit::start("loopback_users = none", "").await;
    let amqp = rabbit.url();
    let mut env = Env::start_with(|c| c.connections.amqp_url = amqp.clone()).await;
    let counter = DoneCounter::subscribe(&env).await;
    env.worker_with(lro_worker::Kinds::builtin(), |c| {
        c.connections.amqp_url = amqp.clone();
        c.concurrency = 4;
    })
    .await;

    let sleep = |request: String| {
        json!({
            "kind": "sleep",
            "input": { "duration": "0.1s", "steps": 1 },
            "requestId": request,
        })
    };
    let mut accepted = Vec::new();
    for i in 0..40 {
        let op = env
            .api
            .submit_with("", sleep(format!("before-{i}")))
            .await
            .ok();
        accepted.push(name_of(&op));
    }

    rabbit.kill();
    for i in 0..10 {
        let reply = env.api.submit_with("", sleep(format!("down-{i}"))).await;
        reply.error(503, "UNAVAILABLE");
    }
    rabbit.up().await;
    for i in 0..10 {
        let op = eventually("submit accepted after the restart", || async {
            let reply = env.api.submit_with("", sleep(format!("after-{i}"))).await;
            assert!(matches!(reply.status, 200 | 503), "{reply:?}");
            (reply.status == 200).then_some(reply.body)
        })
        .await;
        accepted.push(name_of(&op));
    }

    for name in &accepted {
        let op = env.api.done(name).await;
        assert_eq!(state_of(&op), "SUCCEEDED", "{op}");
    }
    assert_eq!(
        env.api.list_all("operations", "").await.len(),
        accepted.len(),
        "unexpected operations exist"
    );
    let counts = counter.counts().await;
    for name in &accepted {
        assert_eq!(counts.get(name), Some(&1), "terminal writes of {name}");
    }
}
