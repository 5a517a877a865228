//! The typed HTTP client of the api (`Api`) and its answers (`Reply`), every one parsed strictly
//! against the shipped protos (`proto.rs`).

use super::*;

/// One HTTP answer.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
    /// The `WWW-Authenticate` header, if any.
    pub challenge: Option<String>,
}

impl Reply {
    /// Asserts a 200 and returns the body.
    #[track_caller]
    pub fn ok(self) -> Value {
        assert_eq!(self.status, 200, "expected 200, got {self:?}");
        self.body
    }

    /// Asserts an error in the AIP-193 envelope with this HTTP status and canonical status name.
    #[track_caller]
    pub fn error(&self, http: u16, status: &str) {
        assert_eq!(self.status, http, "{self:?}");
        let e = &self.body["error"];
        assert_eq!(e["code"], http, "{self:?}");
        assert_eq!(e["status"], status, "{self:?}");
        assert!(
            e["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{self:?}"
        );
        let details = e["details"].as_array().expect("details");
        assert!(
            details
                .iter()
                .any(|d| d["@type"] == "type.googleapis.com/google.rpc.ErrorInfo"
                    && d["reason"].as_str().is_some_and(|r| !r.is_empty())
                    && d["domain"].as_str().is_some_and(|r| !r.is_empty())),
            "no ErrorInfo in {self:?}"
        );
        let keys: Vec<&String> = self.body.as_object().expect("object").keys().collect();
        assert_eq!(keys, ["error"], "{self:?}");
    }
}

/// A typed client for the REST surface.
#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    pub base: String,
    /// Sent with every request (credentials).
    headers: reqwest::header::HeaderMap,
}

impl Api {
    /// A client of the api at `base` (`http://host:port`).
    pub fn at(base: &str) -> Self {
        Self {
            http: reqwest::Client::new(),
            base: base.to_owned(),
            headers: reqwest::header::HeaderMap::new(),
        }
    }

    /// The same client, sending `name: value` with every request.
    pub fn with_header(&self, name: &'static str, value: &str) -> Self {
        let mut api = self.clone();
        api.headers
            .insert(name, value.parse().expect("header value"));
        api
    }

    /// The same client, sending `Authorization: Bearer <token>`.
    pub fn bearer(&self, token: &str) -> Self {
        self.with_header("authorization", &format!("Bearer {token}"))
    }

    /// A client for the api at `base` (`https://…` with a client that trusts its CA).
    pub fn new(http: reqwest::Client, base: String) -> Self {
        Self {
            http,
            base,
            headers: reqwest::header::HeaderMap::new(),
        }
    }

