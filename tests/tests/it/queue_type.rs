//! `LRO_QUEUE_TYPE`: the durable job queue is a quorum queue unless `classic` is asked for; both
//! run jobs and cancels; and a process pointed at a queue of the other type stops at start with
//! one line saying what to do — never a loop of refused declarations.

use lapin::options::QueueDeclareOptions;
use lapin::types::{AMQPValue, FieldTable};
use lro_common::topology::QueueType;
use serde_json::json;

use crate::harness::{DEADLINE, Env, Probe, name_of, state_of};

/// Declares `queue` as durable with `x-queue-type` = `queue_type`; the broker's 406 if it exists
/// with another type.
async fn declare_as(env: &Env, queue: &str, queue_type: &str) -> Result<(), lapin::Error> {
    let connections = env.sys.connections();
    let tls = connections.client_tls().expect("tls");
    let amqp = lro_common::broker::Nodes::parse(&connections.amqp_url)
        .expect("urls")
        .connect(&tls)
        .await
        .expect("amqp");
    let channel = amqp.create_channel().await.expect("channel");
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString(queue_type.into()),
    );
    let declared = channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            },
            args,
        )
        .await
        .map(|_| ());
    let _ = amqp.close(200, "checked".into()).await;
    declared
}

fn refused_as_other_type(declared: Result<(), lapin::Error>) {
    let e = declared.expect_err("declared with another type");
    assert!(e.to_string().contains("x-queue-type"), "{e}");
}

#[tokio::test]
async fn the_job_queue_is_quorum_by_default_and_classic_when_asked() {
    for (queue_type, name, other) in [
        (QueueType::Quorum, "quorum", "classic"),
        (QueueType::Classic, "classic", "quorum"),
    ] {
        let mut env = Env::start_with(|c| c.connections.queue_type = queue_type).await;
        let probe = Probe::default();
        env.worker_with(probe.kinds(), |c| c.connections.queue_type = queue_type)
            .await;
        let topology = env.sys.connections().topology();
        for queue in [topology.jobs_queue(), topology.dead_queue()] {
            declare_as(&env, &queue, name).await.expect("same type");
            refused_as_other_type(declare_as(&env, &queue, other).await);
        }

        // Jobs run and cancels reach them on either.
        let done = name_of(&env.api.submit("", "noop", json!({})).await);
        assert_eq!(state_of(&env.api.done(&done).await), "SUCCEEDED");
        let running = name_of(&env.api.submit("", "gate", json!({})).await);
        probe.started(&running).await;
        env.api.cancel(&running).await.ok();
        assert_eq!(state_of(&env.api.done(&running).await), "CANCELLED");
    }
}

#[tokio::test]
async fn a_queue_of_the_other_type_stops_the_process_with_one_clear_line() {
    let env = Env::start_with(|c| c.connections.queue_type = QueueType::Classic).await;
    let out = tokio::time::timeout(
        DEADLINE,
        tokio::process::Command::new(env!("CARGO_BIN_EXE_lro-test-api"))
            .env("LRO_NAMESPACE", &env.sys.namespace)
            .env("LRO_AMQP_URL", env.sys.connections().amqp_url)
            .env("LRO_HTTP_ADDR", "127.0.0.1:0")
            .env("LRO_GRPC_ADDR", "127.0.0.1:0")
            .env("LRO_ADMIN_ADDR", "127.0.0.1:0")
            .env("RUST_LOG", "warn")
            .env_remove("LRO_QUEUE_TYPE")
            .stdin(std::process::Stdio::null())
            .output(),
    )
    .await
    .expect("exits at once")
    .expect("runs");
    assert!(!out.status.success(), "started on a classic queue");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    let jobs = env.sys.connections().topology().jobs_queue();
    assert!(
        stderr.contains(&format!("queue {jobs} exists as a classic queue"))
            && stderr.contains("LRO_QUEUE_TYPE=classic"),
        "{stderr}"
    );

    // A worker says the same (as the library's error).
    let mut config = lro_worker::WorkerConfig::new(env.sys.connections());
    config.connections.queue_type = QueueType::Quorum;
    let refused = lro_worker::Worker::start(
        config,
        lro_worker::Kinds::builtin(),
        tokio_util::sync::CancellationToken::new(),
    )
    .await
    .err()
    .expect("a worker on a queue of the other type");
    assert!(
        refused.to_string().contains("LRO_QUEUE_TYPE=classic"),
        "{refused}"
    );
    // And the queue is still the classic one, untouched.
    declare_as(&env, &jobs, "classic").await.expect("classic");
}
