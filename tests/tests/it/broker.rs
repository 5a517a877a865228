//! A private RabbitMQ node for one test, for faults that must not touch the shared broker (its
//! configuration, its lifetime). Started with the machine's `rabbitmq-server` in a temporary
//! directory on a free port; killed, with everything it started, when dropped.

use std::path::PathBuf;
use std::time::{Duration, Instant};

pub struct PrivateRabbit {
    pub port: u16,
    pub dir: PathBuf,
    node: String,
    dist_port: u16,
    child: Option<tokio::process::Child>,
}

impl PrivateRabbit {
    /// Starts a node with extra `rabbitmq.conf` lines and an `advanced.config` term list for the
    /// `rabbit` application; waits until it accepts AMQP connections.
    pub async fn start(conf: &str, advanced: &str) -> Self {
        let id = uuid::Uuid::now_v7().simple().to_string();
        let dir = std::env::temp_dir().join(format!("lro-rabbit-{id}"));
        std::fs::create_dir_all(dir.join("mnesia")).expect("dir");
        let port = free_port();
        std::fs::write(dir.join("enabled_plugins"), "[].\n").expect("plugins");
        std::fs::write(
            dir.join("rabbitmq.conf"),
            format!("listeners.tcp.default = 127.0.0.1:{port}\n{conf}\n"),
        )
        .expect("conf");
        std::fs::write(
            dir.join("advanced.config"),
            format!("[{{rabbit, [{advanced}]}}].\n"),
        )
        .expect("advanced");
        let mut broker = Self {
            port,
            node: format!("lro{}@localhost", &id[id.len() - 10..]),
            dist_port: free_port(),
            dir,
            child: None,
        };
        broker.up().await;
        broker
    }

    /// Kills the node (`kill -9`: no clean shutdown): connections drop and the port goes dark
    /// until [`Self::up`] starts it again from its data directory.
    pub fn kill(&mut self) {
        // The server script's process group, then the Erlang VM it started, which does not stay
        // in that group: it is found by its home directory, this node's own.
        // (`kill -s SIG -- -PGID`: procps-ng 4.0 misreads `kill -KILL -PGID`, e.g. as pid -1.)
        if let Some(pid) = self.child.take().and_then(|c| c.id()) {
            let _ = std::process::Command::new("kill")
                .args(["-s", "KILL", "--", &format!("-{pid}")])
                .status();
        }
        let _ = std::process::Command::new("pkill")
            .args(["-KILL", "-f", &format!("home {}", self.dir.display())])
            .status();
    }

    /// Starts the node and waits until it accepts AMQP connections.
    pub async fn up(&mut self) {
        let dir = &self.dir;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("server.out"))
            .expect("log");
        let child = tokio::process::Command::new("/usr/lib/rabbitmq/bin/rabbitmq-server")
            .current_dir(dir)
            .env("HOME", dir)
            .env("RABBITMQ_NODENAME", &self.node)
            .env("RABBITMQ_NODE_PORT", self.port.to_string())
            .env("RABBITMQ_DIST_PORT", self.dist_port.to_string())
            .env("RABBITMQ_MNESIA_BASE", dir.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", dir)
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", dir.join("enabled_plugins"))
            .env("RABBITMQ_CONFIG_FILE", dir.join("rabbitmq.conf"))
            .env("RABBITMQ_ADVANCED_CONFIG_FILE", dir.join("advanced.config"))
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .expect("rabbitmq-server starts");
        self.child = Some(child);
        let until = Instant::now() + Duration::from_secs(60);
        while tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .is_err()
        {
            assert!(
                Instant::now() < until,
                "private rabbitmq did not start: see {}",
                self.dir.display()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    /// Everything the node logged so far.
    pub fn log(&self) -> String {
        let mut all = String::new();
        for entry in std::fs::read_dir(&self.dir).into_iter().flatten().flatten() {
            if entry.path().extension().is_some_and(|e| e == "log") {
                all += &std::fs::read_to_string(entry.path()).unwrap_or_default();
            }
        }
        all
    }
}

impl Drop for PrivateRabbit {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}
