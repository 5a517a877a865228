//! Batch cancel (`POST …/operations:batchCancel`): a long-running operation of kind
//! `batch-cancel`, run by a worker, that cancels what its filter matches under its own parent
//! (only there, never itself) as `:cancel` does, records the caller, can itself be cancelled, and
//! survives the death of its worker with each operation counted once.

use lro_common::name::Parent;
use lro_common::operation::{NewOperation, Operation};
use lro_common::store::Store;
use lro_common::time::now_millis;
use lro_worker::{CancelReason, Kinds};
use serde_json::{Value, json};

use crate::audit::{api_listening, api_process, line_where};
use crate::auth::{Creds, claims, hs256};
use crate::harness::{Api, Env, Probe, eventually, name_of, state_of, store};

const STRUCT: &str = "type.googleapis.com/google.protobuf.Struct";

/// `n` QUEUED operations of `kind` under `parent`, written straight to the store and never
/// published, so that no worker takes them: they stay queued until something cancels them.
async fn queued(
    store: &Store,
    parent: &str,
    kind: &str,
    cancellable: bool,
    n: usize,
) -> Vec<String> {
    let parent = Parent::parse(parent).expect("parent");
    let mut names = Vec::with_capacity(n);
    for _ in 0..n {
        let name = parent
            .operation(&uuid::Uuid::now_v7().to_string())
            .expect("name");
        let op = Operation::new(
            NewOperation {
                name,
                kind: kind.into(),
                input: json!({}),
                cancellable,
                request_id: None,
                timeout_ms: None,
                retention_ms: None,
            },
            now_millis(),
        );
        store.create(&op, &[]).await.expect("created");
        names.push(op.name.as_str().to_owned());
    }
    names
}

/// `POST /v1/{parent}/operations:batchCancel` (the top level for `""`).
async fn batch(api: &Api, parent: &str, body: Value) -> crate::harness::Reply {
    let path = if parent.is_empty() {
        "/v1/operations:batchCancel".to_owned()
    } else {
        format!("/v1/{parent}/operations:batchCancel")
    };
    api.call("POST", &path, Some(body)).await
}

