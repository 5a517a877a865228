//! The gRPC transport: the upstream google.longrunning.Operations service and lro.v1.Jobs, called
//! with the tonic client generated from the shipped protos. Same operations, same errors (code,
//! ErrorInfo reason) as REST.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use lro_api::pb::google::longrunning::operations_client::OperationsClient;
use lro_api::pb::google::longrunning::{
    self as lr, CancelOperationRequest, DeleteOperationRequest, GetOperationRequest,
    ListOperationsRequest, WaitOperationRequest,
};
use lro_api::pb::google::rpc;
use lro_api::pb::lro::v1::jobs_client::JobsClient;
use lro_api::pb::lro::v1::{OperationMetadata, State, SubmitJobRequest};
use lro_worker::CancelReason;
use prost::Message;
use serde_json::json;
use tonic::transport::Channel;

use crate::harness::{Env, state_of};

/// Both gRPC services of one api.
#[derive(Clone)]
pub struct Grpc {
    pub ops: OperationsClient<Channel>,
    pub jobs: JobsClient<Channel>,
}

impl Grpc {
    pub async fn connect(env: &Env) -> Self {
        Self::at(&format!("http://{}", env.sys.grpc_addr)).await
    }

    /// The clients of the api at `base` (`http://host:port`).
    pub async fn at(base: &str) -> Self {
        let channel = Channel::from_shared(base.to_owned())
            .expect("uri")
            .connect()
            .await
            .expect("grpc connects");
        Self {
            ops: OperationsClient::new(channel.clone()),
            jobs: JobsClient::new(channel),
        }
    }

    async fn submit(&self, parent: &str, kind: &str) -> lr::Operation {
        let req = SubmitJobRequest {
            parent: parent.into(),
            kind: kind.into(),
            ..Default::default()
        };
        self.jobs
            .clone()
            .submit_job(req)
            .await
            .expect("submitted")
            .into_inner()
    }

    async fn get(&self, name: &str) -> Result<lr::Operation, tonic::Status> {
        let req = GetOperationRequest { name: name.into() };
        self.ops
            .clone()
            .get_operation(req)
            .await
            .map(|r| r.into_inner())
    }

    async fn wait(
        &self,
        name: &str,
        timeout: Option<Duration>,
        deadline: Option<Duration>,
    ) -> Result<lr::Operation, tonic::Status> {
        let mut req = tonic::Request::new(WaitOperationRequest {
            name: name.into(),
            timeout: timeout.map(|t| t.try_into().expect("duration")),
        });
        if let Some(d) = deadline {
            req.set_timeout(d);
        }
        self.ops
            .clone()
            .wait_operation(req)
            .await
            .map(|r| r.into_inner())
    }
}

fn metadata(op: &lr::Operation) -> OperationMetadata {
    let any = op.metadata.as_ref().expect("metadata");
    assert_eq!(any.type_url, "type.googleapis.com/lro.v1.OperationMetadata");
    OperationMetadata::decode(any.value.as_slice()).expect("metadata decodes")
}

/// The code and the ErrorInfo (reason, domain) of a gRPC error, from its details trailer.
fn error_info(status: &tonic::Status) -> (tonic::Code, String, String) {
    let details = rpc::Status::decode(status.details()).expect("grpc-status-details-bin decodes");
    assert_eq!(details.code, status.code() as i32, "{status:?}");
    assert_eq!(details.message, status.message(), "{status:?}");
    let [info] = details.details.as_slice() else {
        panic!("expected one detail: {details:?}");
    };
    assert_eq!(info.type_url, "type.googleapis.com/google.rpc.ErrorInfo");
    let info = rpc::ErrorInfo::decode(info.value.as_slice()).expect("ErrorInfo decodes");
    (status.code(), info.reason, info.domain)
}

