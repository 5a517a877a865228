//! Entry points for the cargo-fuzz targets in `fuzz/`: thin calls into the private code that
//! reads untrusted bytes (routes, filters, page tokens, request bodies, bearer tokens).
//!
//! Not an API: hidden from the docs, no stability promised, and nothing in the servers calls it.
//! Each function does what the real request path does with the same bytes and no more; the
//! invariants (round trips, which codes an error may have) are checked by the targets.

use std::time::Duration;

use axum::body::Body;
use axum::http::Method;
use futures_util::FutureExt;
use lro_common::name::{OperationName, Parent};
use serde_json::Value;

use crate::error::ApiError;
use crate::http::{self, NameBody, SubmitBody, WaitBody};
use crate::list;

pub use crate::list::Filter;
pub use crate::route::Route;

/// The methods a route target picks from.
pub const METHODS: [&str; 5] = ["GET", "POST", "DELETE", "PUT", "PATCH"];

/// `Route::parse` for `METHODS[method % 5]` and `raw`, the path after `/v1/` (still
/// percent-encoded). Answers the method used too.
pub fn route(method: u8, raw: &str) -> (&'static str, Result<Route, ApiError>) {
    let name = METHODS[usize::from(method) % METHODS.len()];
    let method = match name {
        "GET" => Method::GET,
        "POST" => Method::POST,
        "DELETE" => Method::DELETE,
        "PUT" => Method::PUT,
        _ => Method::PATCH,
    };
    (name, Route::parse(&method, raw))
}

/// The list filter parser.
pub fn filter(s: &str) -> Result<Filter, ApiError> {
    crate::list::parse_filter(s)
}

/// A filter written back as text `Filter::parse` reads as the same filter: the fields it has, in
/// a fixed order, values quoted.
pub fn print_filter(f: &Filter) -> String {
    let mut terms = Vec::new();
    if let Some(done) = f.done {
        terms.push(format!("done = {done}"));
    }
    if let Some(state) = f.state {
        terms.push(format!("metadata.state = {}", state.name()));
    }
    if let Some(kind) = &f.kind {
        terms.push(format!("metadata.kind = \"{kind}\""));
    }
    terms.join(" AND ")
}

/// The page token for the page after `after_id`.
pub fn page_token(after_id: &str, parent: &Parent, filter: &str) -> String {
    list::page_token(after_id, parent, filter)
}

/// Reads a page token back, as `list` does with a request's `pageToken`.
pub fn read_page_token(token: &str, parent: &Parent, filter: &str) -> Result<String, ApiError> {
    list::read_page_token(token, parent, filter)
}

/// Which REST request body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// `POST …/jobs`
    Submit,
    /// `POST {name}:cancel`
    Cancel,
    /// `POST {name}:wait`
    Wait,
}

/// What the handler takes from a body that it accepts, before it calls the service.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReadBody {
    pub kind: Option<String>,
    pub input: Option<Value>,
    pub request_id: Option<String>,
    pub timeout: Option<Duration>,
}

/// Reads `bytes` as the body of a `kind` request to `path_name` the way the REST handler does:
/// the same body reader (whitespace-only bodies, the size limit, the DTO with unknown fields
/// refused), then the same checks (the name in the body, the timeout's Duration).
///
/// The submit checks the service makes (`requestId`, `input` an object, timeout at least 1 ms)
/// sit inside `Service::submit` behind a Redis round trip and are not reached from here.
pub fn body(kind: BodyKind, bytes: &[u8], path_name: &OperationName) -> Result<ReadBody, ApiError> {
    match kind {
        BodyKind::Submit => {
            let b: SubmitBody = read(bytes, true)?.unwrap_or_default();
            Ok(ReadBody {
                timeout: http::parse_timeout(b.timeout.as_deref())?,
                kind: Some(b.kind),
                input: b.input,
                request_id: b.request_id,
            })
        }
        BodyKind::Cancel => {
            let b: NameBody = read(bytes, false)?.unwrap_or_default();
            http::check_body_name(b.name.as_deref(), path_name.as_str())?;
            Ok(ReadBody::default())
        }
        BodyKind::Wait => {
            let b: WaitBody = read(bytes, false)?.unwrap_or_default();
            http::check_body_name(b.name.as_deref(), path_name.as_str())?;
            Ok(ReadBody {
                timeout: http::parse_timeout(b.timeout.as_deref())?,
                ..ReadBody::default()
            })
        }
    }
}

