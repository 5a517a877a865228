//! Batch submission (`POST …/jobs:batchSubmit`): up to 1,000 jobs in one request, all or none
//! (AIP-233), answered in order; each job checked and deduplicated by its own request id as a
//! single submit is; the same over gRPC (`lro.v1.Jobs/BatchSubmitJobs`).

use serde_json::{Value, json};

use crate::auth::{Creds, claims, hs256};
use crate::harness::{Api, Env, Reply, name_of, state_of};

/// `POST /v1/{parent}/jobs:batchSubmit` (the top level for `""`) with these jobs.
async fn batch(api: &Api, parent: &str, requests: Vec<Value>) -> Reply {
    let path = if parent.is_empty() {
        "/v1/jobs:batchSubmit".to_owned()
    } else {
        format!("/v1/{parent}/jobs:batchSubmit")
    };
    api.call("POST", &path, Some(json!({ "requests": requests })))
        .await
}

/// The operations of an accepted batch.
#[track_caller]
fn operations(reply: Reply) -> Vec<Value> {
    let body = reply.ok();
    let keys: Vec<&String> = body.as_object().expect("object").keys().collect();
    assert_eq!(keys, ["operations"], "{body}");
    body["operations"].as_array().expect("operations").clone()
}

/// The names under `collection`, sorted.
async fn listed(api: &Api, collection: &str) -> Vec<String> {
    let mut names: Vec<String> = api
        .list_all(collection, "")
        .await
        .iter()
        .map(name_of)
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn a_batch_creates_every_job_in_order_and_each_runs() {
    let (env, probe) = Env::with_worker(8).await;
    let api = &env.api;
    let requests = vec![
        json!({ "kind": "noop" }),
        json!({ "kind": "gate", "input": {}, "timeout": "30s" }),
        json!({ "kind": "fail", "input": { "code": 9, "message": "no" } }),
        json!({ "parent": "projects/p", "kind": "noop", "requestId": "r-1" }),
    ];
    let ops = operations(batch(api, "projects/p", requests).await);
    assert_eq!(ops.len(), 4);
    let kinds: Vec<&str> = ops
        .iter()
        .map(|op| op["metadata"]["kind"].as_str().expect("kind"))
        .collect();
    assert_eq!(kinds, ["noop", "gate", "fail", "noop"]);
    for op in &ops {
        assert!(name_of(op).starts_with("projects/p/operations/"), "{op}");
        assert_eq!(state_of(op), "QUEUED", "{op}");
        assert!(op.get("done").is_none(), "{op}");
    }
    assert_eq!(ops[1]["metadata"]["timeout"], "30s");
    assert_eq!(ops[3]["metadata"]["requestId"], "r-1");
    let mut names: Vec<String> = ops.iter().map(name_of).collect();
    names.sort();
    assert_eq!(listed(api, "projects/p/operations").await, names);

    // Each runs as a single submit's would.
    let gate = name_of(&ops[1]);
    probe.started(&gate).await;
    probe.release(&gate);
    let states: Vec<String> = futures_util::future::join_all(
        ops.iter()
            .map(|op| async { state_of(&api.done(&name_of(op)).await).to_owned() }),
    )
    .await;
    assert_eq!(states, ["SUCCEEDED", "SUCCEEDED", "FAILED", "SUCCEEDED"]);
}

#[tokio::test]
async fn a_batch_with_one_refused_job_creates_none() {
    let env = Env::start().await;
    let api = &env.api;
    let good = || json!({ "kind": "noop", "input": {} });

    // A job outside its kind's schema: its error, its paths under requests[i].
    let reply = batch(
        api,
        "projects/p",
        vec![
            good(),
            json!({ "kind": "sleep", "input": { "duration": "forever" } }),
            good(),
        ],
    )
    .await;
    reply.error(400, "INVALID_ARGUMENT");
    let error = &reply.body["error"];
    assert_eq!(error["details"][0]["reason"], "INVALID_INPUT", "{reply:?}");
    assert_eq!(
        error["details"][0]["metadata"]["requestIndex"], "1",
        "{reply:?}"
    );
    assert_eq!(
        error["details"][1]["fieldViolations"][0]["field"], "requests[1].input.duration",
        "{reply:?}"
    );
    assert!(
        error["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("requests[1]: ")),
        "{reply:?}"
    );

    // Every other way to refuse one job.
    let cases: Vec<(Vec<Value>, &str, &str)> = vec![
        (vec![good(), json!({ "kind": "nope" })], "UNKNOWN_KIND", "1"),
        (vec![json!({ "input": {} }), good()], "MISSING_KIND", "0"),
        (
            vec![good(), good(), json!({ "kind": "noop", "input": [1] })],
            "INVALID_INPUT",
            "2",
        ),
        (
            vec![good(), json!({ "kind": "noop", "timeout": "0s" })],
            "INVALID_TIMEOUT",
            "1",
        ),
        (
            vec![good(), json!({ "kind": "noop", "timeout": "soon" })],
            "INVALID_TIMEOUT",
            "1",
        ),
        (
            vec![json!({ "kind": "noop", "requestId": "a b" }), good()],
            "INVALID_REQUEST_ID",
            "0",
        ),
        (
            vec![good(), json!({ "kind": "noop", "parent": "projects/q" })],
            "PARENT_MISMATCH",
            "1",
        ),
        (
            vec![good(), json!({ "kind": "batch-cancel" })],
            "KIND_NOT_SUBMITTABLE",
            "1",
        ),
    ];
    for (requests, reason, index) in cases {
        let reply = batch(api, "projects/p", requests).await;
        reply.error(400, "INVALID_ARGUMENT");
        let info = &reply.body["error"]["details"][0];
        assert_eq!(info["reason"], reason, "{reply:?}");
        assert_eq!(info["metadata"]["requestIndex"], index, "{reply:?}");
    }

    // The batch itself: empty, too large, not a list, unknown fields.
    for body in [
        json!({}),
        json!({ "requests": [] }),
        json!({ "requests": vec![good(); 1001] }),
    ] {
        let reply = api
            .call("POST", "/v1/projects/p/jobs:batchSubmit", Some(body))
            .await;
        reply.error(400, "INVALID_ARGUMENT");
        assert_eq!(
            reply.body["error"]["details"][0]["reason"], "INVALID_BATCH_SIZE",
            "{reply:?}"
        );
    }
    for body in [
        json!({ "requests": good() }),
        json!({ "requests": [good()], "extra": 1 }),
        json!({ "requests": [{ "kind": "noop", "extra": 1 }] }),
    ] {
        let reply = api
            .call("POST", "/v1/projects/p/jobs:batchSubmit", Some(body))
            .await;
        reply.error(400, "INVALID_ARGUMENT");
        assert_eq!(
            reply.body["error"]["details"][0]["reason"], "INVALID_JSON",
            "{reply:?}"
        );
    }

    // Nothing was created, and the request id of the refused batch is still free.
    assert_eq!(api.list("projects/p/operations", "").await.ok(), json!({}));
    let ok = operations(
        batch(
            api,
            "projects/p",
            vec![json!({ "kind": "noop", "requestId": "same" })],
        )
        .await,
    );
    assert_eq!(ok.len(), 1);
    assert_eq!(
        listed(api, "projects/p/operations").await,
        [name_of(&ok[0])]
    );
}

#[tokio::test]
async fn a_repeated_batch_answers_the_operations_it_made_first() {
    let env = Env::start().await;
    let api = &env.api;
    let first = operations(
        batch(
            api,
            "",
            vec![
                json!({ "kind": "noop", "requestId": "a" }),
                json!({ "kind": "noop", "requestId": "b" }),
            ],
        )
        .await,
    );
    // A request id given twice in one batch is one submission.
    let twice = operations(
        batch(
            api,
            "",
            vec![
                json!({ "kind": "noop", "requestId": "d" }),
                json!({ "kind": "noop" }),
                json!({ "kind": "noop", "requestId": "d" }),
            ],
        )
        .await,
    );
    assert_eq!(name_of(&twice[0]), name_of(&twice[2]));
    assert_ne!(name_of(&twice[0]), name_of(&twice[1]));
    // Again, with one more job and the order changed: the old ones answer what they made.
    let again = operations(
        batch(
            api,
            "",
            vec![
                json!({ "kind": "noop", "requestId": "c" }),
                json!({ "kind": "noop", "requestId": "b" }),
                json!({ "kind": "noop", "requestId": "a" }),
            ],
        )
        .await,
    );
    assert_eq!(name_of(&again[1]), name_of(&first[1]));
    assert_eq!(name_of(&again[2]), name_of(&first[0]));
    assert_ne!(name_of(&again[0]), name_of(&first[0]));
    assert_ne!(name_of(&again[0]), name_of(&first[1]));
    // A single submit with a batch's request id answers the batch's operation too.
    let single = api
        .submit_with("", json!({ "kind": "noop", "requestId": "a" }))
        .await
        .ok();
    assert_eq!(name_of(&single), name_of(&first[0]));
    assert_eq!(listed(api, "operations").await.len(), 5);
}

#[tokio::test]
async fn a_batch_of_a_thousand_jobs_runs_every_one() {
    let (env, _probe) = Env::with_worker(64).await;
    let api = &env.api;
    let requests: Vec<Value> = (0..1000)
        .map(|i| json!({ "kind": "noop", "requestId": format!("job-{i}") }))
        .collect();
    let ops = operations(batch(api, "projects/big", requests).await);
    assert_eq!(ops.len(), 1000);
    let mut names: Vec<String> = ops.iter().map(name_of).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), 1000, "names are distinct");
    for (i, op) in ops.iter().enumerate() {
        assert_eq!(op["metadata"]["requestId"], format!("job-{i}"), "in order");
        let done = api.done(&name_of(op)).await;
        assert_eq!(state_of(&done), "SUCCEEDED", "{done}");
    }
    assert_eq!(listed(api, "projects/big/operations").await, names);
}

