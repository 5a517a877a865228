//! The prost side of the one mapping: the `google.longrunning.Operation` and
//! `ListOperationsResponse` built from [`OperationView`] / [`ListView`] (so gRPC answers the
//! same fields REST does), kinds, error details, and a request's `Struct` back to JSON. Only
//! types are converted here; what each field is, [`crate::view`] decides.

use std::time::Duration;

use lro_common::operation::State;
use lro_common::status::Status;
use lro_common::time::Millis;
use prost::Message;
use prost_types::value::Kind;
use serde_json::Value;

use crate::error::{ApiError, Detail};
use crate::pb::google::longrunning as lr;
use crate::pb::google::rpc;
use crate::pb::lro::v1 as lro;
use crate::view::{ListView, METADATA_TYPE, MetadataView, OperationView, Outcome, STRUCT_TYPE};

/// The operation as a `google.longrunning.Operation`.
pub(super) fn operation(op: &OperationView<'_>) -> lr::Operation {
    let result = op.result.as_ref().map(|r| match r {
        Outcome::Error(s) => lr::operation::Result::Error(rpc_status(&s.0)),
        Outcome::Response { type_url, value: v } => {
            lr::operation::Result::Response(match (*type_url, value(v).kind) {
                (STRUCT_TYPE, Some(Kind::StructValue(s))) => any(STRUCT_TYPE, &s),
                (STRUCT_TYPE, _) => any(STRUCT_TYPE, &prost_types::Struct::default()),
                (t, _) => any(t, &value(v)),
            })
        }
    });
    lr::Operation {
        name: op.name.to_owned(),
        metadata: Some(any(METADATA_TYPE, &metadata(&op.metadata))),
        done: op.done(),
        result,
    }
}

/// A page of operations as a `google.longrunning.ListOperationsResponse`.
pub(super) fn list(page: &ListView<'_>) -> lr::ListOperationsResponse {
    lr::ListOperationsResponse {
        operations: page.operations.iter().map(operation).collect(),
        next_page_token: page.next_page_token.unwrap_or_default().to_owned(),
        unreachable: Vec::new(),
    }
}

fn metadata(m: &MetadataView<'_>) -> lro::OperationMetadata {
    let state = match m.state {
        State::Queued => lro::State::Queued,
        State::Running => lro::State::Running,
        State::Cancelling => lro::State::Cancelling,
        State::Succeeded => lro::State::Succeeded,
        State::Failed => lro::State::Failed,
        State::Cancelled => lro::State::Cancelled,
    };
    let int = |n: u32| i32::try_from(n).unwrap_or(i32::MAX);
    lro::OperationMetadata {
        kind: m.kind.to_owned(),
        state: state as i32,
        create_time: Some(timestamp(m.create_time)),
        start_time: m.start_time.map(timestamp),
        end_time: m.end_time.map(timestamp),
        update_time: Some(timestamp(m.update_time)),
        attempt: int(m.attempt),
        worker: m.worker.to_owned(),
        progress_percent: int(m.progress_percent),
        progress_message: m.progress_message.to_owned(),
        cancel_requested: m.cancel_requested,
        cancel_time: m.cancel_time.map(timestamp),
        cancel_requested_by: m.cancel_requested_by.to_owned(),
        timeout: m.timeout.and_then(|d| d.try_into().ok()),
        request_id: m.request_id.to_owned(),
        stop_forced: m.stop_forced,
        next_attempt_time: m.next_attempt_time.map(timestamp),
        last_attempt_error: m.last_attempt_error.as_ref().map(|s| rpc_status(&s.0)),
    }
}

fn rpc_status(s: &Status) -> rpc::Status {
    rpc::Status {
        code: s.code,
        message: s.message.clone(),
        details: Vec::new(),
    }
}

fn timestamp(ms: Millis) -> prost_types::Timestamp {
    (std::time::UNIX_EPOCH + Duration::from_millis(ms)).into()
}

