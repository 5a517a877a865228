//! Input schemas at the door: a submit whose input does not fit its kind's schema is 400
//! INVALID_ARGUMENT with a `google.rpc.BadRequest` naming each field, over REST and gRPC, and
//! creates nothing; `GET /v1/kinds` (and gRPC `ListKinds`) lists every kind with its schema,
//! including the generated schema of a typed kind a worker registers.

use std::collections::BTreeSet;

use lro_api::pb::google::longrunning::ListOperationsRequest;
use lro_api::pb::google::longrunning::operations_client::OperationsClient;
use lro_api::pb::google::rpc;
use lro_api::pb::lro::v1::jobs_client::JobsClient;
use lro_api::pb::lro::v1::{ListKindsRequest, SubmitJobRequest};
use lro_worker::{JobContext, Kinds};
use prost::Message;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tonic::transport::Channel;

use crate::harness::{Env, Reply, name_of, state_of};

/// The fields a refused submit's BadRequest names, after checking the rest of the answer: 400
/// INVALID_ARGUMENT, the ErrorInfo (reason INVALID_INPUT) first, the BadRequest second, every
/// description a non-empty lowercase sentence.
#[track_caller]
fn refused_fields(reply: &Reply) -> BTreeSet<String> {
    reply.error(400, "INVALID_ARGUMENT");
    let details = reply.body["error"]["details"].as_array().expect("details");
    let [info, bad] = details.as_slice() else {
        panic!("expected ErrorInfo and BadRequest: {reply:?}");
    };
    assert_eq!(info["@type"], "type.googleapis.com/google.rpc.ErrorInfo");
    assert_eq!(info["reason"], "INVALID_INPUT", "{reply:?}");
    assert_eq!(bad["@type"], "type.googleapis.com/google.rpc.BadRequest");
    let violations = bad["fieldViolations"].as_array().expect("fieldViolations");
    assert!(!violations.is_empty(), "{reply:?}");
    let mut fields = BTreeSet::new();
    for v in violations {
        let d = v["description"].as_str().expect("description");
        assert!(d.starts_with(|c: char| c.is_lowercase()), "{reply:?}");
        let field = v["field"].as_str().expect("field").to_owned();
        assert!(field.starts_with("input"), "{reply:?}");
        fields.insert(field);
    }
    fields
}

fn set<const N: usize>(fields: [&str; N]) -> BTreeSet<String> {
    fields.into_iter().map(str::to_owned).collect()
}