#[tokio::test]
async fn grpc_batch_submit_is_the_same_all_or_none_batch() {
    use lro_api::pb::google::rpc;
    use lro_api::pb::lro::v1::{BatchSubmitJobsRequest, SubmitJobRequest};
    use prost::Message;

    let env = Env::start().await;
    let grpc = crate::grpc::Grpc::connect(&env).await;
    let job = |kind: &str, request_id: &str| SubmitJobRequest {
        kind: kind.into(),
        request_id: request_id.into(),
        ..Default::default()
    };
    let grpc_batch = |requests: Vec<SubmitJobRequest>| BatchSubmitJobsRequest {
        parent: "projects/g".into(),
        requests,
    };

    // One refused job: INVALID_ARGUMENT naming it, and nothing created.
    let refused = grpc
        .jobs
        .clone()
        .batch_submit_jobs(grpc_batch(vec![job("noop", ""), job("nope", "")]))
        .await
        .expect_err("refused");
    assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
    let details = rpc::Status::decode(refused.details()).expect("status details");
    let info = rpc::ErrorInfo::decode(details.details[0].value.as_slice()).expect("ErrorInfo");
    assert_eq!(info.reason, "UNKNOWN_KIND");
    assert_eq!(info.metadata["requestIndex"], "1");
    assert_eq!(
        env.api.list("projects/g/operations", "").await.ok(),
        json!({})
    );

    // Accepted: in order, and a request id answers the same operation over REST.
    let ops = grpc
        .jobs
        .clone()
        .batch_submit_jobs(grpc_batch(vec![job("noop", "g-1"), job("fail", "")]))
        .await
        .expect("accepted")
        .into_inner()
        .operations;
    assert_eq!(ops.len(), 2);
    let again = operations(
        batch(
            &env.api,
            "projects/g",
            vec![json!({ "kind": "noop", "requestId": "g-1" })],
        )
        .await,
    );
    assert_eq!(name_of(&again[0]), ops[0].name);
    let mut names: Vec<String> = ops.iter().map(|op| op.name.clone()).collect();
    names.sort();
    assert_eq!(listed(&env.api, "projects/g/operations").await, names);
}

