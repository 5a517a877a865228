//! The HTTP answer carrying JSON ([`json_response`]), serialized straight to bytes, for the REST
//! handlers and the error envelope alike; operations render through [`crate::view`]. Also the
//! kinds, as the proto3 JSON of `lro.v1.ListKindsResponse`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use lro_common::kinds::KindInfo;
use serde::Serialize;
use serde_json::{Map, Value, json};

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

/// An HTTP answer with this status and JSON body (an unknown status becomes 500).
pub fn json_response(status: u16, body: &impl Serialize) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let mut resp = (status, bytes).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}
