//! Retryable failures run again after a backoff, up to the most attempts an operation gets;
//! permanent failures and cancels never do; job messages no worker can act on are dead-lettered.

use std::time::Duration;

use lapin::options::BasicGetOptions;
use lapin::types::AMQPValue;
use lro_common::broker::{self, Broker};
use lro_common::operation::MAX_ATTEMPTS;
use lro_common::status::Code;
use lro_common::tls::ClientTls;
use lro_worker::{JobError, Kinds};
use serde_json::{Value, json};

use crate::harness::{Env, eventually, name_of, new_operation, state_of, store};

/// Built-in kinds plus `flaky`: fails retryably (UNAVAILABLE) on its first `failures` attempts.
fn kinds() -> Kinds {
    Kinds::builtin().kind("flaky", |input: Value, ctx| async move {
        let failures = input["failures"].as_u64().unwrap_or(0);
        if u64::from(ctx.attempt()) <= failures {
            return Err(JobError::retry(
                Code::Unavailable,
                format!("attempt {}", ctx.attempt()),
            ));
        }
        Ok(json!({ "attempt": ctx.attempt() }))
    })
}

async fn start(backoff: Duration) -> Env {
    let mut env = Env::start().await;
    env.worker_with(kinds(), |c| {
        c.retry_backoff = backoff;
        // A short lease makes the worker's reaper tick often (a quarter lease), which publishes
        // retries when their backoff is over.
        c.lease = Duration::from_millis(1200);
    })
    .await;
    env
}

#[tokio::test]
async fn a_retryable_failure_runs_again_after_a_backoff() {
    let env = start(Duration::from_millis(50)).await;
    let name = name_of(&env.api.submit("", "flaky", json!({ "failures": 2 })).await);
    let done = env.api.done(&name).await;
    assert_eq!(state_of(&done), "SUCCEEDED", "{done}");
    assert_eq!(done["response"]["value"], json!({ "attempt": 3 }));
    assert_eq!(done["metadata"]["attempt"], 3);
    assert_eq!(
        done["metadata"]["lastAttemptError"],
        json!({ "code": 14, "message": "attempt 2" })
    );
}

#[tokio::test]
async fn retries_end_at_the_most_attempts_and_permanent_failures_never_retry() {
    let env = start(Duration::from_millis(20)).await;
    let always = json!({ "code": 14, "message": "down", "retryable": true });
    let name = name_of(&env.api.submit("", "fail", always).await);
    let done = env.api.done(&name).await;
    assert_eq!(
        done["error"],
        json!({ "code": 14, "message": "down" }),
        "{done}"
    );
    assert_eq!(done["metadata"]["attempt"], MAX_ATTEMPTS);

    let once = json!({ "code": 14, "message": "down" });
    let name = name_of(&env.api.submit("", "fail", once).await);
    let done = env.api.done(&name).await;
    assert_eq!(done["error"]["code"], 14, "{done}");
    assert_eq!(done["metadata"]["attempt"], 1);
}

#[tokio::test]
async fn a_cancel_during_the_backoff_ends_it_and_it_never_runs_again() {
    let env = start(Duration::from_secs(600)).await;
    let name = name_of(&env.api.submit("", "flaky", json!({ "failures": 1 })).await);
    let waiting = eventually("queued for a retry", || async {
        let op = env.api.get(&name).await.ok();
        (state_of(&op) == "QUEUED" && op["metadata"]["attempt"] == 1).then_some(op)
    })
    .await;
    assert!(
        waiting["metadata"]["nextAttemptTime"].is_string(),
        "{waiting}"
    );
    assert_eq!(waiting["metadata"]["lastAttemptError"]["code"], 14);

    env.api.cancel(&name).await.ok();
    let done = env.api.get(&name).await.ok();
    assert_eq!(state_of(&done), "CANCELLED", "{done}");
    assert_eq!(done["metadata"]["attempt"], 1);
}

#[tokio::test]
async fn messages_no_worker_can_act_on_are_dead_lettered() {
    let env = start(Duration::from_secs(1)).await;
    let conns = env.sys.connections();
    let topology = conns.topology();
    let tls = ClientTls::system();
    let broker = Broker::connect(&conns.amqp_url, &tls, topology.clone())
        .await
        .expect("broker");

    // Garbage on the jobs queue, as a foreign producer might send.
    let connection = broker::connect(&conns.amqp_url, &tls).await.expect("amqp");
    let channel = connection.create_channel().await.expect("channel");
    channel
        .basic_publish(
            "".into(),
            topology.jobs_queue().as_str().into(),
            Default::default(),
            b"not a job",
            Default::default(),
        )
        .await
        .expect("publish");

    // An operation of a kind no worker here runs.
    let store = store(&env).await;
    let op = new_operation("rare");
    let name = op.name.clone();
    store.create(&op, &[]).await.expect("create");
    broker.publish_job(&name, None).await.expect("publish");

    let done = env.api.done(name.as_str()).await;
    assert_eq!(done["error"]["code"], 12, "{done}");
    assert!(
        done["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("rare")),
        "{done}"
    );

    // Both are in the dead-letter queue, each with its reason; the worker goes on working.
    let mut reasons = Vec::new();
    while reasons.len() < 2 {
        let got = eventually("a dead letter", || async {
            channel
                .basic_get(
                    topology.dead_queue().as_str().into(),
                    BasicGetOptions { no_ack: true },
                )
                .await
                .expect("get")
        })
        .await;
        let reason = got
            .delivery
            .properties
            .headers()
            .as_ref()
            .and_then(|h| h.inner().get("x-lro-reason").cloned());
        let Some(AMQPValue::LongString(reason)) = reason else {
            panic!("no reason on {:?}", got.delivery.properties);
        };
        reasons.push((
            String::from_utf8_lossy(&got.delivery.data).into_owned(),
            reason.to_string(),
        ));
    }
    // Ordered: the undecodable one ("n…") before the operation's message ("{…").
    reasons.sort();
    assert_eq!(reasons[0].0, "not a job", "{reasons:?}");
    assert!(reasons[0].1.contains("undecodable"), "{reasons:?}");
    assert!(reasons[1].0.contains(name.as_str()), "{reasons:?}");
    assert!(reasons[1].1.contains("rare"), "{reasons:?}");
    let next = name_of(&env.api.submit("", "noop", json!({})).await);
    assert_eq!(state_of(&env.api.done(&next).await), "SUCCEEDED");
}