#[tokio::test]
async fn grpc_submit_and_wait_returns_the_same_operation_as_rest() {
    let mut env = Env::start().await;
    env.worker(lro_worker::Kinds::builtin(), 4).await;
    let grpc = Grpc::connect(&env).await;

    let req = SubmitJobRequest {
        kind: "sleep".into(),
        input: Some(prost_types::Struct {
            fields: [
                ("duration".to_owned(), string_value("10ms")),
                ("steps".to_owned(), number_value(2.0)),
            ]
            .into(),
        }),
        request_id: "grpc-1".into(),
        timeout: Some(Duration::from_secs(30).try_into().expect("duration")),
        ..Default::default()
    };
    let submitted = grpc
        .jobs
        .clone()
        .submit_job(req)
        .await
        .expect("ok")
        .into_inner();
    assert!(!submitted.done);
    let m = metadata(&submitted);
    assert_eq!(
        (m.kind.as_str(), m.request_id.as_str()),
        ("sleep", "grpc-1")
    );
    assert_eq!(
        m.timeout,
        Some(prost_types::Duration {
            seconds: 30,
            nanos: 0
        })
    );

    let done = grpc
        .wait(&submitted.name, Some(Duration::from_secs(20)), None)
        .await
        .expect("wait");
    assert!(done.done, "{done:?}");
    assert_eq!(metadata(&done).state, State::Succeeded as i32);
    let Some(lr::operation::Result::Response(any)) = &done.result else {
        panic!("no response: {done:?}");
    };
    assert_eq!(any.type_url, "type.googleapis.com/google.protobuf.Value");
    let value = prost_types::Value::decode(any.value.as_slice()).expect("Value decodes");
    assert_eq!(value, struct_value([("slept", string_value("0.010s"))]));

    // REST shows the same operation.
    let rest = env.api.get(&done.name).await.ok();
    assert_eq!(state_of(&rest), "SUCCEEDED");
    assert_eq!(rest["response"]["value"], json!({ "slept": "0.010s" }));
    assert_eq!(rest["metadata"]["requestId"], "grpc-1");
    // The idempotency key works across transports.
    let again = env
        .api
        .submit_with("", json!({ "kind": "sleep", "requestId": "grpc-1" }))
        .await
        .ok();
    assert_eq!(again["name"], done.name.as_str());
}

#[tokio::test]
async fn grpc_cancel_of_a_running_job_fires_its_token_and_ends_cancelled() {
    let (env, probe) = Env::with_worker(4).await;
    let grpc = Grpc::connect(&env).await;

    let op = grpc.submit("", "gate").await;
    probe.started(&op.name).await;
    let req = CancelOperationRequest {
        name: op.name.clone(),
    };
    grpc.ops
        .clone()
        .cancel_operation(req)
        .await
        .expect("cancel");
    let done = grpc
        .wait(&op.name, Some(Duration::from_secs(20)), None)
        .await
        .expect("wait");
    let Some(lr::operation::Result::Error(status)) = &done.result else {
        panic!("not an error: {done:?}");
    };
    assert_eq!(status.code, tonic::Code::Cancelled as i32);
    let m = metadata(&done);
    assert_eq!(m.state, State::Cancelled as i32);
    assert!(m.cancel_requested && m.cancel_time.is_some(), "{m:?}");
    assert_eq!(probe.seen(&op.name).stopped, Some(CancelReason::User));
}

