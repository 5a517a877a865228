//! The gRPC transport: the upstream `google.longrunning.Operations` service and `lro.v1.Jobs`,
//! calling the same [`Service`] functions as the REST routes. Errors carry a `google.rpc.Status`
//! with one `google.rpc.ErrorInfo` in the `grpc-status-details-bin` trailer, with the same codes,
//! reasons and messages as the REST envelope.

use std::collections::HashMap;
use std::time::Duration;

use lro_common::name::{OperationName, Parent};
use lro_common::operation::{Operation, Phase, Terminal};
use lro_common::status::Code;
use lro_common::time::Millis;
use lro_common::trace::TraceContext;
use prost::Message;
use prost_types::value::Kind;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response};

use crate::auth::{Credentials, Method, Principal};
use crate::error::{ApiError, Detail, ERROR_DOMAIN};
use crate::http::MAX_BODY_BYTES;
use crate::list;
use crate::metrics::{RequestMethod, Transport};
use crate::pb::google::longrunning::{self as lr, operations_server};
use crate::pb::google::rpc;
use crate::pb::lro::v1::{self as lro, jobs_server};
use crate::render::{METADATA_TYPE, STRUCT_TYPE, response_type};
use crate::route::collection;
use crate::service::{BatchCancel, Service, Submit};
use crate::tls::ServerTls;

const ERROR_INFO_TYPE: &str = "type.googleapis.com/google.rpc.ErrorInfo";

/// Serves both gRPC services on `listener` (over TLS with `tls`) until `shutdown` fires.
pub(crate) async fn serve(
    svc: Service,
    listener: TcpListener,
    tls: Option<&ServerTls>,
    shutdown: CancellationToken,
) -> Result<(), tonic::transport::Error> {
    let ops = operations_server::OperationsServer::new(Grpc(svc.clone()))
        .max_decoding_message_size(MAX_BODY_BYTES);
    let jobs = jobs_server::JobsServer::new(Grpc(svc)).max_decoding_message_size(MAX_BODY_BYTES);
    let server = tonic::transport::Server::builder()
        .add_service(ops)
        .add_service(jobs);
    let stop = shutdown.clone().cancelled_owned();
    match tls {
        None => {
            let incoming = tonic::transport::server::TcpIncoming::from(listener);
            server.serve_with_incoming_shutdown(incoming, stop).await
        }
        Some(tls) => {
            let incoming = crate::tls::grpc_incoming(listener, tls, shutdown);
            server.serve_with_incoming_shutdown(incoming, stop).await
        }
    }
}

struct Grpc(Service);

impl Grpc {
    /// The caller of `req`, from its `authorization` / `x-goog-api-key` metadata.
    fn caller<T>(
        &self,
        req: &Request<T>,
        method: Method,
        target: &str,
    ) -> Result<Principal, ApiError> {
        let md = req.metadata();
        let creds = Credentials {
            authorization: md.get("authorization").map(|v| v.as_bytes()),
            api_key: md.get("x-goog-api-key").and_then(|v| v.to_str().ok()),
        };
        self.0.caller(creds, method, target)
    }
}

/// The caller's W3C trace context from `traceparent` / `tracestate` metadata; absent or invalid
/// is `None`.
fn trace<T>(req: &Request<T>) -> Option<TraceContext> {
    let md = req.metadata();
    let text = |name: &str| md.get(name).and_then(|v| v.to_str().ok());
    TraceContext::from_headers(text("traceparent"), text("tracestate"))
}

type Answer<T> = Result<Response<T>, tonic::Status>;

#[tonic::async_trait]
impl operations_server::Operations for Grpc {
    async fn list_operations(
        &self,
        req: Request<lr::ListOperationsRequest>,
    ) -> Answer<lr::ListOperationsResponse> {
        let run = async {
            let parent = list_parent(&req.get_ref().name)?;
            let who = self.caller(&req, Method::List, &collection(&parent))?;
            let req = req.get_ref();
            let size = list::page_size_of(i64::from(req.page_size))?;
            let token = Some(req.page_token.as_str()).filter(|t| !t.is_empty());
            let (ops, next) = self.0.list(&who, &parent, &req.filter, size, token).await?;
            Ok(lr::ListOperationsResponse {
                operations: ops.iter().map(operation).collect(),
                next_page_token: next.unwrap_or_default(),
                unreachable: Vec::new(),
            })
        };
        self.answer(RequestMethod::List, run).await
    }

