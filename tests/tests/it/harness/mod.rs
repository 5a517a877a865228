//! What every test stands on: a fresh system (api in this process, real Redis and RabbitMQ, a
//! namespace of its own), a typed HTTP client (`api.rs`), a probe kind that reports what a job
//! saw (`probe.rs`), and for the fault tests a private cluster run by a deploy script
//! (`cluster.rs`) and a steady stream of submits (`stream.rs`).
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

mod api;
mod cluster;
mod probe;
mod stream;

pub use api::{Api, Reply};
pub use cluster::ScriptCluster;
pub use probe::Probe;
pub use stream::SubmitStream;

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
    /// Every master: a done announcement is published on the master of its operation's slot.
    masters: Vec<redis::Client>,
    channel: String,
    pubsub: redis::aio::PubSub,
    /// Subscriptions on nodes the test kills ([`DoneCounter::witness`]).
    witnesses: Vec<redis::aio::PubSub>,
}

impl DoneCounter {
    pub async fn subscribe(env: &Env) -> Self {
        // On a cluster, any seed: a PUBLISH on any node reaches subscribers on every node.
        let connections = env.sys.connections();
        let urls = connections.redis_url.clone();
        let first = urls.split(',').next().unwrap_or(&urls);
        let client = redis::Client::open(first).expect("redis url");
        let tls = connections.client_tls().expect("tls");
        let masters = lro_tests::redis_nodes::masters(&urls, &tls)
            .await
            .expect("masters");
        let channel = format!("{}:done", env.sys.namespace);
        let mut pubsub = client.get_async_pubsub().await.expect("pubsub");
        pubsub.subscribe(&channel).await.expect("subscribe");
        Self {
            masters,
            channel,
            pubsub,
            witnesses: Vec::new(),
        }
    }

    /// Also subscribes on the node at `url`, which the test is about to kill: an announcement it
    /// published just before the crash reached its own subscribers, but may never have been
    /// forwarded to the seed's. Its count stands for an operation the seed heard nothing of.
    pub async fn witness(mut self, url: &str) -> Self {
        let client = redis::Client::open(url).expect("redis url");
        let mut pubsub = client.get_async_pubsub().await.expect("pubsub");
        pubsub.subscribe(&self.channel).await.expect("subscribe");
        self.witnesses.push(pubsub);
        self
    }

    /// Everything announced so far, by operation name. A marker published now through every
    /// master bounds the read without a timer: messages from one node reach a subscriber in the
    /// order they were published there, but those forwarded from other masters of a cluster may
    /// arrive after a marker published on the subscriber's own node.
    pub async fn counts(mut self) -> HashMap<String, usize> {
        let marker = format!("end-{}", uuid::Uuid::now_v7());
        // A master that is down (a test crashed it) sends nothing more: it needs no marker.
        let mut sent = 0;
        for master in &self.masters {
            let published: redis::RedisResult<i64> = async {
                let mut conn = master.get_multiplexed_async_connection().await?;
                redis::cmd("PUBLISH")
                    .arg(&self.channel)
                    .arg(&marker)
                    .query_async(&mut conn)
                    .await
            }
            .await;
            sent += usize::from(published.is_ok());
        }
        assert!(sent > 0, "no master took the end marker");
        let mut markers = 0;
        let mut counts: HashMap<String, usize> = HashMap::new();
        let mut stream = self.pubsub.on_message();
        loop {
            let msg = tokio::time::timeout(DEADLINE, stream.next())
                .await
                .expect("announcements within the deadline")
                .expect("subscription open");
            let payload: String = msg.get_payload().expect("text");
            if payload == marker {
                markers += 1;
                if markers == sent {
                    break;
                }
                continue;
            }
            *counts.entry(payload).or_default() += 1;
        }
        drop(stream);
        for witness in self.witnesses {
            // Its node is down: the subscription ends once what it received is read.
            let mut heard: HashMap<String, usize> = HashMap::new();
            let mut stream = witness.into_on_message();
            while let Some(msg) = tokio::time::timeout(DEADLINE, stream.next())
                .await
                .expect("a killed node's subscription ends")
            {
                let payload: String = msg.get_payload().expect("text");
                *heard.entry(payload).or_default() += 1;
            }
            for (name, n) in heard {
                counts.entry(name).or_insert(n);
            }
        }
        counts
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
