//! What a REST request carries besides its route: the JSON bodies (DTOs, unknown fields
//! refused; read by [`read_json`], which the fuzzing shim shares), the list query, and the checks
//! that belong to the body's shape (a `timeout`'s Duration, a body `name` matching the path).

use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::MAX_BODY_BYTES;
use crate::error::ApiError;
use crate::route::parse_parent;
use crate::service::{BatchSubmit, Job, in_request};
use lro_common::name::Parent;
use lro_common::trace::TraceContext;

/// A `timeout` field: a Duration in its JSON form ("1.5s"; "500ms", "2m" and "1h" are accepted too).
pub(crate) fn parse_timeout(raw: Option<&str>) -> Result<Option<Duration>, ApiError> {
    raw.map(lro_common::time::parse_duration)
        .transpose()
        .map_err(|e| ApiError::invalid("INVALID_TIMEOUT", e.to_string()))
}

/// `POST …/jobs` body.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct SubmitBody {
    #[serde(default)]
    pub(crate) kind: String,
    #[serde(default)]
    pub(crate) input: Option<Value>,
    #[serde(default, alias = "request_id")]
    pub(crate) request_id: Option<String>,
    #[serde(default)]
    pub(crate) timeout: Option<String>,
}

impl SubmitBody {
    /// The job this body asks for, under `parent` (its `timeout` parsed: the one field here that
    /// can be refused).
    pub(crate) fn into_job(self, parent: Parent) -> Result<Job, ApiError> {
        Ok(Job {
            parent,
            kind: self.kind,
            input: self.input,
            request_id: self.request_id,
            timeout: parse_timeout(self.timeout.as_deref())?,
        })
    }
}

/// `…/jobs:batchSubmit` body: `{"requests": [{"parent"?, "kind", "input", "requestId", "timeout"}]}`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BatchSubmitBody {
    #[serde(default)]
    pub(crate) requests: Vec<BatchJobBody>,
}

/// One job of a batch: a submit body, and optionally the batch's parent again.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct BatchJobBody {
    #[serde(default)]
    pub(crate) parent: Option<String>,
    #[serde(default)]
    pub(crate) kind: String,
    #[serde(default)]
    pub(crate) input: Option<Value>,
    #[serde(default, alias = "request_id")]
    pub(crate) request_id: Option<String>,
    #[serde(default)]
    pub(crate) timeout: Option<String>,
}

impl BatchSubmitBody {
    /// The batch under `parent`: a job without a parent is under the batch's; the service
    /// refuses one under another.
    pub(super) fn into_batch(
        self,
        parent: Parent,
        trace: Option<TraceContext>,
    ) -> Result<BatchSubmit, ApiError> {
        let jobs = self
            .requests
            .into_iter()
            .enumerate()
            .map(|(i, b)| {
                let job_parent = match b.parent.as_deref() {
                    None | Some("") => parent.clone(),
                    Some(p) => parse_parent(p).map_err(|e| in_request(e, i, "parent"))?,
                };
                let job = SubmitBody {
                    kind: b.kind,
                    input: b.input,
                    request_id: b.request_id,
                    timeout: b.timeout,
                };
                job.into_job(job_parent)
                    .map_err(|e| in_request(e, i, "timeout"))
            })
            .collect::<Result<_, ApiError>>()?;
        Ok(BatchSubmit {
            parent,
            jobs,
            trace,
        })
    }
}

/// `…/operations:batchCancel` body.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct BatchCancelBody {
    #[serde(default)]
    pub(crate) filter: String,
    #[serde(default, alias = "request_id")]
    pub(crate) request_id: Option<String>,
}

/// `:cancel` body: empty, `{}` or `{"name"}`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NameBody {
    #[serde(default)]
    pub(crate) name: Option<String>,
}

/// `:wait` body.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct WaitBody {
    #[serde(default)]
    pub(crate) name: Option<String>,
    #[serde(default)]
    pub(crate) timeout: Option<String>,
}

/// List query parameters, in camelCase or snake_case.
#[derive(Debug, Default)]
pub(super) struct ListQuery {
    pub(super) filter: Option<String>,
    pub(super) page_size: Option<String>,
    pub(super) page_token: Option<String>,
}

impl ListQuery {
    pub(super) fn parse(raw: Option<&str>) -> Self {
        let mut q = Self::default();
        for (k, v) in form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
            let v = Some(v.into_owned());
            match k.as_ref() {
                "filter" => q.filter = v,
                "pageSize" | "page_size" => q.page_size = v,
                "pageToken" | "page_token" => q.page_token = v,
                // System parameters ($alt, fields, key, …) and unknown ones are ignored, as
                // Google's front ends do for parameters a method does not use.
                _ => {}
            }
        }
        q
    }
}

pub(crate) fn check_body_name(in_body: Option<&str>, in_path: &str) -> Result<(), ApiError> {
    match in_body {
        Some(n) if !n.is_empty() && n != in_path => Err(ApiError::invalid(
            "NAME_MISMATCH",
            format!("body name {n:?} differs from the name in the path {in_path:?}"),
        )),
        _ => Ok(()),
    }
}

/// Reads a JSON object body. An empty body is `None`, or an error when `required`.
pub(crate) async fn read_json<T: DeserializeOwned>(
    body: Body,
    required: bool,
) -> Result<Option<T>, ApiError> {
    let bytes: Bytes = axum::body::to_bytes(body, MAX_BODY_BYTES)
        .await
        .map_err(|_| {
            ApiError::invalid(
                "BODY_TOO_LARGE",
                format!("request body is larger than {MAX_BODY_BYTES} bytes or could not be read"),
            )
        })?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return if required {
            Err(ApiError::invalid(
                "MISSING_BODY",
                "request body must be a JSON object",
            ))
        } else {
            Ok(None)
        };
    }
    // serde reads a struct from an array too (`["sleep", {}]`), but a body is a JSON object.
    if bytes.trim_ascii_start().first() != Some(&b'{') {
        return Err(ApiError::invalid(
            "INVALID_JSON",
            "request body must be a JSON object",
        ));
    }
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| ApiError::invalid("INVALID_JSON", format!("invalid JSON body: {e}")))
}
