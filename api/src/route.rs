//! Maps a method and a raw `/v1/...` path to one of the contract's routes.
//!
//! The custom verb is split off at the last `:` of the last raw segment (before decoding), then
//! each segment is percent-decoded and checked; a segment that does not fit the name rules is a
//! 400, a path that fits no route a 404.

use std::borrow::Cow;

use axum::http::Method;
use lro_common::name::{OperationName, Parent, check_segment};
use percent_encoding::percent_decode_str;

use crate::auth;
use crate::error::ApiError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Submit(Parent),
    /// `POST /v1/{parent}/jobs:batchSubmit`.
    BatchSubmit(Parent),
    List(Parent),
    Get(OperationName),
    Delete(OperationName),
    Cancel(OperationName),
    Wait(OperationName),
    /// `POST /v1/{parent}/operations:batchCancel`: a verb on the collection.
    BatchCancel(Parent),
    /// `GET /v1/kinds`.
    Kinds,
    /// `GET /v1/openapi.json`: the OpenAPI document of this surface.
    OpenApi,
}

impl Route {
    /// `raw` is the path after `/v1/`, still percent-encoded.
    pub fn parse(method: &Method, raw: &str) -> Result<Self, ApiError> {
        let last_start = raw.rfind('/').map_or(0, |i| i + 1);
        let (path, verb) = match raw[last_start..].rfind(':') {
            Some(i) => (&raw[..last_start + i], Some(&raw[last_start + i + 1..])),
            None => (raw, None),
        };
        let segments = path
            .split('/')
            .map(|s| {
                let decoded = percent_decode_str(s).decode_utf8().map_err(|_| {
                    ApiError::invalid("INVALID_NAME", format!("path segment {s:?} is not UTF-8"))
                })?;
                check_segment(&decoded)
                    .map_err(|e| ApiError::invalid("INVALID_NAME", e.to_string()))?;
                Ok(decoded.into_owned())
            })
            .collect::<Result<Vec<_>, ApiError>>()?;
        let n = segments.len();
        let last = segments[n - 1].as_str();
        let is_name = n % 2 == 0 && segments[n - 2] == "operations";
        let name = || {
            OperationName::from_segments(&segments)
                .map_err(|e| ApiError::invalid("INVALID_NAME", e.to_string()))
        };
        let parent = || {
            Parent::from_segments(&segments[..n - 1])
                .map_err(|e| ApiError::invalid("INVALID_NAME", e.to_string()))
        };
        let route = match (method, verb) {
            (&Method::GET, None) if n == 1 && last == "kinds" => Route::Kinds,
            (&Method::GET, None) if n == 1 && last == "openapi.json" => Route::OpenApi,
            (&Method::POST, None) if n % 2 == 1 && last == "jobs" => Route::Submit(parent()?),
            (&Method::GET, None) if n % 2 == 1 && last == "operations" => Route::List(parent()?),
            (&Method::GET, None) if is_name => Route::Get(name()?),
            (&Method::DELETE, None) if is_name => Route::Delete(name()?),
            (&Method::POST, Some("cancel")) if is_name => Route::Cancel(name()?),
            (&Method::POST, Some("wait")) if is_name => Route::Wait(name()?),
            (&Method::POST, Some("batchSubmit")) if n % 2 == 1 && last == "jobs" => {
                Route::BatchSubmit(parent()?)
            }
            (&Method::POST, Some("batchCancel")) if n % 2 == 1 && last == "operations" => {
                Route::BatchCancel(parent()?)
            }
            _ => return Err(no_route(method, &format!("/v1/{raw}"))),
        };
        Ok(route)
    }
}

impl Route {
    /// The api method this route calls, and what it is called on (for authorization and the
    /// audit log); `None` for a public route, served without credentials.
    /// A name is borrowed: a `GET` allocates nothing for this.
    pub fn method(&self) -> Option<(auth::Method, Cow<'_, str>)> {
        use auth::Method as M;
        Some(match self {
            Self::Submit(p) => (M::Submit, collection(p).into()),
            Self::BatchSubmit(p) => (M::BatchSubmit, collection(p).into()),
            Self::List(p) => (M::List, collection(p).into()),
            Self::Get(n) => (M::Get, n.as_str().into()),
            Self::Delete(n) => (M::Delete, n.as_str().into()),
            Self::Cancel(n) => (M::Cancel, n.as_str().into()),
            Self::Wait(n) => (M::Wait, n.as_str().into()),
            Self::BatchCancel(p) => (M::BatchCancel, collection(p).into()),
            Self::Kinds => (M::ListKinds, "kinds".into()),
            Self::OpenApi => return None,
        })
    }
}

