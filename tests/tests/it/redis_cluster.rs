//! A private Redis Cluster of 3 masters and 3 replicas (`deploy/redis-cluster.sh`) under the api,
//! given the six nodes in `LRO_REDIS_URL`: 300 root and 300 parented submits land on every master
//! about equally — each master holds 33 % ± 10 points of each parent's records — because each
//! parent's operations are spread over 24 buckets whose hash tags split evenly over the masters.
//!
//! And when the master the api's `:wait` follower subscribed through is killed, its replica takes
//! over, submits succeed again, and a `:wait` is still woken by the change itself: the follower
//! resubscribed through another seed node.
//!
//! What a master's crash does to accepted operations is `redis_replicas.rs`'s.
//!
//! The suite's core modules also run against such a cluster (`deploy/test.sh`, last pass).

use std::ops::Deref;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use serde_json::json;

use crate::harness::{Env, Probe, ScriptCluster, eventually, name_of, state_of};

/// A cluster of 6 nodes (0-2 start as masters) this test owns; stopped (by the PIDs its script
/// started) when dropped. Its `urls` are `LRO_REDIS_URL` for it: every node, the three masters
/// first.
pub struct RedisCluster(ScriptCluster);

impl RedisCluster {
    pub async fn start() -> Self {
        Self::start_with(&[]).await
    }

    /// A cluster that speaks TLS only, with `pki`'s server certificate.
    pub async fn start_tls(pki: &crate::tls::Pki) -> Self {
        let files = pki.files();
        let cluster = Self::start_with(&[
            ("REDIS_CLUSTER_TLS_CERT", files.cert.as_os_str()),
            ("REDIS_CLUSTER_TLS_KEY", files.key.as_os_str()),
            ("REDIS_CLUSTER_TLS_CA", pki.ca.as_os_str()),
        ])
        .await;
        assert!(cluster.urls.starts_with("rediss://"), "{}", cluster.urls);
        cluster
    }

    async fn start_with(vars: &[(&str, &std::ffi::OsStr)]) -> Self {
        Self(ScriptCluster::start("../deploy/redis-cluster.sh", "lro-redis", 6, vars).await)
    }

    /// Sends `signal` (`STOP`, `CONT`) to node `node`'s server, by the PID its script recorded.
    pub fn signal(&self, node: usize, signal: &str) {
        let pid = std::fs::read_to_string(self.dir().join(format!("n{node}/pid"))).expect("pid");
        let status = std::process::Command::new("kill")
            .arg("-s")
            .arg(signal)
            .arg(pid.trim())
            .status()
            .expect("kill");
        assert!(status.success(), "kill -s {signal} {pid}");
    }
}

impl Deref for RedisCluster {
    type Target = ScriptCluster;