#[tokio::test]
async fn grpc_list_pages_through_a_parent_with_a_filter_and_delete_removes() {
    let (env, probe) = Env::with_worker(8).await;
    let grpc = Grpc::connect(&env).await;

    let mut gates = BTreeSet::new();
    for _ in 0..5 {
        gates.insert(grpc.submit("projects/p", "gate").await.name);
    }
    let other = grpc.submit("projects/p", "noop").await.name;
    grpc.submit("", "gate").await;

    // The collection and its parent are both accepted as the list's name.
    for collection in ["projects/p/operations", "projects/p"] {
        let mut seen = BTreeSet::new();
        let mut token = String::new();
        let mut pages = 0;
        loop {
            let req = ListOperationsRequest {
                name: collection.into(),
                filter: "metadata.kind = \"gate\"".into(),
                page_size: 2,
                page_token: token,
                ..Default::default()
            };
            let page = grpc
                .ops
                .clone()
                .list_operations(req)
                .await
                .expect("list")
                .into_inner();
            pages += 1;
            assert!(page.operations.len() <= 2);
            for op in page.operations {
                assert!(seen.insert(op.name), "listed twice");
            }
            if page.next_page_token.is_empty() {
                break;
            }
            token = page.next_page_token;
        }
        assert_eq!(seen, gates, "{collection}");
        assert!(pages >= 3, "{pages} pages");
    }

    // Delete: gone for both transports, and for the list.
    let req = DeleteOperationRequest {
        name: other.clone(),
    };
    grpc.ops
        .clone()
        .delete_operation(req)
        .await
        .expect("delete");
    let gone = grpc.get(&other).await.expect_err("deleted");
    assert_eq!(gone.code(), tonic::Code::NotFound);
    env.api.get(&other).await.error(404, "NOT_FOUND");
    for name in &gates {
        probe.release(name);
    }
}

#[tokio::test]
async fn grpc_wait_answers_at_the_shorter_of_its_timeout_and_the_call_deadline() {
    let (env, probe) = Env::with_worker(4).await;
    let grpc = Grpc::connect(&env).await;
    let op = grpc.submit("", "gate").await;
    probe.started(&op.name).await;

    // The request's timeout is the shorter: the operation as it is, once it has run out.
    let asked = Instant::now();
    let waited = grpc
        .wait(
            &op.name,
            Some(Duration::from_millis(300)),
            Some(Duration::from_secs(20)),
        )
        .await
        .expect("wait answers");
    assert!(!waited.done);
    assert!(
        asked.elapsed() >= Duration::from_millis(300),
        "{:?}",
        asked.elapsed()
    );

    // The call's deadline is the shorter: still an answer (not DEADLINE_EXCEEDED), after most
    // of the deadline has passed.
    let asked = Instant::now();
    let waited = grpc
        .wait(
            &op.name,
            Some(Duration::from_secs(60)),
            Some(Duration::from_millis(800)),
        )
        .await
        .expect("wait answers before the deadline");
    assert!(!waited.done);
    assert!(
        asked.elapsed() >= Duration::from_millis(600),
        "{:?}",
        asked.elapsed()
    );

    // A done operation answers at once, whatever the timeout.
    probe.release(&op.name);
    let done = grpc.wait(&op.name, None, None).await.expect("wait");
    assert!(done.done, "{done:?}");
}