/// A parent given as text in a request body or message (`""` is the top level): 400
/// INVALID_NAME if it is not one.
pub fn parse_parent(text: &str) -> Result<Parent, ApiError> {
    Parent::parse(text).map_err(|e| ApiError::invalid("INVALID_NAME", e.to_string()))
}

/// `{parent}/operations`, or `operations` at the top level.
pub fn collection(parent: &Parent) -> String {
    if parent.is_root() {
        "operations".to_owned()
    } else {
        format!("{parent}/operations")
    }
}

/// The answer for a method and path that match no route (Google's front ends answer 404 too).
/// `path` is the full request path.
pub fn no_route(method: &Method, path: &str) -> ApiError {
    ApiError::new(
        lro_common::status::Code::NotFound,
        "NO_SUCH_METHOD",
        format!("no method {method} {path}"),
    )
    .with("method", method.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(m: Method, p: &str) -> Result<Route, ApiError> {
        Route::parse(&m, p)
    }

    #[test]
    fn routes_every_contract_path() {
        let name = |s| OperationName::parse(s).unwrap();
        assert_eq!(
            parse(Method::POST, "jobs").unwrap(),
            Route::Submit(Parent::root())
        );
        assert_eq!(
            parse(Method::POST, "projects/p/jobs").unwrap(),
            Route::Submit(Parent::parse("projects/p").unwrap())
        );
        assert_eq!(
            parse(Method::GET, "operations").unwrap(),
            Route::List(Parent::root())
        );
        assert_eq!(
            parse(Method::GET, "a/b/c/d/operations").unwrap(),
            Route::List(Parent::parse("a/b/c/d").unwrap())
        );
        assert_eq!(
            parse(Method::GET, "operations/x").unwrap(),
            Route::Get(name("operations/x"))
        );
        assert_eq!(
            parse(Method::DELETE, "projects/p/operations/x").unwrap(),
            Route::Delete(name("projects/p/operations/x"))
        );
        assert_eq!(
            parse(Method::POST, "projects/p/operations/x:cancel").unwrap(),
            Route::Cancel(name("projects/p/operations/x"))
        );
        assert_eq!(
            parse(Method::POST, "operations/x:wait").unwrap(),
            Route::Wait(name("operations/x"))
        );
        assert_eq!(
            parse(Method::POST, "operations:batchCancel").unwrap(),
            Route::BatchCancel(Parent::root())
        );
        assert_eq!(
            parse(Method::POST, "projects/p/operations:batchCancel").unwrap(),
            Route::BatchCancel(Parent::parse("projects/p").unwrap())
        );
        assert_eq!(
            parse(Method::POST, "jobs:batchSubmit").unwrap(),
            Route::BatchSubmit(Parent::root())
        );
        assert_eq!(
            parse(Method::POST, "projects/p/jobs:batchSubmit").unwrap(),
            Route::BatchSubmit(Parent::parse("projects/p").unwrap())
        );
        assert_eq!(parse(Method::GET, "kinds").unwrap(), Route::Kinds);
        assert_eq!(parse(Method::GET, "openapi.json").unwrap(), Route::OpenApi);
        assert_eq!(
            parse(Method::GET, "operations/a%2Db").unwrap(),
            Route::Get(name("operations/a-b"))
        );
    }

    #[test]
    fn refuses_bad_segments_with_400_and_unknown_routes_with_404() {
        for bad in [
            "operations/%2E%2E",
            "operations/..",
            "operations/a%20b",
            "operations/a%2Fb",
            "operations/",
            "projects//operations/x",
        ] {
            let e = parse(Method::GET, bad).unwrap_err();
            assert_eq!(e.code.http_status(), 400, "{bad}");
        }
        for unknown in [
            "nothing",
            "operations/x:frob",
            "operations/x/y",
            "projects/p/jobs/x",
            "projects/p/kinds",
            "kinds:list",
            "projects/p/openapi.json",
            "operations:batchCancel",
            "projects/p/jobs:batchCancel",
            "jobs:batchSubmit",
            "projects/p/operations:batchSubmit",
        ] {
            let e = parse(Method::GET, unknown).unwrap_err();
            assert_eq!(e.code.http_status(), 404, "{unknown}");
        }
        assert_eq!(
            parse(Method::PUT, "operations/x")
                .unwrap_err()
                .code
                .http_status(),
            404
        );
        for m in [Method::POST, Method::PUT, Method::DELETE, Method::PATCH] {
            let e = parse(m.clone(), "kinds").unwrap_err();
            assert_eq!(
                (e.code.http_status(), e.reason),
                (404, "NO_SUCH_METHOD"),
                "{m}"
            );
        }
        assert_eq!(
            parse(Method::POST, "openapi.json")
                .unwrap_err()
                .code
                .http_status(),
            404
        );
        assert_eq!(
            parse(Method::GET, "operations/x:cancel")
                .unwrap_err()
                .code
                .http_status(),
            404
        );
    }
}