#[tokio::test]
async fn a_batch_needs_the_submit_scope_and_the_callers_parent() {
    let creds = Creds::new();
    let env = creds.env(|_| {}).await;
    let jobs = || vec![json!({ "kind": "noop" }), json!({ "kind": "noop" })];

    let reader = env
        .api
        .bearer(&hs256(&claims("bob", "lro.operations.read")));
    let reply = batch(&reader, "projects/p", jobs()).await;
    reply.error(403, "PERMISSION_DENIED");
    let info = &reply.body["error"]["details"][0];
    assert_eq!(
        info["reason"], "ACCESS_TOKEN_SCOPE_INSUFFICIENT",
        "{reply:?}"
    );
    batch(&env.api, "projects/p", jobs())
        .await
        .error(401, "UNAUTHENTICATED");

    let mut tenant = claims("carol", "lro.jobs.submit lro.operations.read");
    tenant["lro_parents"] = json!(["projects/mine"]);
    let tenant = env.api.bearer(&hs256(&tenant));
    let reply = batch(&tenant, "projects/p", jobs()).await;
    reply.error(403, "PERMISSION_DENIED");
    assert_eq!(
        reply.body["error"]["details"][0]["reason"],
        "IAM_PERMISSION_DENIED"
    );
    let admin = env.api.bearer(&hs256(&claims("admin", "lro.admin")));
    assert_eq!(
        admin.list("projects/p/operations", "").await.ok(),
        json!({})
    );

    // Under its own parent: accepted, and each is listed there.
    let ops = operations(batch(&tenant, "projects/mine", jobs()).await);
    assert_eq!(ops.len(), 2);
    let mut names: Vec<String> = ops.iter().map(name_of).collect();
    names.sort();
    assert_eq!(listed(&admin, "projects/mine/operations").await, names);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_refused_while_rabbitmq_is_away_leaves_nothing_and_its_retry_runs_once() {
    let proxy = crate::proxy::Proxy::start("127.0.0.1:5672").await;
    let amqp = format!("amqp://guest:guest@{}/%2f", proxy.addr);
    let mut env = Env::start_with(|c| c.connections.amqp_url = amqp.clone()).await;
    env.worker_with(crate::harness::Probe::default().kinds(), |c| {
        c.connections.amqp_url = amqp.clone();
    })
    .await;
    let jobs = || {
        (0..3)
            .map(|i| json!({ "kind": "noop", "requestId": format!("out-{i}") }))
            .collect::<Vec<_>>()
    };

    proxy.cut();
    // The records are written, the publishes fail: every one is taken back.
    let reply = batch(&env.api, "projects/o", jobs()).await;
    reply.error(503, "UNAVAILABLE");
    assert_eq!(
        env.api.list("projects/o/operations", "").await.ok(),
        json!({})
    );

    proxy.restore();
    // A client retrying the same batch gets it accepted, once, and every job runs.
    let ops = crate::harness::eventually("batch accepted again", || async {
        let reply = batch(&env.api, "projects/o", jobs()).await;
        assert!(matches!(reply.status, 200 | 503), "{reply:?}");
        (reply.status == 200).then(|| operations(reply))
    })
    .await;
    assert_eq!(ops.len(), 3);
    for op in &ops {
        let done = env.api.done(&name_of(op)).await;
        assert_eq!(state_of(&done), "SUCCEEDED", "{done}");
    }
    let mut names: Vec<String> = ops.iter().map(name_of).collect();
    names.sort();
    assert_eq!(listed(&env.api, "projects/o/operations").await, names);
}