#[tokio::test]
async fn builtin_kinds_refuse_input_outside_their_schema_and_create_nothing() {
    // No worker: the built-in kinds are known to the api without one.
    let env = Env::start().await;
    let api = &env.api;
    let forever = json!({ "duration": "forever" });
    let cases: Vec<(&str, Value, BTreeSet<String>)> = vec![
        ("sleep", forever.clone(), set(["input.duration"])),
        ("sleep", json!({ "duration": 5 }), set(["input.duration"])),
        (
            "sleep",
            json!({ "duration": "-1s" }),
            set(["input.duration"]),
        ),
        ("sleep", json!({ "duration": "5" }), set(["input.duration"])),
        ("sleep", json!({ "steps": 0 }), set(["input.steps"])),
        ("sleep", json!({ "steps": -3 }), set(["input.steps"])),
        ("sleep", json!({ "steps": "3" }), set(["input.steps"])),
        ("sleep", json!({ "steps": 1.5 }), set(["input.steps"])),
        ("sleep", json!({ "steps": 10_001 }), set(["input.steps"])),
        ("sleep", json!({ "sleep": "1s" }), set(["input.sleep"])),
        ("uninterruptible", forever.clone(), set(["input.duration"])),
        (
            "uninterruptible",
            json!({ "steps": 0 }),
            set(["input.steps"]),
        ),
        ("uninterruptible", json!({ "x": 1 }), set(["input.x"])),
        ("noop", json!({ "x": 1 }), set(["input.x"])),
        (
            "noop",
            json!({ "a": 1, "b": 2 }),
            set(["input.a", "input.b"]),
        ),
        ("fail", json!({ "code": 0 }), set(["input.code"])),
        ("fail", json!({ "code": 17 }), set(["input.code"])),
        ("fail", json!({ "code": "13" }), set(["input.code"])),
        ("fail", json!({ "message": 5 }), set(["input.message"])),
        (
            "fail",
            json!({ "retryable": "yes" }),
            set(["input.retryable"]),
        ),
        ("fail", json!({ "reason": "x" }), set(["input.reason"])),
        (
            "spin",
            json!({ "iterations": -1 }),
            set(["input.iterations"]),
        ),
        (
            "spin",
            json!({ "iterations": "5" }),
            set(["input.iterations"]),
        ),
        ("spin", json!({}), set(["input.iterations"])),
        (
            "spin",
            json!({ "iterations": 5, "extra": 1 }),
            set(["input.extra"]),
        ),
        // Every violation at once.
        (
            "sleep",
            json!({ "duration": "forever", "steps": 0, "x": true }),
            set(["input.duration", "input.steps", "input.x"]),
        ),
        (
            "fail",
            json!({ "code": 17, "message": [], "retryable": 1 }),
            set(["input.code", "input.message", "input.retryable"]),
        ),
    ];
    for (kind, input, fields) in &cases {
        let reply = api
            .submit_with("projects/bad", json!({ "kind": kind, "input": input }))
            .await;
        assert_eq!(&refused_fields(&reply), fields, "{kind} {input}: {reply:?}");
        let error = &reply.body["error"];
        assert_eq!(error["details"][0]["metadata"]["kind"], *kind, "{reply:?}");
    }
    // The description says what is wrong.
    let reply = api
        .submit_with("projects/bad", json!({ "kind": "sleep", "input": forever }))
        .await;
    let violation = &reply.body["error"]["details"][1]["fieldViolations"][0];
    assert!(
        violation["description"]
            .as_str()
            .is_some_and(|d| d.contains("duration")),
        "{reply:?}"
    );
    assert_eq!(
        api.list("projects/bad/operations", "").await.ok(),
        json!({})
    );

    // What the contract allows is still accepted.
    let good = [
        ("sleep", json!({ "duration": "10ms", "steps": 1 })),
        ("sleep", json!({ "duration": "1.5s", "steps": 10_000 })),
        ("sleep", json!({ "duration": "250ms" })),
        ("sleep", json!({ "steps": 5.0 })),
        ("sleep", json!({})),
        ("uninterruptible", json!({ "duration": "2m", "steps": 3 })),
        ("noop", json!({})),
        ("fail", json!({ "code": 1 })),
        (
            "fail",
            json!({ "code": 16, "message": "m", "retryable": true }),
        ),
        ("spin", json!({ "iterations": 0 })),
        ("spin", json!({ "iterations": u64::MAX })),
    ];
    for (kind, input) in &good {
        api.submit("projects/good", kind, input.clone()).await;
    }
    let reply = api
        .submit_with("projects/good", json!({ "kind": "noop" }))
        .await;
    assert_eq!(reply.status, 200, "no input is {{}}: {reply:?}");
    let listed = api.list_all("projects/good/operations", "").await;
    assert_eq!(listed.len(), good.len() + 1);
}

/// A typed custom kind's input, with a nested type (a `$ref` in its schema).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Resize {
    url: String,
    #[schemars(range(min = 1, max = 8192))]
    width: u32,
    #[serde(default)]
    tags: Vec<Tag>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Tag {
    key: String,
}

#[derive(Serialize)]
struct Resized {
    url: String,
    width: u32,
    tags: Vec<String>,
}

fn resize_kinds() -> Kinds {
    Kinds::new().typed("resize", |input: Resize, _ctx: JobContext| async move {
        Ok(Resized {
            url: format!("{}?w={}", input.url, input.width),
            width: input.width,
            tags: input.tags.into_iter().map(|t| t.key).collect(),
        })
    })
}

/// The kind called `name` in a `GET /v1/kinds` answer.
fn listed<'a>(kinds: &'a Value, name: &str) -> &'a Value {
    kinds["kinds"]
        .as_array()
        .expect("kinds")
        .iter()
        .find(|k| k["name"] == name)
        .unwrap_or_else(|| panic!("{name} not listed: {kinds}"))
}