    async fn get_operation(&self, req: Request<lr::GetOperationRequest>) -> Answer<lr::Operation> {
        let run = async {
            let name = operation_name(&req.get_ref().name)?;
            let who = self.caller(&req, Method::Get, name.as_str())?;
            Ok(operation(&self.0.get(&who, &name).await?))
        };
        self.answer(RequestMethod::Get, run).await
    }

    async fn delete_operation(&self, req: Request<lr::DeleteOperationRequest>) -> Answer<()> {
        let run = async {
            let name = operation_name(&req.get_ref().name)?;
            let who = self.caller(&req, Method::Delete, name.as_str())?;
            self.0.delete(&who, &name).await
        };
        self.answer(RequestMethod::Delete, run).await
    }

    async fn cancel_operation(&self, req: Request<lr::CancelOperationRequest>) -> Answer<()> {
        let run = async {
            let name = operation_name(&req.get_ref().name)?;
            let who = self.caller(&req, Method::Cancel, name.as_str())?;
            self.0.cancel(&who, &name, trace(&req)).await
        };
        self.answer(RequestMethod::Cancel, run).await
    }

    /// Answers when the operation is done, or with its current state at the shorter of the
    /// request's timeout and the call's deadline (a little before the deadline, so the answer
    /// still reaches the caller).
    async fn wait_operation(
        &self,
        req: Request<lr::WaitOperationRequest>,
    ) -> Answer<lr::Operation> {
        let deadline = call_deadline(&req).map(|d| d.saturating_sub((d / 10).min(DEADLINE_MARGIN)));
        let run = async {
            let name = operation_name(&req.get_ref().name)?;
            let who = self.caller(&req, Method::Wait, name.as_str())?;
            let requested = req.get_ref().timeout.map(duration).transpose()?;
            let timeout = match (requested, deadline) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            Ok(operation(&self.0.wait(&who, &name, timeout).await?))
        };
        self.answer(RequestMethod::Wait, run).await
    }
}

#[tonic::async_trait]
impl jobs_server::Jobs for Grpc {
    async fn submit_job(&self, req: Request<lro::SubmitJobRequest>) -> Answer<lr::Operation> {
        let run = async {
            let parent = Parent::parse(&req.get_ref().parent)
                .map_err(|e| ApiError::invalid("INVALID_NAME", e.to_string()))?;
            let who = self.caller(&req, Method::Submit, &collection(&parent))?;
            let trace = trace(&req);
            let req = req.into_inner();
            let input = req.input.as_ref().map(struct_json).transpose()?;
            let submit = Submit {
                parent,
                kind: req.kind,
                input,
                request_id: Some(req.request_id).filter(|r| !r.is_empty()),
                timeout: req.timeout.map(duration).transpose()?,
                trace,
            };
            Ok(operation(&self.0.submit(&who, submit).await?))
        };
        self.answer(RequestMethod::Submit, run).await
    }

    async fn batch_cancel_operations(
        &self,
        req: Request<lro::BatchCancelOperationsRequest>,
    ) -> Answer<lr::Operation> {
        let run = async {
            let parent = Parent::parse(&req.get_ref().parent)
                .map_err(|e| ApiError::invalid("INVALID_NAME", e.to_string()))?;
            let who = self.caller(&req, Method::BatchCancel, &collection(&parent))?;
            let req = req.into_inner();
            let batch = BatchCancel {
                parent,
                filter: req.filter,
                request_id: Some(req.request_id).filter(|r| !r.is_empty()),
            };
            Ok(operation(&self.0.batch_cancel(&who, batch).await?))
        };
        self.answer(RequestMethod::BatchCancel, run).await
    }