/// The handler's body reader on bytes in memory.
fn read<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    required: bool,
) -> Result<Option<T>, ApiError> {
    http::read_json(Body::from(bytes.to_vec()), required)
        .now_or_never()
        .expect("a body in memory is read at the first poll")
}

/// The HMAC secret `bearer` verifies with, so a target can sign tokens that get past the
/// signature to the claims.
pub const BEARER_SECRET: &[u8] = b"lro-fuzzing-secret";

/// A bearer token through the real authenticator (`crate::auth`), configured for HS256 tokens
/// signed with [`BEARER_SECRET`]: header, signature, `exp` / `nbf` (with the leeway) and the
/// claims lro reads. Answers the token's claims when it is accepted, for the target's checks.
pub fn bearer(token: &str) -> Result<Value, ApiError> {
    static AUTH: std::sync::OnceLock<crate::auth::Auth> = std::sync::OnceLock::new();
    let auth = AUTH.get_or_init(|| {
        crate::auth::Auth::hs256(BEARER_SECRET).expect("a fixed secret is a valid key")
    });
    let header = format!("Bearer {token}");
    auth.authenticate(crate::auth::Credentials {
        authorization: Some(header.as_bytes()),
        api_key: None,
    })?;
    let claims = jsonwebtoken::dangerous::insecure_decode::<Value>(token)
        .map_err(|e| ApiError::invalid("ACCESS_TOKEN_INVALID", e.to_string()))?;
    Ok(claims.claims)
}

/// Inputs the fuzz targets found, as regression tests of the code they reached.
#[cfg(test)]
mod tests {
    use super::*;

    fn name() -> OperationName {
        OperationName::parse("projects/p/operations/x").unwrap()
    }

    #[test]
    fn bodies_must_be_objects_not_arrays() {
        // serde reads a struct from a sequence of its fields: these were accepted.
        for (kind, bytes) in [
            (BodyKind::Cancel, &b"[]"[..]),
            (BodyKind::Wait, br#"["projects/p/operations/x", "1s"]"#),
            (BodyKind::Submit, br#"["sleep", {}, "r-1", "1s"]"#),
        ] {
            let e = body(kind, bytes, &name()).unwrap_err();
            assert_eq!(e.reason, "INVALID_JSON", "{kind:?}");
        }
        assert!(body(BodyKind::Cancel, b" \r\n{}", &name()).is_ok());
        assert!(body(BodyKind::Cancel, b"", &name()).is_ok());
        assert!(body(BodyKind::Submit, br#"{"kind":"sleep"}"#, &name()).is_ok());
    }

    #[test]
    fn bearer_reaches_the_claims_of_a_signed_token() {
        let key = jsonwebtoken::EncodingKey::from_secret(BEARER_SECRET).unwrap();
        let claims = serde_json::json!({"sub": "u", "exp": 4_102_444_800_u64});
        let token = jsonwebtoken::encode(&Default::default(), &claims, &key).unwrap();
        assert_eq!(bearer(&token).unwrap(), claims);
        let expired = serde_json::json!({"sub": "u", "exp": 1});
        let token = jsonwebtoken::encode(&Default::default(), &expired, &key).unwrap();
        assert!(bearer(&token).is_err());
        assert!(bearer(&format!("{token}x")).is_err());
        assert!(bearer("not a token").is_err());
    }
}
