//! TLS: the api serving REST and gRPC over TLS with a certificate from a throwaway CA made here,
//! clients that trust that CA only; the api and workers against a TLS-only Redis and a TLS
//! RabbitMQ listener (private instances, the CA given as `LRO_TLS_CA_FILE` would); and the api
//! binary refusing half or broken TLS settings at start.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use lro_api::pb::google::longrunning::GetOperationRequest;
use lro_api::pb::google::longrunning::operations_client::OperationsClient;
use lro_api::tls::TlsFiles;
use lro_common::config::Connections;
use lro_common::tls::ClientTls;
use lro_worker::Kinds;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tonic::transport::{Certificate, Channel, ClientTlsConfig};

use crate::broker::{PrivateRabbit, free_port};
use crate::harness::{Api, DEADLINE, Env, name_of, state_of};

/// A CA and a server certificate it signed (for `localhost` and `127.0.0.1`, server and client
/// auth), as PEM files in a directory of their own, removed when dropped.
pub struct Pki {
    dir: PathBuf,
    pub ca: PathBuf,
    ca_pem: String,
    cert: PathBuf,
    key: PathBuf,
}

impl Pki {
    pub fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("lro-pki-{}", uuid::Uuid::now_v7().simple()));
        std::fs::create_dir_all(&dir).expect("pki dir");

        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "lro test CA");
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_key = KeyPair::generate().expect("ca key");
        let ca_pem = ca_params.self_signed(&ca_key).expect("ca cert").pem();
        let issuer = Issuer::new(ca_params, ca_key);

        let mut params = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".into()])
            .expect("server params");
        params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        // Client auth too: a TLS Redis Cluster's nodes present it to each other on the bus.
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = KeyPair::generate().expect("server key");
        let cert = params.signed_by(&key, &issuer).expect("server cert");

        let pki = Self {
            ca: dir.join("ca.pem"),
            cert: dir.join("server.pem"),
            key: dir.join("server.key"),
            ca_pem,
            dir,
        };
        std::fs::write(&pki.ca, &pki.ca_pem).expect("write ca");
        std::fs::write(&pki.cert, cert.pem()).expect("write cert");
        std::fs::write(&pki.key, key.serialize_pem()).expect("write key");
        pki
    }

    pub fn files(&self) -> TlsFiles {
        TlsFiles {
            cert: self.cert.clone(),
            key: self.key.clone(),
        }
    }

    /// An HTTPS client that trusts this CA and nothing else.
    pub fn https_client(&self) -> reqwest::Client {
        let ca = reqwest::Certificate::from_pem(self.ca_pem.as_bytes()).expect("ca pem");
        reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(ca)
            .build()
            .expect("https client")
    }

    /// A gRPC channel over TLS to `addr` that trusts this CA and nothing else.
    async fn grpc_channel(&self, addr: SocketAddr) -> Channel {
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&self.ca_pem))
            .domain_name("localhost");
        Channel::from_shared(format!("https://{addr}"))
            .expect("uri")
            .tls_config(tls)
            .expect("tls config")
            .connect()
            .await
            .expect("grpc over tls connects")
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test]
async fn rest_and_grpc_are_served_over_tls() {
    let pki = Pki::new();
    let mut env = Env::start_with(|c| c.tls = Some(pki.files())).await;
    env.worker(Kinds::builtin(), 2).await;
    assert_eq!(env.sys.scheme, "https");
    env.api = Api::new(pki.https_client(), format!("https://{}", env.sys.addr));

    // REST over https: submit, wait, get (every answer parsed strictly, as everywhere).
    let name = name_of(&env.api.submit("", "noop", json!({})).await);
    assert_eq!(state_of(&env.api.done(&name).await), "SUCCEEDED");
    assert_eq!(env.api.get(&name).await.ok()["name"], name.as_str());

    // Clients the server cannot talk to: plain HTTP on the TLS port, a client that does not
    // trust the CA, garbage where a ClientHello belongs, and one that never says anything.
    let url = env.sys.url(&name);
    let plain = reqwest::Client::new()
        .get(url.replace("https://", "http://"))
        .send()
        .await;
    assert!(plain.is_err(), "plain http answered: {plain:?}");
    let untrusting = reqwest::Client::builder()
        .use_rustls_tls()
        .build()
        .expect("client");
    let refused = untrusting.get(&url).send().await;
    assert!(refused.is_err(), "a client without the CA got {refused:?}");
    let mut garbage = tokio::net::TcpStream::connect(env.sys.addr)
        .await
        .expect("tcp");
    garbage
        .write_all(b"\x16\x03\x01\x00\x05hello, not tls")
        .await
        .expect("write");
    drop(garbage);
    let _silent = tokio::net::TcpStream::connect(env.sys.addr)
        .await
        .expect("tcp");

    // None of them hurt the server or its other clients: REST and gRPC still answer.
    assert_eq!(env.api.get(&name).await.ok()["done"], true);
    let mut grpc = OperationsClient::new(pki.grpc_channel(env.sys.grpc_addr).await);
    let got = grpc
        .get_operation(GetOperationRequest { name: name.clone() })
        .await
        .expect("GetOperation over tls")
        .into_inner();
    assert_eq!(got.name, name);
    assert!(got.done);

    // Plain (h2c) gRPC on the TLS port gets nothing.
    let plain = async {
        let channel = Channel::from_shared(format!("http://{}", env.sys.grpc_addr))
            .expect("uri")
            .connect()
            .await?;
        OperationsClient::new(channel)
            .get_operation(GetOperationRequest { name: name.clone() })
            .await
            .map_err(Into::into)
    };
    let plain: Result<_, Box<dyn std::error::Error>> = plain.await;
    assert!(plain.is_err(), "plain grpc answered: {plain:?}");
}