    /// Any request: `path` is everything after the host, e.g. `/v1/operations`.
    pub async fn raw(&self, method: &str, path: &str, body: Option<Vec<u8>>) -> Reply {
        let verb = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self
            .http
            .request(verb, format!("{}{path}", self.base))
            .headers(self.headers.clone());
        if let Some(body) = body {
            req = req.header("content-type", "application/json").body(body);
        }
        let res = req.send().await.expect("api answers");
        let status = res.status().as_u16();
        let challenge = res
            .headers()
            .get("www-authenticate")
            .map(|v| v.to_str().expect("ascii").to_owned());
        let bytes = res.bytes().await.expect("body");
        crate::proto::check(crate::proto::message_for(method, path, status), &bytes);
        let body = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            panic!(
                "non-JSON answer ({status}): {e}: {:?}",
                String::from_utf8_lossy(&bytes)
            )
        });
        Reply {
            status,
            body,
            challenge,
        }
    }

    /// A request whose path goes on the wire exactly as given (an HTTP client library would
    /// resolve `%2E%2E` and `..` before sending). HTTP/1.1 over a fresh connection, closed after.
    pub async fn verbatim(&self, method: &str, path: &str, body: Option<&[u8]>) -> Reply {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let host = self.base.trim_start_matches("http://");
        let mut conn = tokio::net::TcpStream::connect(host).await.expect("connect");
        let mut req = format!("{method} {path} HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n");
        if let Some(body) = body {
            req += &format!(
                "content-type: application/json\r\ncontent-length: {}\r\n",
                body.len()
            );
        }
        req += "\r\n";
        conn.write_all(req.as_bytes()).await.expect("write");
        conn.write_all(body.unwrap_or_default())
            .await
            .expect("write");
        let mut answer = Vec::new();
        conn.read_to_end(&mut answer).await.expect("read");
        let text = String::from_utf8(answer).expect("utf-8 answer");
        let (head, body) = text.split_once("\r\n\r\n").expect("head and body");
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line: {head}"));
        crate::proto::check(
            crate::proto::message_for(method, path, status),
            body.as_bytes(),
        );
        let body = serde_json::from_str(body)
            .unwrap_or_else(|e| panic!("non-JSON answer ({status}): {e}: {body:?}"));
        Reply {
            status,
            body,
            challenge: None,
        }
    }

    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Reply {
        let body = body.map(|b| serde_json::to_vec(&b).expect("json"));
        self.raw(method, path, body).await
    }

    /// Submits a job at the top level (`parent` "") or under a parent; asserts it was accepted.
    pub async fn submit(&self, parent: &str, kind: &str, input: Value) -> Value {
        self.submit_with(parent, json!({ "kind": kind, "input": input }))
            .await
            .ok()
    }

    pub async fn submit_with(&self, parent: &str, body: Value) -> Reply {
        let path = if parent.is_empty() {
            "/v1/jobs".to_owned()
        } else {
            format!("/v1/{parent}/jobs")
        };
        self.call("POST", &path, Some(body)).await
    }

    pub async fn get(&self, name: &str) -> Reply {
        self.call("GET", &format!("/v1/{name}"), None).await
    }

    pub async fn cancel(&self, name: &str) -> Reply {
        self.call("POST", &format!("/v1/{name}:cancel"), Some(json!({})))
            .await
    }

    pub async fn delete(&self, name: &str) -> Reply {
        self.call("DELETE", &format!("/v1/{name}"), None).await
    }

    /// `:wait` with this timeout (e.g. "10s").
    pub async fn wait(&self, name: &str, timeout: &str) -> Reply {
        self.call(
            "POST",
            &format!("/v1/{name}:wait"),
            Some(json!({ "timeout": timeout })),
        )
        .await
    }

    /// The operation once it is done; fails the test if it is not done within [`DEADLINE`].
    pub async fn done(&self, name: &str) -> Value {
        let op = self
            .wait(name, &format!("{}s", DEADLINE.as_secs()))
            .await
            .ok();
        assert_eq!(op["done"], true, "not done within {DEADLINE:?}: {op}");
        op
    }

    /// Every operation of `collection` matching `filter` (all pages).
    pub async fn list_all(&self, collection: &str, filter: &str) -> Vec<Value> {
        let mut all = Vec::new();
        let mut token = String::new();
        loop {
            let mut query = format!("pageSize=1000&filter={}", encode(filter));
            if !token.is_empty() {
                query += &format!("&pageToken={token}");
            }
            let page = self.list(collection, &query).await.ok();
            all.extend(page["operations"].as_array().into_iter().flatten().cloned());
            match page["nextPageToken"].as_str() {
                Some(t) => token = t.to_owned(),
                None => return all,
            }
        }
    }

    /// `GET` of a list path with a query string; returns the parsed reply.
    pub async fn list(&self, collection: &str, query: &str) -> Reply {
        self.call("GET", &format!("/v1/{collection}?{query}"), None)
            .await
    }

    /// Waits until `name` is RUNNING and returns it, re-reading through short `:wait` calls (for
    /// built-in kinds, which have no probe); fails the test if it is done first or after
    /// [`DEADLINE`].
    pub async fn running(&self, name: &str) -> Value {
        let until = std::time::Instant::now() + DEADLINE;
        loop {
            let op = self.wait(name, "0.05s").await.ok();
            if state_of(&op) == "RUNNING" {
                return op;
            }
            assert_ne!(op["done"], true, "done before it was seen running: {op}");
            assert!(
                std::time::Instant::now() < until,
                "not running within {DEADLINE:?}: {op}"
            );
        }
    }
}
