//! A private cluster a scenario starts with one of the deploy scripts
//! (`deploy/rabbitmq-cluster.sh`, `deploy/redis-cluster.sh`: `start DIR` prints the node URLs as
//! its last line, `stop DIR` stops the nodes by their own PIDs and removes DIR).

use std::path::PathBuf;

/// A private cluster, stopped (by its own PIDs) when dropped.
pub struct ScriptCluster {
    script: &'static str,
    dir: PathBuf,
    /// Every node's URL, comma-separated, as the script printed them.
    pub urls: String,
}

impl ScriptCluster {
    /// Runs `deploy/{script} start DIR`, DIR a new temporary directory `{prefix}-{uuid}`; `what`
    /// names the cluster in the error if it does not start.
    pub fn start(script: &'static str, prefix: &str, what: &str) -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!("{prefix}-{}", uuid::Uuid::now_v7()));
        let out = std::process::Command::new("bash")
            .arg(path(script))
            .arg("start")
            .arg(&dir)
            .stdin(std::process::Stdio::null())
            .output()?;
        let cluster = Self {
            script,
            dir,
            urls: String::from_utf8_lossy(&out.stdout)
                .lines()
                .last()
                .unwrap_or_default()
                .trim()
                .to_owned(),
        };
        if !out.status.success() {
            anyhow::bail!(
                "the {what} cluster did not start: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(cluster)
    }
}

fn path(script: &str) -> String {
    format!("{}/../deploy/{script}", env!("CARGO_MANIFEST_DIR"))
}

impl Drop for ScriptCluster {
    fn drop(&mut self) {
        let _ = std::process::Command::new("bash")
            .arg(path(self.script))
            .arg("stop")
            .arg(&self.dir)
            .status();
    }
}