    fn deref(&self) -> &ScriptCluster {
        &self.0
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_master_holds_a_third_of_each_parents_operations() {
    let cluster = RedisCluster::start().await;
    let urls = cluster.urls.clone();
    let env = Env::start_with(|c| c.connections.redis_url = urls).await;
    const EACH: usize = 300;
    for parent in ["", "projects/p1"] {
        for chunk in 0..EACH / 50 {
            // Half with a request id (the id is minted in the request's bucket), half without.
            let submits = (0..50).map(|i| {
                let mut body = json!({ "kind": "noop", "input": {} });
                if i % 2 == 0 {
                    body["requestId"] = json!(format!("{chunk}-{i}"));
                }
                env.api.submit_with(parent, body)
            });
            for reply in join_all(submits).await {
                reply.ok();
            }
        }
    }

    let tls = lro_common::tls::ClientTls::system();
    let masters = lro_tests::redis_nodes::masters(&cluster.urls, &tls)
        .await
        .expect("masters");
    assert_eq!(masters.len(), 3);
    let ns = &env.sys.namespace;
    let mut totals = [0usize; 2];
    let mut counts = Vec::new();
    for master in &masters {
        let keys = lro_tests::redis_nodes::scan(master, &format!("{ns}:op:*"))
            .await
            .expect("scan");
        let root = keys.iter().filter(|k| k.contains("}:-:")).count();
        let parented = keys.iter().filter(|k| k.contains("}:projects/p1:")).count();
        assert_eq!(root + parented, keys.len(), "{keys:?}");
        totals[0] += root;
        totals[1] += parented;
        counts.push([root, parented]);
    }
    assert_eq!(totals, [EACH, EACH], "every record is on some master");
    for (m, [root, parented]) in counts.iter().enumerate() {
        let share = |n: usize| n as f64 * 100.0 / EACH as f64;
        println!(
            "master {m}: root {root} ({:.1} %), projects/p1 {parented} ({:.1} %)",
            share(*root),
            share(*parented)
        );
        for n in [*root, *parented] {
            assert!(
                (share(n) - 100.0 / 3.0).abs() <= 10.0,
                "master {m} holds {:.1} % of a parent's records: {counts:?}",
                share(n)
            );
        }
    }

    // And a parent's list merges its buckets from every master into one id-ordered walk, by
    // pages of 7 (many pages, each needing ids of several buckets).
    for collection in ["operations", "projects/p1/operations"] {
        let mut ids = Vec::new();
        let mut token = String::new();
        loop {
            let query = format!("pageSize=7&pageToken={token}");
            let page = env.api.list(collection, &query).await.ok();
            for op in page["operations"].as_array().into_iter().flatten() {
                let name = name_of(op);
                ids.push(name.rsplit('/').next().unwrap_or_default().to_owned());
            }
            match page["nextPageToken"].as_str() {
                Some(t) => token = t.to_owned(),
                None => break,
            }
        }
        let mut sorted = ids.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(ids.len(), EACH, "{collection}: every operation once");
        assert_eq!(ids, sorted, "{collection}: in id order, without repeats");
    }
    drop(env); // (before the cluster goes, so the namespace is removed from it)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_is_woken_after_the_master_it_subscribed_through_is_killed() {
    let cluster = RedisCluster::start().await;
    let urls = cluster.urls.clone();
    let mut env = Env::start_with(|c| c.connections.redis_url = urls).await;
    let probe = Probe::default();
    env.worker(probe.kinds(), 4).await;
    let before = name_of(&env.api.submit("", "noop", json!({})).await);
    assert_eq!(
        state_of(&env.api.wait(&before, "10s").await.ok()),
        "SUCCEEDED"
    );

    // Node 0 is the first seed: the one the follower subscribed through.
    cluster.kill(0).await;
    let name = eventually("a submit accepted after the failover", || async {
        let reply = env
            .api
            .submit_with("", json!({ "kind": "gate", "input": {} }))
            .await;
        (reply.status == 200).then(|| name_of(&reply.body))
    })
    .await;
    probe.started(&name).await;
    let api = env.api.clone();
    let waiting = tokio::spawn({
        let name = name.clone();
        async move { api.wait(&name, "60s").await }
    });
    assert_eq!(state_of(&env.api.get(&name).await.ok()), "RUNNING");
    let released = Instant::now();
    probe.release(&name);
    let op = waiting.await.expect("wait task").ok();
    let took = released.elapsed();
    assert_eq!(state_of(&op), "SUCCEEDED", "{op}");
    assert!(
        took < Duration::from_secs(5),
        "wait answered {took:?} after completion"
    );
    drop(env);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_only_cluster_is_used_through_rediss_seeds_trusting_the_given_ca() {
    let pki = crate::tls::Pki::new();
    let cluster = RedisCluster::start_tls(&pki).await;
    let (urls, ca) = (cluster.urls.clone(), pki.ca.clone());
    let mut env = Env::start_with(|c| {
        c.connections.redis_url = urls;
        c.connections.tls_ca_file = Some(ca);
    })
    .await;
    env.worker(lro_worker::Kinds::builtin(), 2).await;
    let names: Vec<String> =
        join_all((0..24).map(|_| env.api.submit("projects/t", "noop", json!({}))))
            .await
            .iter()
            .map(name_of)
            .collect();
    for name in &names {
        // Woken through the follower's rediss:// subscription.
        assert_eq!(state_of(&env.api.wait(name, "20s").await.ok()), "SUCCEEDED");
    }
    drop(env);
}
