//! `:wait` answers when the operation is done — woken by the change itself — or at its timeout.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::{Env, name_of, state_of};

#[tokio::test]
async fn wait_returns_promptly_when_the_operation_finishes() {
    let (env, probe) = Env::with_worker(4).await;
    let name = name_of(&env.api.submit("", "gate", json!({})).await);
    probe.started(&name).await;

    // The wait is in flight (long timeout) when the job is released.
    let api = env.api.clone();
    let waiting = tokio::spawn({
        let name = name.clone();
        async move { api.wait(&name, "60s").await }
    });
    // Whether the wait is parked before or after the release, it answers promptly once done.
    assert_eq!(state_of(&env.api.get(&name).await.ok()), "RUNNING");
    let released = Instant::now();
    probe.release(&name);
    let op = waiting.await.expect("wait task").ok();
    let took = released.elapsed();
    assert_eq!(op["done"], true, "{op}");
    assert_eq!(state_of(&op), "SUCCEEDED");
    assert!(
        took < Duration::from_secs(5),
        "wait answered {took:?} after completion"
    );
}

#[tokio::test]
async fn wait_answers_the_current_state_at_its_timeout() {
    let env = Env::start().await;
    // No worker: the operation stays queued.
    let name = name_of(&env.api.submit("", "sleep", json!({})).await);
    let asked = Instant::now();
    let op = env.api.wait(&name, "0.3s").await.ok();
    let took = asked.elapsed();
    assert!(
        op.get("done").is_none(),
        "not done, so `done` is omitted: {op}"
    );
    assert_eq!(state_of(&op), "QUEUED");
    assert!(
        took >= Duration::from_millis(300),
        "answered early: {took:?}"
    );
    assert!(took < Duration::from_secs(5), "answered late: {took:?}");

    // An empty body is a wait with the server's cap; a done operation answers at once.
    env.api.cancel(&name).await.ok();
    let asked = Instant::now();
    let op = env
        .api
        .raw("POST", &format!("/v1/{name}:wait"), None)
        .await
        .ok();
    assert_eq!(op["done"], true, "{op}");
    assert!(asked.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn wait_rejects_bad_timeouts_and_unknown_names() {
    let env = Env::start().await;
    let name = name_of(&env.api.submit("", "sleep", json!({})).await);
    for bad in ["-1s", "soon", "1"] {
        env.api
            .wait(&name, bad)
            .await
            .error(400, "INVALID_ARGUMENT");
    }
    env.api
        .wait("operations/missing", "1s")
        .await
        .error(404, "NOT_FOUND");
}
