//! The one mapping of an [`Operation`] onto `google.longrunning.Operation`: what its `name`,
//! `done` and `error` / `response` are, and every field of its `lro.v1.OperationMetadata`
//! (proto/lro/v1/operation_metadata.proto). Both transports answer from an [`OperationView`]:
//! REST serializes it (by hand, below) straight to proto3 JSON bytes, gRPC builds its prost
//! message from it (`grpc/convert.rs`), and a unit test there keeps the two equal.
//!
//! The view's scalar fields hold proto3 values, so the default (`0`, `""`, `false`) means unset
//! and proto3 JSON omits it; message fields are `Option`s. The view decides nothing about the
//! transports, and the transports decide nothing about the operation.
//!
//! A job's output is a `google.protobuf.Value` (a batch cancel's a `google.protobuf.Struct`), so
//! in proto3 JSON it sits under `"value"`. [`ListView`] is a `ListOperationsResponse`.

use std::borrow::Cow;
use std::time::Duration;

use lro_common::operation::{Operation, Phase, State, Terminal};
use lro_common::status::Status;
use lro_common::time::{Millis, duration_json, timestamp_json};
use serde::Serialize;
use serde::ser::{SerializeMap, Serializer};
use serde_json::Value;

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

/// An operation as a `google.longrunning.Operation`.
#[derive(Debug, Clone)]
pub struct OperationView<'a> {
    pub name: &'a str,
    pub metadata: MetadataView<'a>,
    /// The terminal result: `Some` exactly when the operation is done.
    pub result: Option<Outcome<'a>>,
}

/// The `result` oneof of a done operation.
#[derive(Debug, Clone)]
pub enum Outcome<'a> {
    /// `error`: a failure's status, or CANCELLED for a cancelled operation.
    Error(StatusView<'a>),
    /// `response`: the job's output, packed in an `Any` of type `type_url`.
    Response {
        type_url: &'static str,
        value: &'a Value,
    },
}

/// A `google.rpc.Status` without details.
#[derive(Debug, Clone)]
pub struct StatusView<'a>(pub Cow<'a, Status>);

/// An operation's `lro.v1.OperationMetadata`.
#[derive(Debug, Clone)]
pub struct MetadataView<'a> {
    pub kind: &'a str,
    pub state: State,
    pub create_time: Millis,
    pub start_time: Option<Millis>,
    pub end_time: Option<Millis>,
    pub update_time: Millis,
    pub attempt: u32,
    /// The worker of the current or last attempt.
    pub worker: &'a str,
    pub progress_percent: u32,
    pub progress_message: &'a str,
    pub cancel_requested: bool,
    pub cancel_time: Option<Millis>,
    /// Who asked for the cancel, when known; only with a cancel.
    pub cancel_requested_by: &'a str,
    pub timeout: Option<Duration>,
    pub request_id: &'a str,
    pub stop_forced: bool,
    /// When a queued retry may start; only while QUEUED.
    pub next_attempt_time: Option<Millis>,
    pub last_attempt_error: Option<StatusView<'a>>,
}

/// A page of operations, as a `google.longrunning.ListOperationsResponse`.
#[derive(Debug, Clone)]
pub struct ListView<'a> {
    pub operations: Vec<OperationView<'a>>,
    pub next_page_token: Option<&'a str>,
}

impl<'a> OperationView<'a> {
    pub fn of(op: &'a Operation) -> Self {
        let result = match &op.phase {
            Phase::Done { result, .. } => Some(match result {
                Terminal::Succeeded(value) => Outcome::Response {
                    type_url: response_type(op),
                    value,
                },
                Terminal::Failed(status) => Outcome::Error(StatusView(Cow::Borrowed(status))),
                Terminal::Cancelled => Outcome::Error(StatusView(Cow::Owned(Status::cancelled()))),
            }),
            _ => None,
        };
        Self {
            name: op.name.as_str(),
            metadata: MetadataView::of(op),
            result,
        }
    }

    /// `done`: whether the operation has a result.
    pub fn done(&self) -> bool {
        self.result.is_some()
    }
}

impl<'a> MetadataView<'a> {
    pub fn of(op: &'a Operation) -> Self {
        let run = op.run();
        let progress = op.progress.as_ref();
        Self {
            kind: &op.kind,
            state: op.state(),
            create_time: op.created,
            start_time: run.map(|r| r.started),
            end_time: match op.phase {
                Phase::Done { ended, .. } => Some(ended),
                _ => None,
            },
            update_time: op.updated,
            attempt: op.attempt,
            worker: run.map_or("", |r| &r.worker),
            progress_percent: progress.map_or(0, |p| p.percent),
            progress_message: progress.map_or("", |p| &p.message),
            cancel_requested: op.cancel_requested.is_some(),
            cancel_time: op.cancel_requested,
            cancel_requested_by: match op.cancel_requested {
                Some(_) => op.cancel_requested_by.as_deref().unwrap_or_default(),
                None => "",
            },
            timeout: op.timeout_ms.map(Duration::from_millis),
            request_id: op.request_id.as_deref().unwrap_or_default(),
            stop_forced: op.stop_forced,
            next_attempt_time: match op.phase {
                Phase::Queued => op.not_before,
                _ => None,
            },
            last_attempt_error: op.last_error.as_ref().map(|s| StatusView(Cow::Borrowed(s))),
        }
    }
}