    async fn list_kinds(
        &self,
        req: Request<lro::ListKindsRequest>,
    ) -> Answer<lro::ListKindsResponse> {
        let run = async {
            let who = self.caller(&req, Method::ListKinds, "kinds")?;
            let kinds = self.0.kinds(&who).await?;
            Ok(lro::ListKindsResponse {
                kinds: kinds.iter().map(kind).collect(),
            })
        };
        self.answer(RequestMethod::Kinds, run).await
    }
}

/// How much earlier than a call's deadline a wait answers, at most.
const DEADLINE_MARGIN: Duration = Duration::from_millis(100);

impl Grpc {
    /// Runs a call and answers it: the one place gRPC requests are timed and counted.
    async fn answer<T>(
        &self,
        method: RequestMethod,
        run: impl Future<Output = Result<T, ApiError>>,
    ) -> Answer<T> {
        let started = std::time::Instant::now();
        let result = run.await;
        let code = result.as_ref().map_or_else(|e| e.code, |_| Code::Ok);
        self.0
            .metrics
            .request(Transport::Grpc, method, code, started.elapsed());
        result.map(Response::new).map_err(status)
    }
}

/// `name` of a list request: the collection (`operations`, `projects/p/operations`) or its
/// parent (`projects/p`); empty is the top level.
fn list_parent(name: &str) -> Result<Parent, ApiError> {
    let parent = match name.strip_suffix("operations") {
        Some(p) if p.is_empty() || p.ends_with('/') => p.trim_end_matches('/'),
        _ => name,
    };
    Parent::parse(parent).map_err(|e| ApiError::invalid("INVALID_NAME", e.to_string()))
}

fn operation_name(name: &str) -> Result<OperationName, ApiError> {
    OperationName::parse(name).map_err(|e| ApiError::invalid("INVALID_NAME", e.to_string()))
}

/// A request's `google.protobuf.Duration`; negative or out-of-range ones are refused.
fn duration(d: prost_types::Duration) -> Result<Duration, ApiError> {
    Duration::try_from(d)
        .map_err(|e| ApiError::invalid("INVALID_TIMEOUT", format!("timeout {d}: {e}")))
}

/// The call's deadline from its `grpc-timeout` header (gRPC over HTTP/2: up to 8 digits and a
/// unit H, M, S, m, u or n).
fn call_deadline<T>(req: &Request<T>) -> Option<Duration> {
    let v = req.metadata().get("grpc-timeout")?.to_str().ok()?;
    let (n, unit) = v.split_at(v.len().checked_sub(1)?);
    let n: u64 = n.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.saturating_mul(3600)),
        "M" => Duration::from_secs(n.saturating_mul(60)),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// The error as gRPC sends it: code and message, and the `google.rpc.Status` with its
/// `ErrorInfo` and further details in the details trailer.
fn status(e: ApiError) -> tonic::Status {
    let info = rpc::ErrorInfo {
        reason: e.reason.to_owned(),
        domain: ERROR_DOMAIN.to_owned(),
        metadata: e.metadata.into_iter().collect::<HashMap<_, _>>(),
    };
    let details = rpc::Status {
        code: e.code.as_i32(),
        message: e.message.clone(),
        details: std::iter::once(any(ERROR_INFO_TYPE, &info))
            .chain(e.details.iter().map(detail))
            .collect(),
    };
    tonic::Status::with_details(
        tonic::Code::from_i32(e.code.as_i32()),
        e.message,
        details.encode_to_vec().into(),
    )
}

fn detail(d: &Detail) -> prost_types::Any {
    match d {
        Detail::RetryInfo { retry_delay } => any(
            d.type_url(),
            &rpc::RetryInfo {
                retry_delay: prost_types::Duration::try_from(*retry_delay).ok(),
            },
        ),
        Detail::BadRequest(violations) => {
            let msg = rpc::BadRequest {
                field_violations: violations
                    .iter()
                    .map(|v| rpc::bad_request::FieldViolation {
                        field: v.field.clone(),
                        description: v.description.clone(),
                        ..Default::default()
                    })
                    .collect(),
            };
            any(d.type_url(), &msg)
        }
    }
}

