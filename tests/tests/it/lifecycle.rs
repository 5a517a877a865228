//! Submit, run, finish: the happy path and every way a job ends on its own.

use serde_json::json;

use crate::harness::{Env, Probe, name_of, state_of};

#[tokio::test]
async fn noop_runs_to_succeeded_with_exact_operation_json() {
    let mut env = Env::start().await;
    let worker = env.worker(Probe::default().kinds(), 4).await;

    let op = env.api.submit("", "noop", json!({})).await;
    let name = name_of(&op);
    assert!(name.starts_with("operations/"), "{name}");
    assert!(
        op.get("done").is_none(),
        "not done, so `done` is omitted: {op}"
    );
    assert!(
        op.get("error").is_none() && op.get("response").is_none(),
        "{op}"
    );
    assert_eq!(state_of(&op), "QUEUED");

    let done = env.api.done(&name).await;
    let keys: Vec<&String> = done.as_object().expect("object").keys().collect();
    assert_eq!(keys, ["name", "metadata", "done", "response"], "{done}");
    assert_eq!(
        done["response"],
        json!({ "@type": "type.googleapis.com/google.protobuf.Value", "value": {} })
    );
    let meta = &done["metadata"];
    assert_eq!(
        meta["@type"],
        "type.googleapis.com/lro.v1.OperationMetadata"
    );
    assert_eq!(meta["kind"], "noop");
    assert_eq!(meta["state"], "SUCCEEDED");
    assert_eq!(meta["worker"], worker.as_str());
    assert_eq!(meta["attempt"], 1);
    for t in ["createTime", "startTime", "endTime", "updateTime"] {
        let t = meta[t]
            .as_str()
            .unwrap_or_else(|| panic!("{t} missing: {meta}"));
        assert!(t.ends_with('Z'), "{t}");
    }
    assert!(meta.get("cancelRequested").is_none(), "{meta}");

    // A plain get answers the same record.
    assert_eq!(env.api.get(&name).await.ok(), done);
}

#[tokio::test]
async fn progress_is_visible_while_running_and_output_is_the_response() {
    let (env, probe) = Env::with_worker(4).await;

    let name = name_of(&env.api.submit("", "gate", json!({})).await);
    probe.started(&name).await;
    let running = env.api.get(&name).await.ok();
    assert_eq!(state_of(&running), "RUNNING", "{running}");
    assert_eq!(running["metadata"]["progressPercent"], 40);
    assert_eq!(running["metadata"]["progressMessage"], "gate open");
    assert!(running.get("done").is_none(), "{running}");

    probe.release(&name);
    let done = env.api.done(&name).await;
    assert_eq!(state_of(&done), "SUCCEEDED");
    assert_eq!(done["response"]["value"], json!({ "released": true }));
}

/// A job that reports faster than is useful (a `sleep` of 1 s in 400 steps) costs Redis a few
/// writes, not 400; the last report still shows on the done operation.
#[tokio::test]
async fn progress_reports_are_coalesced_and_the_last_one_stays() {
    let mut env = Env::start().await;
    env.worker(lro_worker::Kinds::builtin(), 4).await;
    let input = json!({ "duration": "1s", "steps": 400 });
    let name = name_of(&env.api.submit("", "sleep", input).await);
    let done = env.api.done(&name).await;
    assert_eq!(state_of(&done), "SUCCEEDED", "{done}");
    assert_eq!(done["metadata"]["progressPercent"], 100, "{done}");
    assert_eq!(
        done["metadata"]["progressMessage"], "step 400 of 400",
        "{done}"
    );
    let store = crate::harness::store(&env).await;
    let op_name = lro_common::name::OperationName::parse(&name).expect("name");
    let (version, _) = store
        .get_versioned(&op_name)
        .await
        .expect("get")
        .expect("exists");
    // Created (1), started, at most one report per 250 ms (and the first at once), finished.
    assert!(version <= 12, "{version} writes for 400 reports");
}

#[tokio::test]
async fn fail_kind_ends_failed_with_its_status() {
    let (env, _probe) = Env::with_worker(4).await;

    let name = name_of(
        &env.api
            .submit("", "fail", json!({ "code": 13, "message": "disk on fire" }))
            .await,
    );
    let done = env.api.done(&name).await;
    assert_eq!(
        done["error"],
        json!({ "code": 13, "message": "disk on fire" })
    );
    assert_eq!(state_of(&done), "FAILED");
    assert!(done.get("response").is_none(), "{done}");
}

