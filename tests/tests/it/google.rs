//! Google's own Python client libraries (google-api-core's operations clients, the generated
//! gRPC stubs), unmodified, against a real api and worker over both transports:
//! `tests/google/run.sh` makes its virtualenv from PyPI on first use and runs
//! `tests/google/conformance.py`, which exits non-zero if any check fails.

use crate::harness::Env;

#[tokio::test]
async fn google_python_clients_work_unmodified_over_rest_and_grpc() {
    let mut env = Env::start().await;
    env.worker(lro_worker::Kinds::builtin(), 16).await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/google/run.sh");
    let out = tokio::process::Command::new("bash")
        .arg(script)
        .args(["--http", &format!("http://{}", env.sys.addr)])
        .args(["--grpc", &env.sys.grpc_addr.to_string()])
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .expect("run.sh runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "conformance failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    // Every call and its result (shown with `--nocapture`).
    println!("{stdout}");
    let last = stdout.lines().last().unwrap_or_default();
    assert!(last.ends_with("all passed"), "{stdout}");
    // Both transports were driven.
    for transport in ["rest", "grpc"] {
        assert!(
            stdout.lines().any(|l| l.starts_with(transport)),
            "no {transport} call in:\n{stdout}"
        );
    }
}

/// The same clients authenticating as they do against Google: REST through
/// `google.oauth2.credentials.Credentials(token=…)` over https, gRPC over TLS with
/// `secure_authorized_channel` (the token as call credentials); refusals arrive as the clients'
/// own exceptions with lro's reasons (`tests/google/with_credentials.py`).
#[tokio::test]
async fn google_python_clients_authenticate_over_https_and_grpc_tls() {
    let pki = crate::tls::Pki::new();
    let creds = crate::auth::Creds::new();
    let files = pki.files();
    let mut env = creds.env(|c| c.tls = Some(files)).await;
    env.api = crate::harness::Api::new(pki.https_client(), format!("https://{}", env.sys.addr));
    let token = |sub: &str, scope: &str, exp: i64| {
        let mut c = crate::auth::claims(sub, scope);
        c["exp"] = serde_json::json!(exp);
        crate::auth::hs256(&c)
    };
    let now = crate::auth::now();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/google/run.sh");
    let out = tokio::process::Command::new("bash")
        .arg(script)
        .args(["--script", "with_credentials.py"])
        .args([
            "--https",
            &format!("https://localhost:{}", env.sys.addr.port()),
        ])
        .args(["--grpc", &format!("localhost:{}", env.sys.grpc_addr.port())])
        .arg("--ca")
        .arg(&pki.ca)
        .args(["--admin-token", &token("admin", "lro.admin", now + 600)])
        .args([
            "--read-token",
            &token("reader", "lro.operations.read", now + 600),
        ])
        .args(["--expired-token", &token("old", "lro.admin", now - 3600)])
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .expect("run.sh runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "with_credentials.py failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    println!("{stdout}");
    let last = stdout.lines().last().unwrap_or_default();
    assert!(last.ends_with("all passed"), "{stdout}");
}