fn any(type_url: &str, msg: &impl Message) -> prost_types::Any {
    prost_types::Any {
        type_url: type_url.to_owned(),
        value: msg.encode_to_vec(),
    }
}

/// The operation as a `google.longrunning.Operation`: the same fields as the REST JSON.
pub fn operation(op: &Operation) -> lr::Operation {
    let result = match &op.phase {
        Phase::Done { result, .. } => Some(match result {
            Terminal::Succeeded(v) => {
                let response = match (response_type(op), value(v).kind) {
                    (STRUCT_TYPE, Some(Kind::StructValue(s))) => any(STRUCT_TYPE, &s),
                    (STRUCT_TYPE, _) => any(STRUCT_TYPE, &prost_types::Struct::default()),
                    (t, _) => any(t, &value(v)),
                };
                lr::operation::Result::Response(response)
            }
            Terminal::Failed(s) => lr::operation::Result::Error(rpc_status(s)),
            Terminal::Cancelled => {
                lr::operation::Result::Error(rpc_status(&lro_common::status::Status::cancelled()))
            }
        }),
        _ => None,
    };
    lr::Operation {
        name: op.name.as_str().to_owned(),
        metadata: Some(any(METADATA_TYPE, &metadata(op))),
        done: op.is_done(),
        result,
    }
}

fn rpc_status(s: &lro_common::status::Status) -> rpc::Status {
    rpc::Status {
        code: s.code,
        message: s.message.clone(),
        details: Vec::new(),
    }
}

fn timestamp(ms: Millis) -> prost_types::Timestamp {
    (std::time::UNIX_EPOCH + Duration::from_millis(ms)).into()
}

fn metadata(op: &Operation) -> lro::OperationMetadata {
    let run = op.run();
    let ended = match op.phase {
        Phase::Done { ended, .. } => Some(ended),
        _ => None,
    };
    let next_attempt = match (&op.phase, op.not_before) {
        (Phase::Queued, Some(at)) => Some(at),
        _ => None,
    };
    let state = match op.state() {
        lro_common::operation::State::Queued => lro::State::Queued,
        lro_common::operation::State::Running => lro::State::Running,
        lro_common::operation::State::Cancelling => lro::State::Cancelling,
        lro_common::operation::State::Succeeded => lro::State::Succeeded,
        lro_common::operation::State::Failed => lro::State::Failed,
        lro_common::operation::State::Cancelled => lro::State::Cancelled,
    };
    lro::OperationMetadata {
        kind: op.kind.clone(),
        state: state as i32,
        create_time: Some(timestamp(op.created)),
        start_time: run.map(|r| timestamp(r.started)),
        end_time: ended.map(timestamp),
        update_time: Some(timestamp(op.updated)),
        attempt: i32::try_from(op.attempt).unwrap_or(i32::MAX),
        worker: run.map(|r| r.worker.clone()).unwrap_or_default(),
        progress_percent: op
            .progress
            .as_ref()
            .map_or(0, |p| p.percent.min(100) as i32),
        progress_message: op
            .progress
            .as_ref()
            .map(|p| p.message.clone())
            .unwrap_or_default(),
        cancel_requested: op.cancel_requested.is_some(),
        cancel_time: op.cancel_requested.map(timestamp),
        cancel_requested_by: op.cancel_requested_by.clone().unwrap_or_default(),
        timeout: op
            .timeout_ms
            .and_then(|ms| Duration::from_millis(ms).try_into().ok()),
        request_id: op.request_id.clone().unwrap_or_default(),
        stop_forced: op.stop_forced,
        next_attempt_time: next_attempt.map(timestamp),
        last_attempt_error: op.last_error.as_ref().map(rpc_status),
    }
}

/// A kind as an `lro.v1.Kind`; its schema is an object (see `schema.rs`).
fn kind(k: &lro_common::kinds::KindInfo) -> lro::Kind {
    let input_schema = match value(&k.input_schema).kind {
        Some(Kind::StructValue(s)) => s,
        _ => prost_types::Struct::default(),
    };
    lro::Kind {
        name: k.name.clone(),
        cancellable: k.cancellable,
        input_schema: Some(input_schema),
    }
}