/// A private TLS-only Redis (no plain port) on a free loopback port, with the test CA's server
/// certificate; killed by its PID when dropped.
struct PrivateRedis {
    port: u16,
    dir: PathBuf,
    child: tokio::process::Child,
}

impl PrivateRedis {
    async fn start(pki: &Pki) -> Self {
        let dir = pki.dir.join("redis");
        std::fs::create_dir_all(&dir).expect("redis dir");
        let port = free_port();
        let path = |p: &PathBuf| p.to_str().expect("utf-8 path").to_owned();
        let child = tokio::process::Command::new("redis-server")
            .args([
                "--bind",
                "127.0.0.1",
                "--port",
                "0",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .args(["--tls-port", &port.to_string()])
            .args(["--tls-cert-file", &path(&pki.cert)])
            .args(["--tls-key-file", &path(&pki.key)])
            .args(["--tls-ca-cert-file", &path(&pki.ca)])
            .args(["--tls-auth-clients", "no"])
            .args(["--dir", &path(&dir)])
            .args(["--logfile", &path(&dir.join("redis.log"))])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("redis-server starts");
        let until = Instant::now() + DEADLINE;
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(
                Instant::now() < until,
                "private redis did not start: see {}",
                dir.display()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Self { port, dir, child }
    }

    fn url(&self) -> String {
        format!("rediss://127.0.0.1:{}", self.port)
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-s", "KILL", &pid.to_string()])
                .status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test]
async fn the_api_and_workers_use_a_tls_only_redis_trusting_the_given_ca() {
    let pki = Pki::new();
    let redis = PrivateRedis::start(&pki).await;
    let url = redis.url();

    // The system's roots alone do not trust the test CA: the api says so and does not start.
    let refused = lro_tests::System::start_with("t", |c| c.connections.redis_url = url.clone())
        .await
        .err()
        .expect("an untrusted redis is refused");
    let refused = format!("{refused:#}");
    eprintln!("REFUSED {refused}");
    assert!(
        refused.contains("cannot reach redis at rediss://"),
        "{refused}"
    );

    // With the CA (LRO_TLS_CA_FILE), the api and a worker run on it.
    let ca = pki.ca.clone();
    let mut env = Env::start_with(|c| {
        c.connections.redis_url = url.clone();
        c.connections.tls_ca_file = Some(ca.clone());
    })
    .await;
    env.worker(Kinds::builtin(), 2).await;
    let name = name_of(&env.api.submit("", "noop", json!({})).await);
    assert_eq!(state_of(&env.api.done(&name).await), "SUCCEEDED");

    // And the record is there, in the private Redis.
    let tls = ClientTls::load(Some(&pki.ca)).expect("ca");
    let client = tls.redis_client(&url).expect("client");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("rediss");
    let (_, keys): (u64, Vec<String>) = redis::cmd("SCAN")
        .arg(0)
        .arg("MATCH")
        .arg(format!("{}:op:*", env.sys.namespace))
        .arg("COUNT")
        .arg(1000)
        .query_async(&mut conn)
        .await
        .expect("scan");
    assert_eq!(keys.len(), 1, "{keys:?}");
    drop(env); // (before the private Redis goes, so the namespace is removed from it)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_and_workers_use_amqps_trusting_the_given_ca() {
    let pki = Pki::new();
    let tls_port = free_port();
    let rabbit = PrivateRabbit::start(
        &format!(
            "loopback_users = none\n\
             listeners.ssl.default = 127.0.0.1:{tls_port}\n\
             ssl_options.cacertfile = {}\n\
             ssl_options.certfile = {}\n\
             ssl_options.keyfile = {}\n\
             ssl_options.verify = verify_none\n\
             ssl_options.fail_if_no_peer_cert = false",
            pki.ca.display(),
            pki.cert.display(),
            pki.key.display()
        ),
        "",
    )
    .await;
    let until = Instant::now() + DEADLINE;
    while tokio::net::TcpStream::connect(("127.0.0.1", tls_port))
        .await
        .is_err()
    {
        assert!(
            Instant::now() < until,
            "no TLS listener: see {}",
            rabbit.dir.display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let amqps = format!("amqps://guest:guest@127.0.0.1:{tls_port}/%2f");

    // Without the CA the broker's certificate is not trusted.
    let refused = lro_common::broker::connect(&amqps, &ClientTls::system()).await;
    let refused = format!("{:?}", refused.expect_err("an untrusted broker is refused"));
    assert!(refused.contains("UnknownIssuer"), "{refused}");

    let ca = pki.ca.clone();
    let mut env = Env::start_with(|c| {
        c.connections.amqp_url = amqps.clone();
        c.connections.tls_ca_file = Some(ca.clone());
    })
    .await;
    env.worker(Kinds::builtin(), 2).await;
    let name = name_of(&env.api.submit("", "noop", json!({})).await);
    assert_eq!(state_of(&env.api.done(&name).await), "SUCCEEDED");
    drop(env); // (before the private node goes, so the namespace is removed from it)
}

/// The real api binary: half the TLS settings, or a file that is no key, is one line on stderr
/// and a non-zero exit, before it connects to anything; both good files serve https.
#[tokio::test]
async fn the_api_binary_checks_its_tls_files_at_start() {
    let pki = Pki::new();
    let junk = pki.dir.join("junk.pem");
    std::fs::write(&junk, "not a key\n").expect("junk");
    let api = |vars: &[(&str, &PathBuf)]| {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_lro-test-api"));
        cmd.env_remove("LRO_TLS_CERT_FILE")
            .env_remove("LRO_TLS_KEY_FILE")
            .env("LRO_HTTP_ADDR", "127.0.0.1:0")
            .env("LRO_GRPC_ADDR", "127.0.0.1:0")
            .env("LRO_ADMIN_ADDR", "127.0.0.1:0")
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .envs(vars.iter().map(|(k, v)| (k, v.as_os_str())))
            .stdin(Stdio::null())
            .kill_on_drop(true);
        cmd
    };
    let refuses = async |vars: &[(&str, &PathBuf)], says: &str| {
        let out = tokio::time::timeout(DEADLINE, api(vars).output())
            .await
            .expect("exits at once")
            .expect("runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.starts_with("lro-api: "), "{stderr}");
        assert!(stderr.contains(says), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    };
    refuses(
        &[("LRO_TLS_CERT_FILE", &pki.cert)],
        "LRO_TLS_CERT_FILE is set but LRO_TLS_KEY_FILE is not",
    )
    .await;
    refuses(
        &[("LRO_TLS_KEY_FILE", &pki.key)],
        "LRO_TLS_KEY_FILE is set but LRO_TLS_CERT_FILE is not",
    )
    .await;
    refuses(
        &[
            ("LRO_TLS_CERT_FILE", &pki.cert),
            ("LRO_TLS_KEY_FILE", &junk),
        ],
        "junk.pem holds no PEM key",
    )
    .await;
    let missing = pki.dir.join("missing.pem");
    refuses(
        &[
            ("LRO_TLS_CERT_FILE", &missing),
            ("LRO_TLS_KEY_FILE", &pki.key),
        ],
        "cannot read TLS certificate file",
    )
    .await;

    // Both files: it listens, and says https.
    let namespace = format!("t{}", uuid::Uuid::now_v7().simple());
    let mut child = api(&[
        ("LRO_TLS_CERT_FILE", &pki.cert),
        ("LRO_TLS_KEY_FILE", &pki.key),
    ])
    .env("LRO_NAMESPACE", &namespace)
    .stdout(Stdio::piped())
    .stderr(Stdio::null())
    .spawn()
    .expect("api starts");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
    let listening = tokio::time::timeout(DEADLINE, async {
        while let Some(line) = lines.next_line().await.expect("read") {
            if line.contains("listening on") {
                return line;
            }
        }
        panic!("the api exited without listening");
    })
    .await
    .expect("listening line");
    let _ = child.kill().await;
    let _ = lro_tests::remove_namespace(&Connections::local(&namespace)).await;
    assert!(
        listening.contains("listening on https://127.0.0.1:")
            && listening.contains("(REST) and https://127.0.0.1:"),
        "{listening}"
    );
}
