//! A small client of lro's REST surface: one method per call the command makes, each answering
//! the JSON the api returned (kept exactly, so `-o json` can print it unchanged) or an [`Error`]
//! that already reads as the one line the command prints.
//!
//! It validates nothing the server validates (names, filters, durations go as given); it only
//! drops a leading `/v1/` from names and percent-encodes each path segment.

use std::time::Duration;

use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};
use reqwest::{Method, RequestBuilder};
use serde_json::{Value, json};

/// What a path segment may not carry as is. `:` is encoded too: the api splits a custom verb
/// off at the last raw `:`, so a name's own colons must not look like one.
const SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'`')
    .add(b'{')
    .add(b'}')
    .add(b':');

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const CALL_TIMEOUT: Duration = Duration::from_secs(120);

/// A call that did not get an answer it could use.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The api answered an error envelope (AIP-193): its `status` and `message`.
    #[error("{status}: {message}")]
    Api { status: String, message: String },
    /// Something on this side failed (not the api's answer).
    #[error("INTERNAL: {0}")]
    Local(String),
    /// No answer at all.
    #[error("UNAVAILABLE: cannot reach {base}: {cause}")]
    Unreachable { base: String, cause: String },
}

/// One api, with the credentials sent on every call.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

/// One page of a list.
pub struct Page {
    pub operations: Vec<Value>,
    pub next_page_token: Option<String>,
}

impl Client {
    /// A client of the api at `base` (`http://host:port` or `https://…`).
    pub fn new(base: &str, token: Option<String>) -> Result<Self, Error> {
        // Bounded so that an api that accepts and never answers cannot hang the command; a
        // `:wait` is asked to block for a second or so, far below either bound.
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(CALL_TIMEOUT)
            .build()
            .map_err(|e| Error::Local(format!("cannot make an http client: {e}")))?;
        Ok(Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
            token: token.filter(|t| !t.is_empty()),
        })
    }

    /// `POST /v1/jobs` or `POST /v1/{parent}/jobs`.
    pub async fn submit(&self, parent: Option<&str>, body: &Value) -> Result<Value, Error> {
        let path = match parent.map(trim_name).filter(|p| !p.is_empty()) {
            Some(p) => format!("{}/jobs", encode_path(p)),
            None => "jobs".to_owned(),
        };
        self.call(Method::POST, &path, Some(body)).await
    }

    /// `GET /v1/{name}`.
    pub async fn get(&self, name: &str) -> Result<Value, Error> {
        self.call(Method::GET, &encode_path(trim_name(name)), None)
            .await
    }

    /// One page of `GET /v1/{parent}/operations`.
    pub async fn list(
        &self,
        parent: Option<&str>,
        filter: Option<&str>,
        page_size: Option<u32>,
        page_token: Option<&str>,
    ) -> Result<Page, Error> {
        let mut query: Vec<(&str, String)> = Vec::new();
        if let Some(f) = filter {
            query.push(("filter", f.to_owned()));
        }
        if let Some(n) = page_size {
            query.push(("pageSize", n.to_string()));
        }
        if let Some(t) = page_token {
            query.push(("pageToken", t.to_owned()));
        }
        let url = format!("{}/v1/{}", self.base, collection(parent));
        let req = self.http.get(url).query(&query);
        let page = self.send(req).await?;
        Ok(Page {
            operations: page["operations"].as_array().cloned().unwrap_or_default(),
            next_page_token: page["nextPageToken"]
                .as_str()
                .filter(|t| !t.is_empty())
                .map(str::to_owned),
        })
    }

    /// `POST /v1/{name}:cancel`; answers `{}`.
    pub async fn cancel(&self, name: &str) -> Result<Value, Error> {
        let path = format!("{}:cancel", encode_path(trim_name(name)));
        self.call(Method::POST, &path, Some(&json!({}))).await
    }

    /// `POST /v1/{parent}/operations:batchCancel`; answers the batch's Operation.
    pub async fn batch_cancel(&self, parent: Option<&str>, filter: &str) -> Result<Value, Error> {
        let path = format!("{}:batchCancel", collection(parent));
        self.call(Method::POST, &path, Some(&json!({ "filter": filter })))
            .await
    }

    /// `DELETE /v1/{name}`; answers `{}`.
    pub async fn delete(&self, name: &str) -> Result<Value, Error> {
        self.call(Method::DELETE, &encode_path(trim_name(name)), None)
            .await
    }

    /// `POST /v1/{name}:wait` for at most `timeout` (the server caps it too).
    pub async fn wait(&self, name: &str, timeout: Duration) -> Result<Value, Error> {
        let path = format!("{}:wait", encode_path(trim_name(name)));
        let body = json!({ "timeout": proto_duration(timeout) });
        self.call(Method::POST, &path, Some(&body)).await
    }

    async fn call(&self, method: Method, path: &str, body: Option<&Value>) -> Result<Value, Error> {
        let mut req = self
            .http
            .request(method, format!("{}/v1/{path}", self.base));
        if let Some(body) = body {
            req = req.json(body);
        }
        self.send(req).await
    }

    async fn send(&self, mut req: RequestBuilder) -> Result<Value, Error> {
        if let Some(token) = &self.token {
            req = req.bearer_auth(token);
        }
        let unreachable = |e: reqwest::Error| Error::Unreachable {
            base: self.base.clone(),
            cause: one_line(&causes(&e)),
        };
        let res = req.send().await.map_err(unreachable)?;
        let status = res.status();
        let bytes = res.bytes().await.map_err(unreachable)?;
        let body: Option<Value> = serde_json::from_slice(&bytes).ok();
        if status.is_success() {
            return body.ok_or_else(|| Error::Api {
                status: "UNKNOWN".into(),
                message: format!("the api answered {status} with a body that is not JSON"),
            });
        }
        let envelope = body.as_ref().map(|b| &b["error"]);
        let field = |f: &str| {
            envelope
                .and_then(|e| e[f].as_str())
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        };
        Err(Error::Api {
            status: field("status").unwrap_or_else(|| status_name(status.as_u16()).to_owned()),
            message: one_line(&field("message").unwrap_or_else(|| {
                let text = String::from_utf8_lossy(&bytes);
                format!("the api answered {status}: {}", text.trim())
            })),
        })
    }
}

