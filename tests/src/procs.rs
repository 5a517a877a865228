//! The real binaries as child processes, for the benchmark: `lro-api` and `lro-worker`, found
//! beside the running executable (so `cargo build --release --workspace` builds all three).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::process::{Child, Command};

/// An api process and its worker processes in one namespace; killed when dropped.
pub struct Procs {
    pub namespace: String,
    pub addr: SocketAddr,
    api: Child,
    workers: Vec<Child>,
    connections: lro_common::config::Connections,
}

impl Procs {
    /// Starts `lro-api` on a free port and `workers` × `lro-worker` with `concurrency` each, in
    /// a fresh namespace; returns once the api answers.
    pub async fn start(prefix: &str, workers: usize, concurrency: usize) -> anyhow::Result<Self> {
        Self::start_with(prefix, workers, concurrency, &[]).await
    }

    /// [`Procs::start`], with these variables for the api as well.
    pub async fn start_with(
        prefix: &str,
        workers: usize,
        concurrency: usize,
        api_vars: &[(&str, String)],
    ) -> anyhow::Result<Self> {
        Self::start_on(prefix, workers, concurrency, api_vars, &[]).await
    }

    /// [`Procs::start_with`], with `shared` variables for every process (e.g. `LRO_AMQP_URL`,
    /// `LRO_QUEUE_TYPE`).
    pub async fn start_on(
        prefix: &str,
        workers: usize,
        concurrency: usize,
        api_vars: &[(&str, String)],
        shared: &[(&str, String)],
    ) -> anyhow::Result<Self> {
        let namespace = format!("{prefix}{}", uuid::Uuid::now_v7().simple());
        let mut connections = lro_common::config::Connections::local(&namespace);
        if let Some((_, urls)) = shared.iter().find(|(k, _)| *k == "LRO_AMQP_URL") {
            connections.amqp_url = urls.clone();
        }
        let addr = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
        let mut vars = vec![
            ("LRO_HTTP_ADDR", addr.to_string()),
            ("LRO_GRPC_ADDR", "127.0.0.1:0".to_owned()),
        ];
        vars.extend(api_vars.iter().cloned());
        vars.extend(shared.iter().cloned());
        let api = spawn("lro-api", &namespace, &vars)?;
        let mut children = Vec::new();
        for i in 0..workers {
            let mut vars = vec![
                ("LRO_CONCURRENCY", concurrency.to_string()),
                ("LRO_WORKER_ID", format!("bench-w{i}")),
            ];
            vars.extend(shared.iter().cloned());
            children.push(spawn("lro-worker", &namespace, &vars)?);
        }
        let until = Instant::now() + Duration::from_secs(30);
        while tokio::net::TcpStream::connect(addr).await.is_err() {
            if Instant::now() > until {
                bail!("lro-api did not start listening on {addr}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(Self {
            namespace,
            addr,
            api,
            workers: children,
            connections,
        })
    }

    /// The api process's id.
    pub fn api_pid(&self) -> Option<u32> {
        self.api.id()
    }

    /// The worker processes' ids.
    pub fn worker_pids(&self) -> Vec<u32> {
        self.workers.iter().filter_map(Child::id).collect()
    }

    /// `http://addr/v1/` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}/v1/{path}", self.addr)
    }

    /// Stops everything (SIGKILL) and removes the namespace.
    pub async fn stop(mut self) {
        for child in self
            .workers
            .iter_mut()
            .chain(std::iter::once(&mut self.api))
        {
            let _ = child.kill().await;
        }
        if let Err(e) = crate::remove_namespace(&self.connections).await {
            eprintln!("namespace {} not fully removed: {e}", self.namespace);
        }
    }
}

fn binary(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let path = exe.parent().context("no executable directory")?.join(name);
    if !path.exists() {
        bail!(
            "{} not found: build the workspace first (cargo build --release --workspace)",
            path.display()
        );
    }
    Ok(path)
}

fn spawn(name: &str, namespace: &str, vars: &[(&str, String)]) -> anyhow::Result<Child> {
    Command::new(binary(name)?)
        .env("LRO_NAMESPACE", namespace)
        .env("RUST_LOG", "warn")
        // Several processes per host (and tests running at once): never the fixed default port.
        .env("LRO_ADMIN_ADDR", "127.0.0.1:0")
        .envs(vars.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot start {name}"))
}