#[tokio::test]
async fn grpc_errors_carry_the_rest_code_and_error_info() {
    // No worker: the uninterruptible job stays queued, and nothing else runs.
    let env = Env::start().await;
    let grpc = Grpc::connect(&env).await;
    let unknown = "operations/0193d0f5-0000-7000-8000-000000000000";

    let uninterruptible = grpc.submit("", "uninterruptible").await.name;
    // (what, the gRPC answer, its expected code and reason, the REST status of the same call)
    let cases: Vec<Case> = vec![
        (
            "get unknown",
            grpc.get(unknown).await.map(drop),
            tonic::Code::NotFound,
            "OPERATION_NOT_FOUND",
            env.api.get(unknown).await.status,
        ),
        (
            "get bad name",
            grpc.get("operations/..").await.map(drop),
            tonic::Code::InvalidArgument,
            "INVALID_NAME",
            400,
        ),
        (
            "get empty name",
            grpc.get("").await.map(drop),
            tonic::Code::InvalidArgument,
            "INVALID_NAME",
            400,
        ),
        (
            "cancel not cancellable",
            grpc.ops
                .clone()
                .cancel_operation(CancelOperationRequest {
                    name: uninterruptible.clone(),
                })
                .await
                .map(drop),
            tonic::Code::Unimplemented,
            "NOT_CANCELLABLE",
            env.api.cancel(&uninterruptible).await.status,
        ),
        (
            "delete unknown",
            grpc.ops
                .clone()
                .delete_operation(DeleteOperationRequest {
                    name: unknown.into(),
                })
                .await
                .map(drop),
            tonic::Code::NotFound,
            "OPERATION_NOT_FOUND",
            env.api.delete(unknown).await.status,
        ),
        (
            "list bad filter",
            grpc.ops
                .clone()
                .list_operations(ListOperationsRequest {
                    name: "operations".into(),
                    filter: "nonsense".into(),
                    ..Default::default()
                })
                .await
                .map(drop),
            tonic::Code::InvalidArgument,
            "INVALID_FILTER",
            env.api.list("operations", "filter=nonsense").await.status,
        ),
        (
            "list negative page size",
            grpc.ops
                .clone()
                .list_operations(ListOperationsRequest {
                    page_size: -1,
                    ..Default::default()
                })
                .await
                .map(drop),
            tonic::Code::InvalidArgument,
            "INVALID_PAGE_SIZE",
            env.api.list("operations", "pageSize=-1").await.status,
        ),
        (
            "list bad page token",
            grpc.ops
                .clone()
                .list_operations(ListOperationsRequest {
                    page_token: "garbage".into(),
                    ..Default::default()
                })
                .await
                .map(drop),
            tonic::Code::InvalidArgument,
            "INVALID_PAGE_TOKEN",
            env.api.list("operations", "pageToken=garbage").await.status,
        ),
        (
            "submit unknown kind",
            grpc.jobs
                .clone()
                .submit_job(SubmitJobRequest {
                    kind: "nope".into(),
                    ..Default::default()
                })
                .await
                .map(drop),
            tonic::Code::InvalidArgument,
            "UNKNOWN_KIND",
            env.api
                .submit_with("", json!({ "kind": "nope" }))
                .await
                .status,
        ),
        (
            "submit negative timeout",
            grpc.jobs
                .clone()
                .submit_job(SubmitJobRequest {
                    kind: "noop".into(),
                    timeout: Some(prost_types::Duration {
                        seconds: -1,
                        nanos: 0,
                    }),
                    ..Default::default()
                })
                .await
                .map(drop),
            tonic::Code::InvalidArgument,
            "INVALID_TIMEOUT",
            400,
        ),
        (
            "submit under a bad parent",
            grpc.jobs
                .clone()
                .submit_job(SubmitJobRequest {
                    parent: "projects".into(),
                    kind: "noop".into(),
                    ..Default::default()
                })
                .await
                .map(drop),
            tonic::Code::InvalidArgument,
            "INVALID_NAME",
            400,
        ),
    ];
    for (what, result, code, reason, http) in cases {
        let status = result.expect_err(what);
        let (got_code, got_reason, domain) = error_info(&status);
        assert_eq!(
            (got_code, got_reason.as_str()),
            (code, reason),
            "{what}: {status:?}"
        );
        assert_eq!(domain, "lro", "{what}");
        let rest_code = lro_common::status::Code::from_i32(code as i32).expect("code");
        assert_eq!(
            rest_code.http_status(),
            http,
            "{what}: REST answers the same code"
        );
    }
    // Nothing was created by the refused submissions: only the uninterruptible job exists.
    let all = env.api.list_all("operations", "").await;
    assert_eq!(all.len(), 1, "{all:?}");
}

type Case = (
    &'static str,
    Result<(), tonic::Status>,
    tonic::Code,
    &'static str,
    u16,
);

fn string_value(s: &str) -> prost_types::Value {
    prost_types::Value {
        kind: Some(prost_types::value::Kind::StringValue(s.into())),
    }
}

fn number_value(n: f64) -> prost_types::Value {
    prost_types::Value {
        kind: Some(prost_types::value::Kind::NumberValue(n)),
    }
}

fn struct_value<const N: usize>(fields: [(&str, prost_types::Value); N]) -> prost_types::Value {
    prost_types::Value {
        kind: Some(prost_types::value::Kind::StructValue(prost_types::Struct {
            fields: fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
        })),
    }
}