/// A name or parent as the api's path wants it: without a leading `/v1/` (or `/`).
pub fn trim_name(name: &str) -> &str {
    let name = name.strip_prefix("/v1/").unwrap_or(name);
    name.trim_start_matches('/')
}

/// `operations` or `{parent}/operations`, encoded.
fn collection(parent: Option<&str>) -> String {
    match parent.map(trim_name).filter(|p| !p.is_empty()) {
        Some(p) => format!("{}/operations", encode_path(p)),
        None => "operations".to_owned(),
    }
}

fn encode_path(path: &str) -> String {
    path.split('/')
        .map(|s| utf8_percent_encode(s, SEGMENT).to_string())
        .collect::<Vec<_>>()
        .join("/")
}

/// A proto3 JSON Duration, e.g. `"1.500s"`.
pub fn proto_duration(d: Duration) -> String {
    format!("{}.{:03}s", d.as_secs(), d.subsec_millis())
}

/// The canonical status name of an HTTP status, for an error without an envelope.
fn status_name(http: u16) -> &'static str {
    match http {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        409 => "ABORTED",
        429 => "RESOURCE_EXHAUSTED",
        499 => "CANCELLED",
        501 => "UNIMPLEMENTED",
        503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        500..=599 => "INTERNAL",
        _ => "UNKNOWN",
    }
}

/// Why a request failed: its causes (reqwest's own message repeats the whole URL).
fn causes(e: &reqwest::Error) -> String {
    let mut causes = Vec::new();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        causes.push(s.to_string());
        source = s.source();
    }
    if e.is_timeout() {
        causes.push("timed out".into());
    }
    if causes.is_empty() {
        causes.push(e.to_string());
    }
    causes.join(": ")
}

/// The error line is one line, whatever a message holds.
fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_lose_a_leading_v1_and_keep_the_rest() {
        assert_eq!(trim_name("/v1/operations/x"), "operations/x");
        assert_eq!(trim_name("operations/x"), "operations/x");
        assert_eq!(
            trim_name("/projects/p/operations/x"),
            "projects/p/operations/x"
        );
        assert_eq!(
            encode_path("projects/a b/operations/x:y"),
            "projects/a%20b/operations/x%3Ay"
        );
    }

    #[test]
    fn durations_go_in_proto3_form() {
        assert_eq!(proto_duration(Duration::from_millis(1500)), "1.500s");
        assert_eq!(proto_duration(Duration::from_secs(0)), "0.000s");
    }
}