#[tokio::test]
async fn timeout_ends_deadline_exceeded_and_the_job_saw_its_token() {
    let (env, probe) = Env::with_worker(4).await;

    let op = env
        .api
        .submit_with(
            "",
            json!({ "kind": "gate", "input": {}, "timeout": "0.2s" }),
        )
        .await
        .ok();
    assert_eq!(op["metadata"]["timeout"], "0.200s", "{op}");
    let name = name_of(&op);
    let done = env.api.done(&name).await;
    assert_eq!(done["error"]["code"], 4, "{done}");
    assert_eq!(state_of(&done), "FAILED");
    let seen = probe.seen(&name);
    assert_eq!(
        seen.stopped,
        Some(lro_worker::CancelReason::Deadline),
        "{seen:?}"
    );
}

#[tokio::test]
async fn spin_completes_off_the_async_threads() {
    let (env, _probe) = Env::with_worker(4).await;
    let name = name_of(
        &env.api
            .submit("", "spin", json!({ "iterations": 1000 }))
            .await,
    );
    let done = env.api.done(&name).await;
    assert_eq!(done["response"]["value"]["iterations"], "1000", "{done}");
}

#[tokio::test]
async fn request_id_returns_the_same_operation() {
    let env = Env::start().await;
    let body = json!({ "kind": "noop", "input": {}, "requestId": "order-42" });
    let first = env.api.submit_with("projects/p", body.clone()).await.ok();
    let again = env.api.submit_with("projects/p", body).await.ok();
    assert_eq!(name_of(&first), name_of(&again));
    assert_eq!(again["metadata"]["requestId"], "order-42");

    // snake_case is accepted too, and another id is another operation.
    let other = env
        .api
        .submit_with(
            "projects/p",
            json!({ "kind": "noop", "request_id": "order-43" }),
        )
        .await
        .ok();
    assert_ne!(name_of(&first), name_of(&other));

    // The same request id under another parent is a different request.
    let elsewhere = env
        .api
        .submit_with(
            "projects/q",
            json!({ "kind": "noop", "requestId": "order-42" }),
        )
        .await
        .ok();
    assert_ne!(name_of(&first), name_of(&elsewhere));

    let listed = env.api.list("projects/p/operations", "").await.ok();
    assert_eq!(
        listed["operations"].as_array().map(Vec::len),
        Some(2),
        "{listed}"
    );
}

#[tokio::test]
async fn nested_parents_name_their_operations() {
    let (env, _probe) = Env::with_worker(4).await;
    let parent = "enterprises/e1/devices/d-1.x_y~z@w";
    let name = name_of(&env.api.submit(parent, "noop", json!({})).await);
    assert!(name.starts_with(&format!("{parent}/operations/")), "{name}");
    let done = env.api.done(&name).await;
    assert_eq!(name_of(&done), name);
    assert_eq!(env.api.get(&name).await.ok()["done"], true);
}

/// The reaper's watch lists and the owned sets as the fast path leaves them: a running operation
/// is in its worker's owned set, a finished one in none, and no publish guard outlives its
/// confirmed publish. (Entries are armed and removed by the same scripts that write the records.)
#[tokio::test]
async fn watch_lists_hold_exactly_what_the_reaper_must_look_at() {
    use lro_common::store::Watch;
    let (env, probe) = Env::with_worker(32).await;
    let store = crate::harness::store(&env).await;
    let entries = |list| {
        let store = store.clone();
        async move {
            let mut names: Vec<String> = store
                .due(list, u64::MAX / 2, 1000)
                .await
                .expect("due")
                .into_iter()
                .map(|(n, _)| n.to_string())
                .collect();
            names.sort();
            names
        }
    };

    let gate = name_of(&env.api.submit("", "gate", json!({})).await);
    let mut all = vec![gate.clone()];
    for _ in 0..20 {
        let name = name_of(&env.api.submit("", "noop", json!({})).await);
        env.api.done(&name).await;
        all.push(name);
    }
    probe.started(&gate).await;
    all.sort();

    let worker = store
        .get(&lro_common::name::OperationName::parse(&gate).expect("name"))
        .await
        .expect("get")
        .run()
        .expect("running")
        .worker
        .clone();
    let owned = || {
        let (store, worker) = (store.clone(), worker.clone());
        async move {
            let mut names = Vec::new();
            for bucket in lro_common::store::Bucket::all() {
                let owned = store.owned(bucket, &worker).await.expect("owned");
                names.extend(owned.into_iter().map(|n| n.to_string()));
            }
            names
        }
    };
    assert_eq!(owned().await, vec![gate.clone()]);
    assert_eq!(entries(Watch::Unpublished).await, Vec::<String>::new());
    assert_eq!(entries(Watch::Cancels).await, Vec::<String>::new());
    assert_eq!(
        entries(Watch::Retention).await,
        all,
        "every operation has its retention watch"
    );

    // Gone with the write that ended it.
    probe.release(&gate);
    env.api.done(&gate).await;
    assert_eq!(owned().await, Vec::<String>::new());
}