#[tokio::test]
async fn a_typed_kind_registers_its_generated_schema_and_the_api_enforces_it() {
    let mut env = Env::start().await;
    env.worker(resize_kinds(), 2).await;
    let api = &env.api;

    let kinds = api.call("GET", "/v1/kinds", None).await.ok();
    let resize = listed(&kinds, "resize");
    assert_eq!(resize["cancellable"], true, "{resize}");
    let generated = lro_common::kinds::input_schema::<Resize>();
    assert_eq!(resize["inputSchema"], generated, "{resize}");
    assert_eq!(resize["inputSchema"]["additionalProperties"], false);
    assert_eq!(
        resize["inputSchema"]["properties"]["width"]["minimum"], 1,
        "{resize}"
    );

    let bad: Vec<(Value, BTreeSet<String>)> = vec![
        (
            json!({ "url": 5, "width": 0 }),
            set(["input.url", "input.width"]),
        ),
        (json!({ "url": "u" }), set(["input.width"])),
        (json!({ "url": "u", "width": 8193 }), set(["input.width"])),
        (
            json!({ "url": "u", "width": 1, "height": 1 }),
            set(["input.height"]),
        ),
        (
            json!({ "url": "u", "width": 1, "tags": [{ "key": "a" }, { "key": 1 }, { "k": "c" }] }),
            set(["input.tags[1].key", "input.tags[2].key", "input.tags[2].k"]),
        ),
    ];
    for (input, fields) in &bad {
        let reply = api
            .submit_with("projects/r", json!({ "kind": "resize", "input": input }))
            .await;
        assert_eq!(&refused_fields(&reply), fields, "{input}: {reply:?}");
    }
    assert_eq!(api.list("projects/r/operations", "").await.ok(), json!({}));

    let input = json!({ "url": "https://img/a.png", "width": 640, "tags": [{ "key": "x" }] });
    let name = name_of(&api.submit("projects/r", "resize", input).await);
    let done = api.done(&name).await;
    assert_eq!(state_of(&done), "SUCCEEDED", "{done}");
    assert_eq!(
        done["response"]["value"],
        json!({ "url": "https://img/a.png?w=640", "width": 640, "tags": ["x"] })
    );
}

#[tokio::test]
async fn a_typed_kind_fails_input_that_an_older_looser_schema_let_through() {
    let mut env = Env::start().await;
    env.worker(resize_kinds(), 2).await;
    // What a registration from before schemas (or a looser one) leaves in Redis.
    let loose = lro_common::kinds::KindInfo {
        name: "resize".into(),
        cancellable: true,
        input_schema: lro_common::kinds::any_object(),
    };
    crate::harness::store(&env)
        .await
        .register_kinds(&[loose])
        .await
        .expect("registered");
    let kinds = env.api.call("GET", "/v1/kinds", None).await.ok();
    assert_eq!(
        listed(&kinds, "resize")["inputSchema"],
        json!({ "type": "object" })
    );

    let name = name_of(&env.api.submit("", "resize", json!({ "url": 5 })).await);
    let done = env.api.done(&name).await;
    assert_eq!(done["error"]["code"], 3, "{done}");
    let message = done["error"]["message"].as_str().expect("message");
    assert!(message.contains("bad input for kind resize"), "{done}");
    assert_eq!(state_of(&done), "FAILED");
}

#[tokio::test]
async fn list_kinds_names_every_builtin_with_its_cancellability_over_rest_and_grpc() {
    let env = Env::start().await;
    let builtin = lro_common::kinds::builtin();
    let mut expected: Vec<(String, bool)> = builtin
        .iter()
        .map(|k| (k.name.clone(), k.cancellable))
        .collect();
    expected.sort();
    assert_eq!(
        expected.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
        [
            "batch-cancel",
            "fail",
            "noop",
            "sleep",
            "spin",
            "uninterruptible"
        ]
    );

    let kinds = env.api.call("GET", "/v1/kinds", None).await.ok();
    let rest: Vec<(String, bool)> = kinds["kinds"]
        .as_array()
        .expect("kinds")
        .iter()
        .map(|k| {
            let name = k["name"].as_str().expect("name").to_owned();
            // proto3 JSON omits false.
            let cancellable = match k.get("cancellable") {
                None => false,
                Some(c) => c.as_bool().filter(|c| *c).expect("omitted when false"),
            };
            (name, cancellable)
        })
        .collect();
    assert_eq!(rest, expected, "{kinds}");
    for k in &builtin {
        assert_eq!(listed(&kinds, &k.name)["inputSchema"], k.input_schema);
    }
    let uninterruptible = listed(&kinds, "uninterruptible");
    assert!(uninterruptible.get("cancellable").is_none(), "{kinds}");

    let mut jobs = JobsClient::new(channel(&env).await);
    let answer = jobs
        .list_kinds(ListKindsRequest {})
        .await
        .expect("listed")
        .into_inner();
    let grpc: Vec<(String, bool)> = answer
        .kinds
        .iter()
        .map(|k| (k.name.clone(), k.cancellable))
        .collect();
    assert_eq!(grpc, expected);
    let spin = answer
        .kinds
        .iter()
        .find(|k| k.name == "spin")
        .expect("spin");
    let schema = spin.input_schema.as_ref().expect("schema");
    assert_eq!(
        schema.fields["additionalProperties"].kind,
        Some(prost_types::value::Kind::BoolValue(false))
    );
    assert!(schema.fields.contains_key("properties"), "{schema:?}");

    // Only GET, only at the top level.
    for (method, path) in [
        ("POST", "/v1/kinds"),
        ("DELETE", "/v1/kinds"),
        ("GET", "/v1/projects/p/kinds"),
    ] {
        let reply = env.api.call(method, path, None).await;
        reply.error(404, "NOT_FOUND");
        assert_eq!(
            reply.body["error"]["details"][0]["reason"],
            "NO_SUCH_METHOD"
        );
    }
}

