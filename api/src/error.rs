//! The one error type of the api, rendered as Google's error envelope (AIP-193):
//! `{"error": {"code", "message", "status", "details": [ErrorInfo, …]}}`: always one ErrorInfo,
//! then the error's further [`Detail`]s (the same ones go into gRPC's status details). Over REST
//! a 401 carries `WWW-Authenticate: Bearer` and a 429 `Retry-After`.
//!
//! Unexpected errors become an opaque INTERNAL, logged once here with their cause chain.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use lro_common::status::Code;
use lro_common::store::StoreError;
use serde_json::{Value, json};

/// `ErrorInfo.domain` of every error this service returns.
pub const ERROR_DOMAIN: &str = "lro";

#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: Code,
    pub message: String,
    /// `ErrorInfo.reason`: UPPER_SNAKE_CASE, stable, for programs to branch on.
    pub reason: &'static str,
    /// `ErrorInfo.metadata`: a `map<string, string>` in the proto, so strings here (and a
    /// `BTreeMap`, which keeps the error small: it is the `Err` of most of the api's functions).
    pub metadata: BTreeMap<String, String>,
    /// Details after the ErrorInfo, in order.
    pub details: Vec<Detail>,
}

/// A `google.rpc` error detail beside the ErrorInfo (google/rpc/error_details.proto).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Detail {
    /// `google.rpc.BadRequest`: which fields of the request are wrong, and why.
    BadRequest(Vec<FieldViolation>),
    /// `google.rpc.RetryInfo`: when the same request may be tried again.
    RetryInfo { retry_delay: Duration },
}

/// One `google.rpc.BadRequest.FieldViolation`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    /// The field's path in Google's dotted style, e.g. `input.items[2].x`.
    pub field: String,
    /// What is wrong with it, lowercase, e.g. `must be at least 1`.
    pub description: String,
}

impl Detail {
    /// The `google.protobuf.Any` type URL of the detail.
    pub fn type_url(&self) -> &'static str {
        match self {
            Self::BadRequest(_) => "type.googleapis.com/google.rpc.BadRequest",
            Self::RetryInfo { .. } => "type.googleapis.com/google.rpc.RetryInfo",
        }
    }

    /// The detail in the proto3 JSON form of its `Any`.
    fn json(&self) -> Value {
        match self {
            Self::BadRequest(violations) => json!({
                "@type": self.type_url(),
                "fieldViolations": violations
                    .iter()
                    .map(|v| json!({ "field": v.field, "description": v.description }))
                    .collect::<Vec<_>>(),
            }),
            Self::RetryInfo { retry_delay } => json!({
                "@type": self.type_url(),
                "retryDelay": lro_common::time::duration_json(*retry_delay),
            }),
        }
    }
}

impl ApiError {
    pub fn new(code: Code, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            reason,
            metadata: BTreeMap::new(),
            details: Vec::new(),
        }
    }

    /// Adds a detail after the ErrorInfo.
    pub fn with_detail(mut self, detail: Detail) -> Self {
        self.details.push(detail);
        self
    }

    pub fn with(mut self, key: &str, value: impl Into<String>) -> Self {
        self.metadata.insert(key.to_owned(), value.into());
        self
    }

    pub fn invalid(reason: &'static str, message: impl Into<String>) -> Self {
        Self::new(Code::InvalidArgument, reason, message)
    }

    pub fn not_found(name: &str) -> Self {
        Self::new(
            Code::NotFound,
            "OPERATION_NOT_FOUND",
            format!("operation {name:?} not found"),
        )
        .with("name", name)
    }

    pub fn unavailable(what: &str, err: impl std::fmt::Display) -> Self {
        tracing::warn!(error = %err, "{what} unavailable");
        Self::new(
            Code::Unavailable,
            "BACKEND_UNAVAILABLE",
            format!("{what} is unavailable; retry later"),
        )
        .with("backend", what)
    }

    /// An unexpected failure: logged with its cause chain, answered opaquely.
    pub fn internal(err: &(dyn std::error::Error + 'static)) -> Self {
        let mut chain = err.to_string();
        let mut source = err.source();
        while let Some(s) = source {
            chain.push_str(": ");
            chain.push_str(&s.to_string());
            source = s.source();
        }
        tracing::error!(error = %chain, "internal error");
        Self::new(Code::Internal, "INTERNAL", "internal error")
    }

    /// The envelope, as JSON.
    pub fn body(&self) -> Value {
        let info = json!({
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": self.reason,
            "domain": ERROR_DOMAIN,
            "metadata": self.metadata,
        });
        let details: Vec<Value> = std::iter::once(info)
            .chain(self.details.iter().map(Detail::json))
            .collect();
        json!({
            "error": {
                "code": self.code.http_status(),
                "message": self.message,
                "status": self.code.name(),
                "details": details,
            }
        })
    }

    /// The `WWW-Authenticate` challenge of an authentication or scope error (RFC 6750).
    fn challenge(&self) -> Option<&'static str> {
        match self.reason {
            "CREDENTIALS_MISSING" => Some("Bearer"),
            "ACCESS_TOKEN_EXPIRED" | "ACCESS_TOKEN_INVALID" => {
                Some("Bearer error=\"invalid_token\"")
            }
            "ACCESS_TOKEN_SCOPE_INSUFFICIENT" => Some("Bearer error=\"insufficient_scope\""),
            _ => None,
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => {
                Self::new(Code::NotFound, "OPERATION_NOT_FOUND", "operation not found")
            }
            StoreError::Refused(r) => Self::new(Code::FailedPrecondition, "REFUSED", r.to_string()),
            StoreError::Redis(e)
                if e.is_io_error()
                    || e.is_timeout()
                    || e.is_connection_dropped()
                    || e.is_connection_refusal()
                    // A cluster between a master's loss and its replica's promotion.
                    || e.is_cluster_error()
                    || matches!(
                        e.kind(),
                        redis::ErrorKind::Server(
                            redis::ServerErrorKind::MasterDown | redis::ServerErrorKind::ReadOnly
                        )
                    ) =>
            {
                Self::unavailable("redis", e)
            }
            // The record was written, but no replica confirmed it yet: a retry with the same
            // request id answers the same operation once one does.
            e @ StoreError::NotReplicated { .. } => Self::unavailable("redis", e),
            StoreError::Contended(name) => Self::new(
                Code::Aborted,
                "CONTENDED",
                format!("too many concurrent changes to {name}; retry"),
            ),
            other => Self::internal(&other),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = crate::render::json_response(self.code.http_status(), &self.body());
        if let Some(challenge) = self.challenge() {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(challenge),
            );
        }
        for d in &self.details {
            if let Detail::RetryInfo { retry_delay } = d {
                let secs = retry_delay.as_secs() + u64::from(retry_delay.subsec_nanos() > 0);
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
            }
        }
        resp
    }
}
