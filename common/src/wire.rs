//! Every byte format that leaves a process, in one place: the Redis record and the AMQP messages.
//!
//! Each is tagged with a version (`"v"`). A change adds a variant rather than silently changing a
//! field, so a process meeting a newer format refuses it with a clear error instead of misreading
//! it. HTTP DTOs are not here: they belong to the api.

use serde::{Deserialize, Serialize};

use crate::name::OperationName;
use crate::operation::Operation;

/// Why bytes could not be decoded.
#[derive(Debug, thiserror::Error)]
#[error("undecodable {what}: {source}")]
pub struct WireError {
    what: &'static str,
    #[source]
    source: serde_json::Error,
}

/// An operation as stored in the Redis hash field `r`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "v")]
enum Record {
    #[serde(rename = "1")]
    V1(Operation),
}

/// [`Record`] by reference, for writing without a copy of the operation.
#[derive(Serialize)]
#[serde(tag = "v")]
enum RecordRef<'a> {
    #[serde(rename = "1")]
    V1(&'a Operation),
}

pub fn encode_record(op: &Operation) -> String {
    // Serialising plain data with string keys cannot fail.
    serde_json::to_string(&RecordRef::V1(op)).unwrap_or_default()
}

pub fn decode_record(bytes: &[u8]) -> Result<Operation, WireError> {
    match serde_json::from_slice(bytes) {
        Ok(Record::V1(op)) => Ok(op),
        Err(source) => Err(WireError {
            what: "operation record",
            source,
        }),
    }
}

/// A job to run, published persistently to the jobs queue. It carries only the name: the worker
/// reads kind and input from Redis when it starts the attempt, so the message can never disagree
/// with the truth.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "v")]
pub enum JobMessage {
    #[serde(rename = "1")]
    V1 { name: OperationName },
}

/// A cancel request, routed to the one worker that runs the operation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "v")]
pub enum CancelMessage {
    #[serde(rename = "1")]
    V1 { name: OperationName, attempt: u32 },
}

pub fn encode<T: Serialize>(msg: &T) -> Vec<u8> {
    serde_json::to_vec(msg).unwrap_or_default()
}

pub fn decode_job(bytes: &[u8]) -> Result<JobMessage, WireError> {
    serde_json::from_slice(bytes).map_err(|source| WireError {
        what: "job message",
        source,
    })
}

pub fn decode_cancel(bytes: &[u8]) -> Result<CancelMessage, WireError> {
    serde_json::from_slice(bytes).map_err(|source| WireError {
        what: "cancel message",
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operation::{NewOperation, Terminal};
    use serde_json::json;

    #[test]
    fn record_round_trips_in_every_phase() {
        let mut op = Operation::new(
            NewOperation {
                name: OperationName::parse("projects/p/operations/x").unwrap(),
                kind: "sleep".into(),
                input: json!({"duration": "1s"}),
                cancellable: true,
                request_id: Some("r".into()),
                timeout_ms: Some(5),
                retention_ms: Some(1000),
            },
            1,
        );
        let check = |op: &Operation| {
            let text = encode_record(op);
            assert!(text.starts_with(r#"{"v":"1""#), "{text}");
            assert_eq!(&decode_record(text.as_bytes()).unwrap(), op);
        };
        check(&op);
        op.start("w", 2).unwrap();
        op.request_cancel(3, None).unwrap();
        check(&op);
        op.finish(1, Terminal::Succeeded(json!({"a": 1})), 4)
            .unwrap();
        check(&op);
    }

    #[test]
    fn unknown_versions_and_garbage_are_refused() {
        assert!(decode_record(br#"{"v":"2","name":"operations/a"}"#).is_err());
        assert!(decode_job(b"not json").is_err());
        assert!(decode_job(br#"{"v":"1","name":"bad name"}"#).is_err());
        let m = JobMessage::V1 {
            name: OperationName::parse("operations/a").unwrap(),
        };
        assert_eq!(decode_job(&encode(&m)).unwrap(), m);
    }
}