#[tokio::test]
async fn grpc_submit_outside_the_schema_is_invalid_argument_with_a_bad_request() {
    let env = Env::start().await;
    let channel = channel(&env).await;
    let mut jobs = JobsClient::new(channel.clone());
    let cases: Vec<GrpcCase> = vec![
        (
            "sleep",
            vec![("duration", string("forever")), ("steps", number(0.0))],
            set(["input.duration", "input.steps"]),
        ),
        ("fail", vec![("code", number(17.0))], set(["input.code"])),
        ("fail", vec![("code", number(0.0))], set(["input.code"])),
        (
            "spin",
            vec![("iterations", number(-1.0))],
            set(["input.iterations"]),
        ),
        ("noop", vec![("x", number(1.0))], set(["input.x"])),
    ];
    for (kind, fields, expected) in cases {
        let req = SubmitJobRequest {
            parent: "projects/g".into(),
            kind: kind.into(),
            input: Some(prost_types::Struct {
                fields: fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
            }),
            ..Default::default()
        };
        let status = jobs.submit_job(req).await.expect_err("refused");
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
        let details = rpc::Status::decode(status.details()).expect("status details decode");
        assert_eq!(details.message, status.message());
        let [info, bad] = details.details.as_slice() else {
            panic!("expected ErrorInfo and BadRequest: {details:?}");
        };
        assert_eq!(info.type_url, "type.googleapis.com/google.rpc.ErrorInfo");
        let info = rpc::ErrorInfo::decode(info.value.as_slice()).expect("ErrorInfo");
        assert_eq!(info.reason, "INVALID_INPUT");
        assert_eq!(bad.type_url, "type.googleapis.com/google.rpc.BadRequest");
        let bad = rpc::BadRequest::decode(bad.value.as_slice()).expect("BadRequest");
        let got: BTreeSet<String> = bad
            .field_violations
            .iter()
            .inspect(|v| assert!(!v.description.is_empty(), "{v:?}"))
            .map(|v| v.field.clone())
            .collect();
        assert_eq!(got, expected, "{kind}: {bad:?}");
    }
    let listed = OperationsClient::new(channel)
        .list_operations(ListOperationsRequest {
            name: "projects/g/operations".into(),
            ..Default::default()
        })
        .await
        .expect("listed")
        .into_inner();
    assert!(listed.operations.is_empty(), "{listed:?}");
}

/// A kind, its input's fields, and the fields the refusal must name.
type GrpcCase = (
    &'static str,
    Vec<(&'static str, prost_types::Value)>,
    BTreeSet<String>,
);

async fn channel(env: &Env) -> Channel {
    Channel::from_shared(format!("http://{}", env.sys.grpc_addr))
        .expect("uri")
        .connect()
        .await
        .expect("grpc connects")
}

fn string(s: &str) -> prost_types::Value {
    prost_types::Value {
        kind: Some(prost_types::value::Kind::StringValue(s.into())),
    }
}

fn number(n: f64) -> prost_types::Value {
    prost_types::Value {
        kind: Some(prost_types::value::Kind::NumberValue(n)),
    }
}
