//! What every test stands on: a fresh system (api in this process, real Redis and RabbitMQ, a
//! namespace of its own), a typed HTTP client, and a probe kind that reports what a job saw.
//!
//! Nothing here sleeps to synchronise: tests wait on the thing itself (a `:wait` call, a probe
//! event), each bounded by a deadline so that a broken system fails the test instead of hanging it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use std::process::Stdio;

use futures_util::StreamExt;
use lro_tests::System;
use lro_worker::{CancelReason, JobContext, JobError, JobResult, Kinds};
use serde_json::{Value, json};
use tokio::process::Child;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// The longest any single step of a test may take before it counts as a failure.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// An api with no workers yet, in a fresh namespace.
pub struct Env {
    pub sys: System,
    pub api: Api,
}

impl Env {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// An api configured by `configure`, with no workers yet.
    pub async fn start_with(configure: impl FnOnce(&mut lro_api::ApiConfig)) -> Self {
        // `LRO_TEST_LOG=lro_worker=debug,…` shows what the in-process api and workers do.
        if let Ok(filter) = std::env::var("LRO_TEST_LOG") {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_test_writer()
                .try_init();
        }
        let sys = System::start_with("t", configure)
            .await
            .expect("api starts");
        let api = Api::at(&format!("http://{}", sys.addr));
        Self { sys, api }
    }

    /// An api and one worker running a probe's kinds.
    pub async fn with_worker(concurrency: u16) -> (Self, Probe) {
        let mut env = Self::start().await;
        let probe = Probe::default();
        env.worker(probe.kinds(), concurrency).await;
        (env, probe)
    }

    /// Starts the real worker command line as a child process (killed when dropped), with the
    /// built-in kinds, in this namespace, configured by `LRO_*` variables (which may set
    /// `RUST_LOG` too; errors only by default). Its stdout is dropped.
    pub fn worker_process(&self, id: &str, concurrency: u16, vars: &[(&str, &str)]) -> Child {
        self.worker_command(id, concurrency, vars)
            .stdout(Stdio::null())
            .spawn()
            .expect("worker process starts")
    }

    /// As [`Env::worker_process`], and the lines it writes on stdout (its log), as they come.
    pub fn worker_process_logged(
        &self,
        id: &str,
        concurrency: u16,
        vars: &[(&str, &str)],
    ) -> (Child, tokio::sync::mpsc::UnboundedReceiver<String>) {
        let mut child = self
            .worker_command(id, concurrency, vars)
            .stdout(Stdio::piped())
            .spawn()
            .expect("worker process starts");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            use tokio::io::AsyncBufReadExt;
            let mut lines = tokio::io::BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        (child, rx)
    }

    fn worker_command(
        &self,
        id: &str,
        concurrency: u16,
        vars: &[(&str, &str)],
    ) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_lro-test-worker"));
        command
            .env("LRO_NAMESPACE", &self.sys.namespace)
            .env("LRO_AMQP_URL", self.sys.connections().amqp_url)
            .env("LRO_REDIS_URL", self.sys.connections().redis_url)
            .env("LRO_WORKER_ID", id)
            .env("LRO_CONCURRENCY", concurrency.to_string())
            // Tests run many workers at once: never the fixed default port.
            .env("LRO_ADMIN_ADDR", "127.0.0.1:0")
            .env("RUST_LOG", "error")
            .envs(vars.iter().copied())
            .stdin(Stdio::null())
            .kill_on_drop(true);
        command
    }

    /// Starts a worker running `kinds`; returns its id.
    pub async fn worker(&mut self, kinds: Kinds, concurrency: u16) -> String {
        self.worker_with(kinds, |c| c.concurrency = concurrency)
            .await
    }

    /// Starts a worker running `kinds`, its configuration (this namespace, the shared
    /// services) adjusted by `configure`; returns its id.
    pub async fn worker_with(
        &mut self,
        kinds: Kinds,
        configure: impl FnOnce(&mut lro_worker::WorkerConfig),
    ) -> String {
        let mut config = lro_worker::WorkerConfig::new(self.sys.connections());
        configure(&mut config);
        let worker = self
            .sys
            .add_worker_with(kinds, config)
            .await
            .expect("worker starts");
        worker.id().to_owned()
    }
}

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