/// The counts of a batch that succeeded, checking the response is exactly a Struct of them.
#[track_caller]
fn counts(done: &Value) -> [u64; 4] {
    assert_eq!(state_of(done), "SUCCEEDED", "{done}");
    let response = &done["response"];
    assert_eq!(response["@type"], STRUCT, "{done}");
    let v = response["value"].as_object().expect("an object");
    assert_eq!(v.len(), 4, "{done}");
    let n = |k: &str| {
        v[k].as_u64()
            .unwrap_or_else(|| panic!("{k} a number: {done}"))
    };
    [
        n("matched"),
        n("cancelled"),
        n("alreadyDone"),
        n("notCancellable"),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_cancels_what_its_filter_matches_under_its_parent_only() {
    let creds = Creds::new();
    let mut env = creds.env(|_| {}).await;
    let probe = Probe::default();
    env.worker(probe.kinds(), 16).await;
    let scopes = "lro.jobs.submit lro.operations.read lro.operations.cancel";
    let alice = env.api.bearer(&hs256(&claims("alice", scopes)));
    let store = store(&env).await;

    // Under projects/p: 3 done, 5 running, 20 queued, 2 queued that cannot be cancelled.
    let mut done = Vec::new();
    for _ in 0..3 {
        let name = name_of(&alice.submit("projects/p", "gate", json!({})).await);
        probe.started(&name).await;
        probe.release(&name);
        assert_eq!(state_of(&alice.done(&name).await), "SUCCEEDED");
        done.push(name);
    }
    let mut running = Vec::new();
    for _ in 0..5 {
        let name = name_of(&alice.submit("projects/p", "gate", json!({})).await);
        probe.started(&name).await;
        running.push(name);
    }
    let queued_p = queued(&store, "projects/p", "sleep", true, 20).await;
    let stubborn = queued(&store, "projects/p", "uninterruptible", false, 2).await;
    // Elsewhere: a nested parent and another one, which the batch must not reach.
    let mut elsewhere = queued(&store, "projects/p/locations/sub", "sleep", true, 3).await;
    elsewhere.extend(queued(&store, "projects/q", "sleep", true, 3).await);
    let other_running = name_of(&alice.submit("projects/q", "gate", json!({})).await);
    probe.started(&other_running).await;

    let started = batch(&alice, "projects/p", json!({"filter": "done=false"}))
        .await
        .ok();
    let name = name_of(&started);
    assert!(name.starts_with("projects/p/operations/"), "{started}");
    assert_eq!(started["metadata"]["kind"], "batch-cancel", "{started}");
    assert!(started.get("done").is_none(), "{started}");

    let finished = alice.done(&name).await;
    // 25 cancelled (20 queued, 5 running), 2 not cancellable; the done ones do not match, and the
    // batch does not count (or cancel) itself.
    assert_eq!(counts(&finished), [27, 25, 0, 2], "{finished}");
    assert_eq!(finished["metadata"]["progressPercent"], 100, "{finished}");
    assert!(finished["metadata"].get("cancelRequested").is_none());

    for n in &running {
        let seen = probe.until(n, |s| s.stopped.is_some()).await;
        assert_eq!(seen.stopped, Some(CancelReason::User), "{n}");
    }
    for n in running.iter().chain(&queued_p) {
        let op = alice.done(n).await;
        assert_eq!(state_of(&op), "CANCELLED", "{op}");
        assert_eq!(op["error"]["code"], 1, "{op}");
        assert_eq!(op["metadata"]["cancelRequestedBy"], "alice", "{op}");
    }
    for n in &done {
        let op = alice.get(n).await.ok();
        assert_eq!(state_of(&op), "SUCCEEDED", "{op}");
        assert!(op["metadata"].get("cancelRequested").is_none(), "{op}");
    }
    for n in stubborn.iter().chain(&elsewhere) {
        let op = alice.get(n).await.ok();
        assert_eq!(state_of(&op), "QUEUED", "{op}");
        assert!(op["metadata"].get("cancelRequested").is_none(), "{op}");
    }
    let op = alice.get(&other_running).await.ok();
    assert_eq!(state_of(&op), "RUNNING", "{op}");
    assert!(probe.seen(&other_running).stopped.is_none());
    probe.release(&other_running);

    // A second batch over what is done now: the 3 that succeeded, the 25 the first batch
    // cancelled, and the first batch itself — all already done.
    let again = batch(&alice, "projects/p", json!({"filter": "done = true"}))
        .await
        .ok();
    let again = alice.done(&name_of(&again)).await;
    assert_eq!(counts(&again), [29, 0, 29, 0], "{again}");
}

#[tokio::test]
async fn a_batch_cancel_is_refused_at_the_door_and_creates_nothing() {
    let creds = Creds::new();
    let env = creds.env(|_| {}).await;
    let all = "lro.jobs.submit lro.operations.read lro.operations.cancel";
    let alice = env.api.bearer(&hs256(&claims("alice", all)));

    let empty = batch(&alice, "projects/p", json!({"filter": ""})).await;
    empty.error(400, "INVALID_ARGUMENT");
    assert_eq!(
        empty.body["error"]["details"][0]["reason"],
        "MISSING_FILTER"
    );
    batch(&alice, "projects/p", json!({}))
        .await
        .error(400, "INVALID_ARGUMENT");
    for bad in ["done=maybe", "name=x", "metadata.state=running", "done"] {
        let reply = batch(&alice, "projects/p", json!({ "filter": bad })).await;
        reply.error(400, "INVALID_ARGUMENT");
        assert_eq!(
            reply.body["error"]["details"][0]["reason"], "INVALID_FILTER",
            "{bad}: {reply:?}"
        );
    }
    batch(
        &alice,
        "projects/p",
        json!({"filter": "done=false", "force": true}),
    )
    .await
    .error(400, "INVALID_ARGUMENT");
    alice
        .raw("POST", "/v1/projects/p/operations:batchCancel", None)
        .await
        .error(400, "INVALID_ARGUMENT");
    // Its input names the principal it cancels for: a submit of the kind could forge one.
    let forged =
        json!({"kind": "batch-cancel", "input": {"filter": "done=false", "principal": "root"}});
    let reply = alice.submit_with("projects/p", forged).await;
    reply.error(400, "INVALID_ARGUMENT");
    assert_eq!(
        reply.body["error"]["details"][0]["reason"],
        "KIND_NOT_SUBMITTABLE"
    );

    // No cancel scope; a parent outside the caller's.
    let reader = env.api.bearer(&hs256(&claims(
        "bob",
        "lro.operations.read lro.jobs.submit",
    )));
    let reply = batch(&reader, "projects/p", json!({"filter": "done=false"})).await;
    reply.error(403, "PERMISSION_DENIED");
    assert_eq!(
        reply.body["error"]["details"][0]["reason"],
        "ACCESS_TOKEN_SCOPE_INSUFFICIENT"
    );
    let mut tenant = claims("carol", all);
    tenant["lro_parents"] = json!(["projects/mine"]);
    let tenant = env.api.bearer(&hs256(&tenant));
    for parent in ["projects/p", "", "projects/mine/locations/l"] {
        let reply = batch(&tenant, parent, json!({"filter": "done=false"})).await;
        if parent == "projects/mine/locations/l" {
            // Nested under its own parent: allowed.
            reply.ok();
            continue;
        }
        reply.error(403, "PERMISSION_DENIED");
        assert_eq!(
            reply.body["error"]["details"][0]["reason"], "IAM_PERMISSION_DENIED",
            "{parent}"
        );
    }
    let nothing = env.api.bearer(&hs256(&claims("admin", "lro.admin")));
    for collection in ["projects/p/operations", "operations"] {
        assert!(
            nothing.list_all(collection, "").await.is_empty(),
            "{collection}"
        );
    }

    // A repeated requestId answers the first batch.
    let body = json!({"filter": "done=false", "requestId": "b-1"});
    let first = batch(&alice, "projects/p", body.clone()).await.ok();
    let second = batch(&alice, "projects/p", body).await.ok();
    assert_eq!(name_of(&first), name_of(&second));
    assert_eq!(first["metadata"]["requestId"], "b-1");
    assert_eq!(nothing.list_all("projects/p/operations", "").await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_batch_stops_it_between_operations() {
    const N: usize = 5_000;
    let mut env = Env::start().await;
    let store = store(&env).await;
    let names = queued(&store, "projects/c", "sleep", true, N).await;
    env.worker(Kinds::builtin(), 4).await;

    let started = batch(
        &env.api,
        "projects/c",
        json!({"filter": "metadata.state=QUEUED"}),
    )
    .await
    .ok();
    let name = name_of(&started);
    // Under way: it has reported its first page.
    eventually("the batch reports progress", || async {
        let op = env.api.get(&name).await.ok();
        assert!(
            op.get("done").is_none(),
            "done before it could be cancelled: {op}"
        );
        op["metadata"]["progressPercent"]
            .as_u64()
            .is_some_and(|p| p > 0)
            .then_some(())
    })
    .await;
    env.api.cancel(&name).await.ok();
    let done = env.api.done(&name).await;
    assert_eq!(state_of(&done), "CANCELLED", "{done}");
    assert_eq!(done["error"]["code"], 1, "{done}");

    // It stopped: some were cancelled, the rest are still queued, and nothing changes any more.
    let left = env
        .api
        .list_all("projects/c/operations", "metadata.state=QUEUED")
        .await
        .len();
    assert!(left > 0 && left < N, "{left} of {N} left queued");
    let cancelled = env
        .api
        .list_all("projects/c/operations", "metadata.state=CANCELLED")
        .await;
    // The batch itself is one of the cancelled.
    assert_eq!(cancelled.len() - 1 + left, names.len());
}

#[tokio::test]
async fn a_batch_cancel_over_grpc_ends_with_a_struct_response() {
    use lro_api::pb::lro::v1::BatchCancelOperationsRequest;
    use prost::Message;

    let mut env = Env::start().await;
    let store = store(&env).await;
    let names = queued(&store, "projects/g", "sleep", true, 7).await;
    env.worker(Kinds::builtin(), 4).await;
    let grpc = crate::grpc::Grpc::connect(&env).await;
    let req = BatchCancelOperationsRequest {
        parent: "projects/g".into(),
        filter: "metadata.kind=sleep".into(),
        request_id: String::new(),
    };
    let op = grpc
        .jobs
        .clone()
        .batch_cancel_operations(req)
        .await
        .expect("accepted")
        .into_inner();
    assert!(op.name.starts_with("projects/g/operations/"), "{op:?}");
    assert!(!op.done);

    let rest = env.api.done(&op.name).await;
    assert_eq!(counts(&rest), [7, 7, 0, 0], "{rest}");
    let done = grpc
        .ops
        .clone()
        .get_operation(lro_api::pb::google::longrunning::GetOperationRequest {
            name: op.name.clone(),
        })
        .await
        .expect("get")
        .into_inner();
    let Some(lro_api::pb::google::longrunning::operation::Result::Response(any)) = done.result
    else {
        panic!("no response: {done:?}");
    };
    assert_eq!(any.type_url, STRUCT);
    let counts = prost_types::Struct::decode(any.value.as_slice()).expect("a Struct");
    let number = |k: &str| match counts.fields[k].kind {
        Some(prost_types::value::Kind::NumberValue(n)) => n,
        ref other => panic!("{k}: {other:?}"),
    };
    assert_eq!(
        ["matched", "cancelled", "alreadyDone", "notCancellable"].map(number),
        [7.0, 7.0, 0.0, 0.0]
    );
    assert_eq!(counts.fields.len(), 4);
    for n in &names {
        assert_eq!(state_of(&env.api.get(n).await.ok()), "CANCELLED");
    }

    // Refused as over REST.
    let empty = BatchCancelOperationsRequest {
        parent: "projects/g".into(),
        ..Default::default()
    };
    let e = grpc
        .jobs
        .clone()
        .batch_cancel_operations(empty)
        .await
        .expect_err("empty filter");
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_whose_worker_dies_completes_elsewhere_counting_each_once() {
    const N: usize = 4_000;
    let mut env = Env::start().await;
    let store = store(&env).await;
    let names = queued(&store, "projects/k", "sleep", true, N).await;
    let mut doomed = env.worker_process("doomed", 4, &[("LRO_LEASE", "1s")]);

    let started = batch(&env.api, "projects/k", json!({"filter": "done=false"}))
        .await
        .ok();
    let name = name_of(&started);
    eventually("the batch is under way on the doomed worker", || async {
        let op = env.api.get(&name).await.ok();
        assert!(op.get("done").is_none(), "done before the kill: {op}");
        let on_doomed = op["metadata"]["worker"] == "doomed";
        let under_way = op["metadata"]["progressPercent"]
            .as_u64()
            .is_some_and(|p| p > 0);
        (on_doomed && under_way).then_some(())
    })
    .await;
    doomed.start_kill().expect("kill -9");
    doomed.wait().await.expect("reaped");
    let rescuer = env.worker(Kinds::builtin(), 4).await;

    let done = env.api.done(&name).await;
    assert_eq!(done["metadata"]["attempt"], 2, "{done}");
    assert_eq!(done["metadata"]["worker"], rescuer.as_str(), "{done}");
    // The second attempt walked again: what the first cancelled no longer matches `done=false`,
    // but it is recognised as this batch's and counted once, as cancelled.
    let [matched, cancelled, already_done, not_cancellable] = counts(&done);
    assert_eq!(matched, N as u64, "{done}");
    assert_eq!(
        cancelled + already_done + not_cancellable,
        matched,
        "{done}"
    );
    assert_eq!(cancelled, N as u64, "{done}");
    let cancelled_now = env
        .api
        .list_all("projects/k/operations", "metadata.state=CANCELLED")
        .await;
    assert_eq!(cancelled_now.len(), names.len());
}

#[tokio::test]
async fn a_batch_cancel_is_audited_with_its_outcome() {
    let creds = Creds::new();
    let env = Env::start().await;
    let secret = creds.dir.join("secret").display().to_string();
    let (_api, mut lines) = api_process(&env, &[("LRO_AUTH_HS256_SECRET_FILE", secret)]);
    let (api, _) = api_listening(&mut lines).await;
    let token = |sub: &str, scope: &str| {
        let mut c = claims(sub, scope);
        c.as_object_mut().expect("claims").remove("iss");
        c.as_object_mut().expect("claims").remove("aud");
        hs256(&c)
    };
    let alice = api.bearer(&token("alice", "lro.operations.cancel"));
    let started = batch(&alice, "projects/a", json!({"filter": "done=false"}))
        .await
        .ok();
    let reader = api.bearer(&token("rita", "lro.operations.read"));
    batch(&reader, "projects/a", json!({"filter": "done=false"}))
        .await
        .error(403, "PERMISSION_DENIED");

    let audit = |principal: &'static str, name: String, outcome: &'static str| {
        move |l: &Value| {
            l["target"] == "lro::audit"
                && l["method"] == "lro.v1.Jobs.BatchCancelOperations"
                && l["principal"] == principal
                && l["name"] == name.as_str()
                && l["outcome"] == outcome
        }
    };
    line_where(&mut lines, audit("alice", name_of(&started), "OK")).await;
    let collection = "projects/a/operations".to_owned();
    line_where(&mut lines, audit("rita", collection, "PERMISSION_DENIED")).await;
}
