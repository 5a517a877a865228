//! Operation → proto3 JSON of `google.longrunning.Operation`, exactly: `name`, `metadata`,
//! `done`, and one of `error` / `response`, defaults omitted. Metadata is an
//! `lro.v1.OperationMetadata` (proto/lro/v1/operation_metadata.proto); a job's output is a
//! `google.protobuf.Value` (a batch cancel's a `google.protobuf.Struct`), so it sits under
//! `"value"`. Also the kinds, as the proto3 JSON of
//! `lro.v1.ListKindsResponse`; and the HTTP answer carrying such JSON ([`json_response`]), for
//! the REST handlers and the error envelope alike.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use lro_common::kinds::KindInfo;
use lro_common::operation::{Operation, Phase, Terminal};
use lro_common::time::{duration_json, timestamp_json};
use serde_json::{Map, Value, json};

pub const METADATA_TYPE: &str = "type.googleapis.com/lro.v1.OperationMetadata";
pub const RESPONSE_TYPE: &str = "type.googleapis.com/google.protobuf.Value";
/// A batch cancel's response: its counts, as a `google.protobuf.Struct`.
pub const STRUCT_TYPE: &str = "type.googleapis.com/google.protobuf.Struct";

/// The `@type` of an operation's response: a `Struct` for a batch cancel (its output is always an
/// object), a `Value` for every other job.
pub fn response_type(op: &Operation) -> &'static str {
    if op.kind == lro_common::kinds::BATCH_CANCEL {
        STRUCT_TYPE
    } else {
        RESPONSE_TYPE
    }
}

/// `{"kinds": [{"name", "cancellable", "inputSchema"}]}`, defaults omitted (`cancellable` false).
pub fn kinds(kinds: &[KindInfo]) -> Value {
    let kinds: Vec<Value> = kinds
        .iter()
        .map(|k| {
            let mut out = Map::new();
            out.insert("name".into(), k.name.clone().into());
            if k.cancellable {
                out.insert("cancellable".into(), true.into());
            }
            out.insert("inputSchema".into(), k.input_schema.clone());
            Value::Object(out)
        })
        .collect();
    if kinds.is_empty() {
        json!({})
    } else {
        json!({ "kinds": kinds })
    }
}

pub fn operation(op: &Operation) -> Value {
    let mut out = Map::new();
    out.insert("name".into(), op.name.as_str().into());
    out.insert("metadata".into(), metadata(op));
    if let Phase::Done { result, .. } = &op.phase {
        out.insert("done".into(), true.into());
        match result {
            Terminal::Succeeded(value) => {
                out.insert(
                    "response".into(),
                    json!({ "@type": response_type(op), "value": value }),
                );
            }
            Terminal::Failed(status) => {
                out.insert("error".into(), status_json(status.code, &status.message));
            }
            Terminal::Cancelled => {
                let s = lro_common::status::Status::cancelled();
                out.insert("error".into(), status_json(s.code, &s.message));
            }
        }
    }
    Value::Object(out)
}

fn status_json(code: i32, message: &str) -> Value {
    let mut s = Map::new();
    if code != 0 {
        s.insert("code".into(), code.into());
    }
    if !message.is_empty() {
        s.insert("message".into(), message.into());
    }
    Value::Object(s)
}

fn metadata(op: &Operation) -> Value {
    let mut m = Map::new();
    m.insert("@type".into(), METADATA_TYPE.into());
    m.insert("kind".into(), op.kind.as_str().into());
    m.insert("state".into(), op.state().name().into());
    m.insert("createTime".into(), timestamp_json(op.created).into());
    if let Some(run) = op.run() {
        m.insert("startTime".into(), timestamp_json(run.started).into());
    }
    if let Phase::Done { ended, .. } = op.phase {
        m.insert("endTime".into(), timestamp_json(ended).into());
    }
    m.insert("updateTime".into(), timestamp_json(op.updated).into());
    if op.attempt > 0 {
        m.insert("attempt".into(), op.attempt.into());
    }
    if let Some(run) = op.run() {
        m.insert("worker".into(), run.worker.as_str().into());
    }
    if let Some(p) = &op.progress {
        if p.percent > 0 {
            m.insert("progressPercent".into(), p.percent.into());
        }
        if !p.message.is_empty() {
            m.insert("progressMessage".into(), p.message.as_str().into());
        }
    }
    if let Some(at) = op.cancel_requested {
        m.insert("cancelRequested".into(), true.into());
        m.insert("cancelTime".into(), timestamp_json(at).into());
        if let Some(by) = &op.cancel_requested_by {
            m.insert("cancelRequestedBy".into(), by.as_str().into());
        }
    }
    if let Some(ms) = op.timeout_ms {
        m.insert(
            "timeout".into(),
            duration_json(std::time::Duration::from_millis(ms)).into(),
        );
    }
    if let Some(r) = &op.request_id {
        m.insert("requestId".into(), r.as_str().into());
    }
    if op.stop_forced {
        m.insert("stopForced".into(), true.into());
    }
    if let (Phase::Queued, Some(at)) = (&op.phase, op.not_before) {
        m.insert("nextAttemptTime".into(), timestamp_json(at).into());
    }
    if let Some(s) = &op.last_error {
        m.insert("lastAttemptError".into(), status_json(s.code, &s.message));
    }
    Value::Object(m)
}

/// An HTTP answer with this status and JSON body (an unknown status becomes 500).
pub fn json_response(status: u16, body: &Value) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let mut resp = (status, bytes).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}
