//! Replicated acknowledgements (`common/src/store/replicas.rs`) on the private Redis Cluster of
//! 3 masters + 3 replicas (`crate::redis_cluster::RedisCluster`): `LRO_REDIS_REPLICAS=auto`
//! decides 1 there and 0 on the standalone Redis; when a master that holds buckets is killed
//! under a steady stream of submits, its replica is promoted, submits stall or answer 503 for a
//! while and succeed again within 10 s, and every accepted operation ends SUCCEEDED exactly once;
//! a create no replica confirms answers 503, and its retry with the same request id answers the
//! one operation it made.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::{DoneCounter, Env, SubmitStream, eventually, name_of, state_of};
use crate::redis_cluster::RedisCluster;

#[tokio::test]
async fn auto_waits_for_no_replica_on_a_standalone_redis_without_one() {
    let c = lro_tests::connections_for("auto-replicas");
    let store = c
        .store(&c.client_tls().expect("trust"))
        .await
        .expect("redis");
    assert_eq!(store.replicas(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_masters_crash_loses_no_accepted_operation() {
    let cluster = RedisCluster::start().await;
    let urls = cluster.urls.clone();
    let mut env = Env::start_with(|c| c.connections.redis_url = urls.clone()).await;
    let c = env.sys.connections();
    let store = c
        .store(&c.client_tls().expect("trust"))
        .await
        .expect("redis");
    assert_eq!(store.replicas(), 1, "auto: every master has a replica");
    // Node 0 is the seed the counter subscribes through; node 1, a master, is the one killed
    // (its own subscribers hear what it announced just before the crash).
    let killed_url = urls.split(',').nth(1).expect("node 1").to_owned();
    let counter = DoneCounter::subscribe(&env)
        .await
        .witness(&killed_url)
        .await;
    for _ in 0..2 {
        env.worker_with(lro_worker::Kinds::builtin(), |c| {
            c.connections.redis_url = urls.clone();
            c.concurrency = 8;
            // A terminal write lost with its master is re-run when the lease ends.
            c.lease = Duration::from_secs(3);
        })
        .await;
    }

    // A refused submit is retried with its request id, as a client of a 503 should: it gets the
    // same operation if the first try created it.
    let stream = SubmitStream::start(&env.api, 2);

    let started = Instant::now();
    eventually("the stream flows", || async {
        (stream.accepted_since(started).await >= 30).then_some(())
    })
    .await;
    cluster.kill(1).await;
    let killed = Instant::now();
    // Flowing again: 30 accepted after the kill, over every bucket (the killed master's too, as
    // the submits of both lanes keep their order).
    eventually("the stream flows again", || async {
        (stream.accepted_since(killed).await >= 30).then_some(())
    })
    .await;
    let s = stream.stop().await;
    let first_after = s.first_accepted_after(killed).map(|at| at - killed);
    let last_refused = s
        .refused
        .last()
        .map(|at| at.saturating_duration_since(killed));
    let mut lost = 0;
    for (_, name) in &s.accepted {
        let op = env.api.done(name).await;
        if state_of(&op) != "SUCCEEDED" {
            eprintln!("not succeeded: {op}");
            lost += 1;
        }
    }
    let listed = env.api.list_all("operations", "").await.len();
    let counts = counter.counts().await;
    let duplicated = s
        .accepted
        .iter()
        .filter(|(_, name)| counts.get(name).copied().unwrap_or(0) > 1)
        .count();
    eprintln!(
        "redis master lost: {} accepted, {} refused (503), slowest submit {:?}, first accepted \
         {first_after:?} and last refused {last_refused:?} after the kill, {lost} lost, \
         {duplicated} duplicated, {listed} listed",
        s.accepted.len(),
        s.refused.len(),
        s.slowest,
    );
    assert_eq!(lost, 0, "accepted operations lost");
    assert_eq!(listed, s.accepted.len(), "unexpected operations exist");
    for (_, name) in &s.accepted {
        assert_eq!(counts.get(name), Some(&1), "terminal writes of {name}");
    }
    assert!(
        last_refused.is_none_or(|d| d <= Duration::from_secs(10)),
        "submits refused {last_refused:?} after the kill"
    );
    assert!(
        s.slowest <= Duration::from_secs(10),
        "a submit took {:?}",
        s.slowest
    );
    drop(env);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_no_replica_confirms_answers_503_and_its_retry_the_same_operation() {
    let cluster = RedisCluster::start().await;
    let urls = cluster.urls.clone();
    let env = Env::start_with(|c| c.connections.redis_url = urls).await;
    // Every replica stalls: still connected to its master, but acknowledging nothing.
    for replica in 3..6 {
        cluster.signal(replica, "STOP");
    }
    let body = json!({ "kind": "noop", "input": {}, "requestId": "once" });
    let refused = env.api.submit_with("", body.clone()).await;
    for replica in 3..6 {
        cluster.signal(replica, "CONT");
    }
    refused.error(503, "UNAVAILABLE");
    let name = eventually("the retry accepted", || async {
        let reply = env.api.submit_with("", body.clone()).await;
        (reply.status == 200).then(|| name_of(&reply.body))
    })
    .await;
    let all = env.api.list_all("operations", "").await;
    assert_eq!(all.len(), 1, "one operation for one request id: {all:?}");
    assert_eq!(name_of(&all[0]), name);
    drop(env);
}