/// Re-checks `check` every 20 ms until it answers `Some`, failing the test after [`DEADLINE`]:
/// for states no event announces (a worker process running jobs). The condition decides, not the
/// time.
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let until = std::time::Instant::now() + DEADLINE;
    loop {
        if let Some(found) = check().await {
            return found;
        }
        assert!(
            std::time::Instant::now() < until,
            "{what}: not within {DEADLINE:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Counts the terminal writes Redis announces on the namespace's done channel (one message per
/// write that made an operation done, and per delete).
pub struct DoneCounter {
    client: redis::Client,
    channel: String,
    pubsub: redis::aio::PubSub,
}

impl DoneCounter {
    pub async fn subscribe(env: &Env) -> Self {
        // On a cluster, any seed: a PUBLISH on any node reaches subscribers on every node.
        let urls = env.sys.connections().redis_url;
        let first = urls.split(',').next().unwrap_or(&urls);
        let client = redis::Client::open(first).expect("redis url");
        let channel = format!("{}:done", env.sys.namespace);
        let mut pubsub = client.get_async_pubsub().await.expect("pubsub");
        pubsub.subscribe(&channel).await.expect("subscribe");
        Self {
            client,
            channel,
            pubsub,
        }
    }

    /// Everything announced so far, by operation name. A marker published now bounds the read
    /// without a timer.
    pub async fn counts(mut self) -> HashMap<String, usize> {
        let marker = format!("end-{}", uuid::Uuid::now_v7());
        let mut conn = self
            .client
            .get_multiplexed_async_connection()
            .await
            .expect("redis");
        let _: i64 = redis::cmd("PUBLISH")
            .arg(&self.channel)
            .arg(&marker)
            .query_async(&mut conn)
            .await
            .expect("publish");
        let mut counts: HashMap<String, usize> = HashMap::new();
        let mut stream = self.pubsub.on_message();
        loop {
            let msg = tokio::time::timeout(DEADLINE, stream.next())
                .await
                .expect("announcements within the deadline")
                .expect("subscription open");
            let payload: String = msg.get_payload().expect("text");
            if payload == marker {
                return counts;
            }
            *counts.entry(payload).or_default() += 1;
        }
    }
}

/// Direct access to the namespace's Redis store, for injecting states no request can produce.
pub async fn store(env: &Env) -> lro_common::store::Store {
    let c = env.sys.connections();
    let tls = c.client_tls().expect("trust");
    c.store(&tls).await.expect("redis")
}

/// A new top-level operation of `kind` (empty input), as the api would create it: the record
/// only, neither guarded nor published — the caller injects the rest.
pub fn new_operation(kind: &str) -> lro_common::operation::Operation {
    use lro_common::operation::{NewOperation, Operation};
    let name = lro_common::name::Parent::root()
        .operation(&uuid::Uuid::now_v7().to_string())
        .expect("name");
    let spec = NewOperation {
        name,
        kind: kind.into(),
        input: json!({}),
        cancellable: true,
        request_id: None,
        timeout_ms: None,
        retention_ms: None,
    };
    Operation::new(spec, lro_common::time::now_millis())
}

/// The name of an operation JSON.
pub fn name_of(op: &Value) -> String {
    op["name"].as_str().expect("name").to_owned()
}

/// Its `metadata.state`.
pub fn state_of(op: &Value) -> &str {
    op["metadata"]["state"].as_str().expect("state")
}

/// What a probe job has seen so far.
#[derive(Debug, Clone, Default)]
pub struct Seen {
    /// How many times a worker started it.
    pub starts: u32,
    /// Why its token fired, if it did.
    pub stopped: Option<CancelReason>,
}

#[derive(Default)]
struct ProbeState {
    seen: HashMap<String, Seen>,
    gates: HashMap<String, CancellationToken>,
}

/// Job kinds that report to the test: `gate` (and `sleep`, overridden to behave the same) records
/// its start after reporting progress 40 "gate open", then runs until the test releases it
/// (succeeding with `{"released": true}`) or its token fires (recording why).
#[derive(Clone, Default)]
pub struct Probe {
    state: Arc<Mutex<ProbeState>>,
    changed: Arc<Notify>,
}

impl Probe {
    /// The built-in kinds, with `gate` added and `sleep` replaced by the probe.
    /// `deaf` is a gate that records its token firing but ignores it: it runs until released and
    /// succeeds.
    pub fn kinds(&self) -> Kinds {
        let (a, b, c) = (self.clone(), self.clone(), self.clone());
        Kinds::builtin()
            .kind("gate", move |_, ctx| a.clone().run(ctx, true))
            .kind("sleep", move |_, ctx| b.clone().run(ctx, true))
            .kind("deaf", move |_, ctx| c.clone().run(ctx, false))
    }

    async fn run(self, ctx: JobContext, listening: bool) -> JobResult {
        let name = ctx.name().as_str().to_owned();
        ctx.progress(40, "gate open").await;
        let gate = self.update(&name, |s| s.starts += 1);
        let record_stop = || self.update(&name, |s| s.stopped = ctx.cancel_reason());
        tokio::select! {
            () = gate.cancelled() => {}
            () = ctx.cancelled() => {
                record_stop();
                if listening {
                    return Err(JobError::Cancelled);
                }
                gate.cancelled().await;
            }
        }
        Ok(json!({ "released": true }))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ProbeState> {
        self.state.lock().expect("probe lock")
    }

    fn update(&self, name: &str, f: impl FnOnce(&mut Seen)) -> CancellationToken {
        let gate = {
            let mut state = self.lock();
            f(state.seen.entry(name.to_owned()).or_default());
            state.gates.entry(name.to_owned()).or_default().clone()
        };
        self.changed.notify_waiters();
        gate
    }

    /// Lets the job `name` finish successfully (now, or as soon as it starts).
    pub fn release(&self, name: &str) {
        self.lock()
            .gates
            .entry(name.to_owned())
            .or_default()
            .cancel();
    }

    /// What the job `name` has seen so far.
    pub fn seen(&self, name: &str) -> Seen {
        self.lock().seen.get(name).cloned().unwrap_or_default()
    }

    /// Waits until what `name` has seen satisfies `pred`; fails the test after [`DEADLINE`].
    pub async fn until(&self, name: &str, pred: impl Fn(&Seen) -> bool) -> Seen {
        let wait = async {
            loop {
                let notified = self.changed.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                let seen = self.seen(name);
                if pred(&seen) {
                    return seen;
                }
                notified.await;
            }
        };
        match tokio::time::timeout(DEADLINE, wait).await {
            Ok(seen) => seen,
            Err(_) => panic!(
                "probe {name}: condition not met within {DEADLINE:?}: {:?}",
                self.seen(name)
            ),
        }
    }

    /// Waits until the job `name` has started.
    pub async fn started(&self, name: &str) -> Seen {
        self.until(name, |s| s.starts > 0).await
    }
}

/// Percent-encodes a query value.
pub fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Runs one of the tests' own scripts (`tests/<script>`, with bash) with these arguments and no
/// standard input; fails the test, showing both outputs, unless it exits 0. Returns its stdout,
/// which is also printed (shown with `--nocapture`).
pub async fn run_script<I, S>(script: &str, args: I) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    run_script_with(script, args, &[]).await
}

/// [`run_script`] with these environment variables set.
pub async fn run_script_with<I, S>(
    script: &str,
    args: I,
    vars: &[(&str, &std::ffi::OsStr)],
) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let path = format!("{}/{script}", env!("CARGO_MANIFEST_DIR"));
    let out = tokio::process::Command::new("bash")
        .arg(&path)
        .args(args)
        .envs(vars.iter().copied())
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap_or_else(|e| panic!("{script} does not run: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{script} failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    println!("{stdout}");
    stdout
}