/// A JSON value as a `google.protobuf.Value`.
fn value(v: &Value) -> prost_types::Value {
    let kind = match v {
        Value::Null => Kind::NullValue(0),
        Value::Bool(b) => Kind::BoolValue(*b),
        Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or_default()),
        Value::String(s) => Kind::StringValue(s.clone()),
        Value::Array(a) => Kind::ListValue(prost_types::ListValue {
            values: a.iter().map(value).collect(),
        }),
        Value::Object(o) => Kind::StructValue(prost_types::Struct {
            fields: o.iter().map(|(k, v)| (k.clone(), value(v))).collect(),
        }),
    };
    prost_types::Value { kind: Some(kind) }
}

/// A request's `google.protobuf.Struct` as a JSON object. Numbers JSON cannot hold (NaN, ±∞)
/// are refused.
fn struct_json(s: &prost_types::Struct) -> Result<Value, ApiError> {
    s.fields
        .iter()
        .map(|(k, v)| Ok((k.clone(), value_json(v)?)))
        .collect::<Result<serde_json::Map<_, _>, _>>()
        .map(Value::Object)
}

fn value_json(v: &prost_types::Value) -> Result<Value, ApiError> {
    Ok(match &v.kind {
        None | Some(Kind::NullValue(_)) => Value::Null,
        Some(Kind::BoolValue(b)) => Value::Bool(*b),
        // Struct numbers are doubles; whole ones become JSON integers, as in a REST body.
        Some(Kind::NumberValue(n)) if n.fract() == 0.0 && n.abs() < 2f64.powi(53) => {
            Value::from(*n as i64)
        }
        Some(Kind::NumberValue(n)) => serde_json::Number::from_f64(*n)
            .map(Value::Number)
            .ok_or_else(|| {
                ApiError::invalid(
                    "INVALID_INPUT",
                    format!("input holds {n}, which JSON cannot"),
                )
            })?,
        Some(Kind::StringValue(s)) => Value::String(s.clone()),
        Some(Kind::ListValue(l)) => {
            Value::Array(l.values.iter().map(value_json).collect::<Result<_, _>>()?)
        }
        Some(Kind::StructValue(s)) => struct_json(s)?,
    })
}

#[cfg(test)]
mod tests {
    use lro_common::name::Parent;
    use lro_common::operation::{NewOperation, Progress};
    use lro_common::status::{Code, Status};
    use prost_reflect::{DescriptorPool, DynamicMessage, SerializeOptions};
    use serde_json::json;

    use super::*;

    /// Operations in every state and with every optional field set somewhere.
    fn samples() -> Vec<Operation> {
        let t = 1_764_000_000_123;
        let new = |timeout_ms, request_id: Option<&str>| {
            Operation::new(
                NewOperation {
                    name: Parent::parse("projects/p")
                        .and_then(|p| p.operation("0193"))
                        .expect("name"),
                    kind: "sleep".into(),
                    input: json!({}),
                    cancellable: true,
                    request_id: request_id.map(str::to_owned),
                    timeout_ms,
                    retention_ms: None,
                },
                t,
            )
        };
        let mut out = vec![new(None, None), new(Some(1_500), Some("r-1"))];
        let mut running = new(Some(60_000), None);
        running.start("w1", t + 1_000).expect("start");
        let progress = Progress {
            percent: 40,
            message: "step 4 of 10".into(),
        };
        running
            .report_progress(1, progress, t + 2_000)
            .expect("progress");
        out.push(running.clone());
        let mut cancelling = running.clone();
        cancelling
            .request_cancel(t + 3_000, Some("alice"))
            .expect("cancel");
        out.push(cancelling.clone());
        let mut cancelled = cancelling.clone();
        cancelled
            .finish(1, Terminal::Cancelled, t + 3_500)
            .expect("finish");
        out.push(cancelled);
        let mut forced = cancelling;
        forced
            .finish_forced(1, Terminal::Cancelled, t + 13_000)
            .expect("forced");
        out.push(forced);
        let output = json!({"slept": "1s", "n": 3, "x": 0.5, "ok": true, "none": null, "list": [1, "a", {"b": []}]});
        let mut succeeded = running.clone();
        succeeded
            .finish(1, Terminal::Succeeded(output), t + 4_000)
            .expect("finish");
        out.push(succeeded);
        let mut batch = new(None, None);
        batch.kind = lro_common::kinds::BATCH_CANCEL.into();
        batch.start("w1", t + 1_000).expect("start");
        let counts = json!({"matched": 30, "cancelled": 25, "alreadyDone": 3, "notCancellable": 2});
        batch
            .finish(1, Terminal::Succeeded(counts), t + 4_000)
            .expect("finish");
        out.push(batch);
        let mut failed = running.clone();
        failed
            .finish(
                1,
                Terminal::Failed(Status::new(Code::Internal, "boom")),
                t + 4_000,
            )
            .expect("finish");
        out.push(failed);
        let mut retried = running;
        retried
            .retry(
                1,
                Status::new(Code::Unavailable, "try again"),
                t + 4_000,
                t + 5_000,
            )
            .expect("retry");
        out.push(retried);
        out
    }