impl<'a> ListView<'a> {
    pub fn of(operations: &'a [Operation], next_page_token: Option<&'a str>) -> Self {
        Self {
            operations: operations.iter().map(OperationView::of).collect(),
            next_page_token,
        }
    }
}

/// A proto3 field's value: its default (`0`, `false`, `""`, an empty list, an absent message)
/// means unset, and proto3 JSON omits it.
trait Field: Serialize {
    fn is_default(&self) -> bool;
}

impl Field for u32 {
    fn is_default(&self) -> bool {
        *self == 0
    }
}

impl Field for i32 {
    fn is_default(&self) -> bool {
        *self == 0
    }
}

impl Field for bool {
    fn is_default(&self) -> bool {
        !*self
    }
}

impl Field for &str {
    fn is_default(&self) -> bool {
        self.is_empty()
    }
}

impl<T: Serialize> Field for Option<T> {
    fn is_default(&self) -> bool {
        self.is_none()
    }
}

impl<T: Serialize> Field for Vec<T> {
    fn is_default(&self) -> bool {
        self.is_empty()
    }
}

/// Writes `key: value` unless `value` is unset.
fn field<M: SerializeMap>(
    m: &mut M,
    key: &'static str,
    value: &impl Field,
) -> Result<(), M::Error> {
    if value.is_default() {
        Ok(())
    } else {
        m.serialize_entry(key, value)
    }
}

impl Serialize for OperationView<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("name", self.name)?;
        m.serialize_entry("metadata", &self.metadata)?;
        field(&mut m, "done", &self.done())?;
        match &self.result {
            None => {}
            Some(Outcome::Error(status)) => m.serialize_entry("error", status)?,
            Some(Outcome::Response { type_url, value }) => {
                m.serialize_entry("response", &AnyValue { type_url, value })?;
            }
        }
        m.end()
    }
}

/// An `Any` holding a well-known type, whose proto3 JSON is `{"@type", "value"}`.
struct AnyValue<'a> {
    type_url: &'a str,
    value: &'a Value,
}

impl Serialize for AnyValue<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(2))?;
        m.serialize_entry("@type", self.type_url)?;
        m.serialize_entry("value", self.value)?;
        m.end()
    }
}

impl Serialize for StatusView<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        field(&mut m, "code", &self.0.code)?;
        field(&mut m, "message", &self.0.message.as_str())?;
        m.end()
    }
}

/// In the order the metadata has always been written; `@type`, `kind`, `state` and the create
/// and update times are always there.
impl Serialize for MetadataView<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let time = |t: Option<Millis>| t.map(timestamp_json);
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("@type", METADATA_TYPE)?;
        m.serialize_entry("kind", self.kind)?;
        m.serialize_entry("state", self.state.name())?;
        m.serialize_entry("createTime", &timestamp_json(self.create_time))?;
        field(&mut m, "startTime", &time(self.start_time))?;
        field(&mut m, "endTime", &time(self.end_time))?;
        m.serialize_entry("updateTime", &timestamp_json(self.update_time))?;
        field(&mut m, "attempt", &self.attempt)?;
        field(&mut m, "worker", &self.worker)?;
        field(&mut m, "progressPercent", &self.progress_percent)?;
        field(&mut m, "progressMessage", &self.progress_message)?;
        field(&mut m, "cancelRequested", &self.cancel_requested)?;
        field(&mut m, "cancelTime", &time(self.cancel_time))?;
        field(&mut m, "cancelRequestedBy", &self.cancel_requested_by)?;
        field(&mut m, "timeout", &self.timeout.map(duration_json))?;
        field(&mut m, "requestId", &self.request_id)?;
        field(&mut m, "stopForced", &self.stop_forced)?;
        field(&mut m, "nextAttemptTime", &time(self.next_attempt_time))?;
        field(&mut m, "lastAttemptError", &self.last_attempt_error)?;
        m.end()
    }
}

/// `{"operations": [...], "nextPageToken": "..."}`, each omitted when empty or absent (an empty
/// page with no more to come is `{}`).
impl Serialize for ListView<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        field(&mut m, "operations", &self.operations)?;
        field(&mut m, "nextPageToken", &self.next_page_token)?;
        m.end()
    }
}
