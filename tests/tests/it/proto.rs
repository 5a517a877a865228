//! Every REST answer the tests see is parsed by a strict proto3 JSON parser (prost-reflect, unknown
//! fields refused, every `@type` resolved) against the protos the project ships, as the message
//! the route answers with: an error envelope `lro.v1.Error`, `google.protobuf.Empty`, a
//! `google.longrunning.ListOperationsResponse`, an `lro.v1.ListKindsResponse`, an
//! `lro.v1.BatchSubmitJobsResponse` or a
//! `google.longrunning.Operation`.

use std::sync::OnceLock;

use prost_reflect::{DescriptorPool, DeserializeOptions, DynamicMessage};

fn pool() -> &'static DescriptorPool {
    static POOL: OnceLock<DescriptorPool> = OnceLock::new();
    POOL.get_or_init(|| {
        DescriptorPool::decode(lro_api::pb::FILE_DESCRIPTOR_SET)
            .expect("shipped descriptors decode")
    })
}

/// The message a REST answer must be, from its request and status.
pub fn message_for(method: &str, path: &str, status: u16) -> &'static str {
    let path = path.split('?').next().unwrap_or_default();
    let last = path.rsplit('/').next().unwrap_or_default();
    match () {
        () if status >= 400 => "lro.v1.Error",
        () if method == "DELETE" || last.ends_with(":cancel") => "google.protobuf.Empty",
        () if method == "GET" && last == "operations" => {
            "google.longrunning.ListOperationsResponse"
        }
        () if method == "GET" && path == "/v1/kinds" => "lro.v1.ListKindsResponse",
        () if last.ends_with(":batchSubmit") => "lro.v1.BatchSubmitJobsResponse",
        () => "google.longrunning.Operation",
    }
}

/// Parses `body` strictly as `message`; panics with the parser's complaint if it does not fit.
pub fn check(message: &str, body: &[u8]) {
    let desc = pool()
        .get_message_by_name(message)
        .unwrap_or_else(|| panic!("{message} is not in the shipped protos"));
    let mut de = serde_json::Deserializer::from_slice(body);
    DynamicMessage::deserialize_with_options(desc, &mut de, &DeserializeOptions::new())
        .and_then(|m| de.end().map(|()| m))
        .unwrap_or_else(|e| {
            panic!(
                "answer is not a valid proto3 JSON {message}: {e}: {}",
                String::from_utf8_lossy(body)
            )
        });
}