    /// Numbers as doubles: the proto form of a JSON number is a double, so `3` and `3.0` are the
    /// same value.
    fn numbers_as_doubles(v: Value) -> Value {
        match v {
            Value::Number(n) => json!(n.as_f64()),
            Value::Array(a) => Value::Array(a.into_iter().map(numbers_as_doubles).collect()),
            Value::Object(o) => Value::Object(
                o.into_iter()
                    .map(|(k, v)| (k, numbers_as_doubles(v)))
                    .collect(),
            ),
            other => other,
        }
    }

    /// The REST JSON is exactly what the proto3 JSON mapping makes of the gRPC message, for
    /// operations in every state: one mapping, two transports.
    #[test]
    fn rest_json_is_the_proto3_json_of_the_grpc_message() {
        let pool = DescriptorPool::decode(crate::pb::FILE_DESCRIPTOR_SET).expect("descriptors");
        let desc = pool
            .get_message_by_name("google.longrunning.Operation")
            .expect("Operation");
        for op in samples() {
            let bytes = operation(&op).encode_to_vec();
            let msg = DynamicMessage::decode(desc.clone(), bytes.as_slice()).expect("decode");
            let mut ser = serde_json::Serializer::new(Vec::new());
            msg.serialize_with_options(&mut ser, &SerializeOptions::new())
                .expect("serialize");
            let via_proto: Value = serde_json::from_slice(&ser.into_inner()).expect("json");
            let rest = crate::render::operation(&op);
            assert_eq!(
                numbers_as_doubles(rest),
                numbers_as_doubles(via_proto),
                "state {:?}",
                op.state()
            );
        }
    }

    /// `GET /v1/kinds` answers the proto3 JSON of the `ListKinds` message.
    #[test]
    fn rest_kinds_json_is_the_proto3_json_of_the_grpc_message() {
        let pool = DescriptorPool::decode(crate::pb::FILE_DESCRIPTOR_SET).expect("descriptors");
        let desc = pool
            .get_message_by_name("lro.v1.ListKindsResponse")
            .expect("ListKindsResponse");
        let kinds = lro_common::kinds::builtin();
        let msg = lro::ListKindsResponse {
            kinds: kinds.iter().map(kind).collect(),
        };
        let msg = DynamicMessage::decode(desc, msg.encode_to_vec().as_slice()).expect("decode");
        let mut ser = serde_json::Serializer::new(Vec::new());
        msg.serialize_with_options(&mut ser, &SerializeOptions::new())
            .expect("serialize");
        let via_proto: Value = serde_json::from_slice(&ser.into_inner()).expect("json");
        assert_eq!(
            numbers_as_doubles(crate::render::kinds(&kinds)),
            numbers_as_doubles(via_proto)
        );
    }
}