pub(super) fn detail(d: &Detail) -> prost_types::Any {
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

pub(super) fn any(type_url: &str, msg: &impl Message) -> prost_types::Any {
    prost_types::Any {
        type_url: type_url.to_owned(),
        value: msg.encode_to_vec(),
    }
}

/// A kind as an `lro.v1.Kind`; its schema is an object (see `schema/mod.rs`).
pub(super) fn kind(k: &lro_common::kinds::KindInfo) -> lro::Kind {
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
pub(super) fn struct_json(s: &prost_types::Struct) -> Result<Value, ApiError> {
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
    use lro_common::operation::{NewOperation, Operation, Progress, Terminal};
    use lro_common::status::Code;
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
        let progress = |percent, message: &str| Progress {
            percent,
            message: message.into(),
        };
        running
            .report_progress(1, progress(40, "step 4 of 10"), t + 2_000)
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
        out.push(retried.clone());
        // Retried and running again: attempt 2, with the first attempt's error.
        let mut second = retried;
        second.start("w2", t + 5_000).expect("start again");
        second
            .report_progress(2, progress(0, "warming up"), t + 5_500)
            .expect("progress");
        out.push(second.clone());
        let mut lost = second;
        lost.lose(2, t + 6_000).expect("lose");
        out.push(lost);
        // Cancelled while queued, by a known principal; on a whole second.
        let mut queued_cancel = new(None, Some("r-2"));
        queued_cancel
            .request_cancel(1_764_000_001_000, Some("bob"))
            .expect("cancel");
        out.push(queued_cancel);
        // Cancel requested by nobody known; progress 100 with no message.
        let mut anon = new(Some(250), None);
        anon.start("w3", t + 1_000).expect("start");
        anon.report_progress(1, progress(100, ""), t + 1_500)
            .expect("progress");
        anon.request_cancel(t + 1_600, None).expect("cancel");
        out.push(anon);
        // Outputs that are not objects, and a failure with neither code nor message.
        for output in [json!("done"), json!(null), json!(7), json!([1, 2])] {
            let mut op = new(None, None);
            op.start("w1", t + 1_000).expect("start");
            op.finish(1, Terminal::Succeeded(output), t + 2_000)
                .expect("finish");
            out.push(op);
        }
        let mut blank = new(None, None);
        blank.start("w1", t + 1_000).expect("start");
        let empty = Status {
            code: 0,
            message: String::new(),
        };
        blank
            .finish(1, Terminal::Failed(empty), t + 2_000)
            .expect("finish");
        out.push(blank);
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

    /// What the proto3 JSON mapping (prost-reflect's) makes of `msg`, a `message` (full name).
    fn proto3_json(message: &str, msg: &impl Message) -> Value {
        let pool = DescriptorPool::decode(crate::pb::FILE_DESCRIPTOR_SET).expect("descriptors");
        let desc = pool.get_message_by_name(message).expect(message);
        let msg = DynamicMessage::decode(desc, msg.encode_to_vec().as_slice()).expect("decode");
        let mut ser = serde_json::Serializer::new(Vec::new());
        msg.serialize_with_options(&mut ser, &SerializeOptions::new())
            .expect("serialize");
        numbers_as_doubles(serde_json::from_slice(&ser.into_inner()).expect("json"))
    }

    /// The bytes REST answers, read back.
    fn rest_json(body: &impl serde::Serialize) -> Value {
        let bytes = serde_json::to_vec(body).expect("serialize");
        numbers_as_doubles(serde_json::from_slice(&bytes).expect("json"))
    }

    /// The REST JSON is exactly what the proto3 JSON mapping makes of the gRPC message, for
    /// operations in every state: one view, two transports.
    #[test]
    fn rest_json_is_the_proto3_json_of_the_grpc_message() {
        for op in samples() {
            let view = OperationView::of(&op);
            assert_eq!(
                rest_json(&view),
                proto3_json("google.longrunning.Operation", &operation(&view)),
                "state {:?}",
                op.state()
            );
        }
    }

    /// The same for pages of operations: full, with a next page, and empty.
    #[test]
    fn rest_list_json_is_the_proto3_json_of_the_grpc_message() {
        let ops = samples();
        for (ops, next) in [(&ops[..], Some("tok")), (&ops[..2], None), (&[][..], None)] {
            let page = ListView::of(ops, next);
            assert_eq!(
                rest_json(&page),
                proto3_json("google.longrunning.ListOperationsResponse", &list(&page)),
                "{} operations, next {next:?}",
                ops.len()
            );
        }
        assert_eq!(rest_json(&ListView::of(&[], None)), json!({}));
    }

    /// `GET /v1/kinds` answers the proto3 JSON of the `ListKinds` message.
    #[test]
    fn rest_kinds_json_is_the_proto3_json_of_the_grpc_message() {
        let kinds = lro_common::kinds::builtin();
        let msg = lro::ListKindsResponse {
            kinds: kinds.iter().map(kind).collect(),
        };
        assert_eq!(
            rest_json(&crate::render::kinds(&kinds)),
            proto3_json("lro.v1.ListKindsResponse", &msg)
        );
    }
}
