//! A private cluster a test owns, run by one of the deploy scripts (`deploy/rabbitmq-cluster.sh`,
//! `deploy/redis-cluster.sh`): both take a subcommand and the cluster's directory (`start DIR`,
//! `kill DIR N`, `up DIR N`, `stop DIR`, …), and `start` prints the node URLs, comma-separated,
//! as its last line.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

/// A cluster this test owns; stopped (by the PIDs its script started) when dropped.
pub struct ScriptCluster {
    script: &'static str,
    dir: PathBuf,
    nodes: usize,
    /// Every node's URL, comma-separated, in the order the script printed them.
    pub urls: String,
}

impl ScriptCluster {
    /// Runs `script start DIR` with these environment variables, DIR a new temporary directory
    /// `{prefix}-{uuid}`; the cluster it printed must have `nodes` nodes.
    pub async fn start(
        script: &'static str,
        prefix: &str,
        nodes: usize,
        vars: &[(&str, &OsStr)],
    ) -> Self {
        let dir = std::env::temp_dir().join(format!("{prefix}-{}", uuid::Uuid::now_v7().simple()));
        let mut cluster = Self {
            script,
            dir,
            nodes,
            urls: String::new(),
        };
        let stdout =
            super::run_script_with(script, ["start".as_ref(), cluster.dir.as_os_str()], vars).await;
        cluster.urls = stdout.lines().last().unwrap_or_default().to_owned();
        assert_eq!(cluster.urls.split(',').count(), nodes, "{stdout}");
        cluster
    }

    /// Runs `script cmd DIR args…`, failing the test unless it exits 0; returns its stdout.
    pub async fn run(&self, cmd: &str, args: &[&OsStr]) -> String {
        let mut all = vec![cmd.as_ref(), self.dir.as_os_str()];
        all.extend_from_slice(args);
        super::run_script(self.script, all).await
    }

    /// `kill -9` of node `node` (0-based).
    pub async fn kill(&self, node: usize) {
        self.run("kill", &[OsStr::new(&self.node_arg(node))]).await;
    }

    /// Starts node `node` again (the script waits until it runs).
    pub async fn up(&self, node: usize) {
        self.run("up", &[OsStr::new(&self.node_arg(node))]).await;
    }

    /// The cluster's directory (its nodes' files: `n0/`, `n1/`, …).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn node_arg(&self, node: usize) -> String {
        assert!(node < self.nodes, "node {node} of {}", self.nodes);
        node.to_string()
    }
}

impl Drop for ScriptCluster {
    fn drop(&mut self) {
        let path = format!("{}/{}", env!("CARGO_MANIFEST_DIR"), self.script);
        let _ = std::process::Command::new("bash")
            .arg(path)
            .arg("stop")
            .arg(&self.dir)
            .status();
    }
}
