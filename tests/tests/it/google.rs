//! Google's own Python client libraries (google-api-core's operations clients, the generated
//! gRPC stubs), unmodified, against a real api and worker over both transports:
//! `tests/google/run.sh` makes its virtualenv from PyPI on first use and runs
//! `tests/google/conformance.py`, which exits non-zero if any check fails.

use crate::harness::Env;

#[tokio::test]
async fn google_python_clients_work_unmodified_over_rest_and_grpc() {
    let mut env = Env::start().await;
    env.worker(lro_worker::Kinds::builtin(), 16).await;
    let http = format!("http://{}", env.sys.addr);
    let grpc = env.sys.grpc_addr.to_string();
    // Every call and its result (printed, shown with `--nocapture`).
    let stdout =
        crate::harness::run_script("google/run.sh", ["--http", &http, "--grpc", &grpc]).await;
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
    let https = format!("https://localhost:{}", env.sys.addr.port());
    let grpc = format!("localhost:{}", env.sys.grpc_addr.port());
    let ca = pki.ca.display().to_string();
    let admin = token("admin", "lro.admin", now + 600);
    let reader = token("reader", "lro.operations.read", now + 600);
    let expired = token("old", "lro.admin", now - 3600);
    let stdout = crate::harness::run_script(
        "google/run.sh",
        [
            "--script",
            "with_credentials.py",
            "--https",
            &https,
            "--grpc",
            &grpc,
            "--ca",
            &ca,
            "--admin-token",
            &admin,
            "--read-token",
            &reader,
            "--expired-token",
            &expired,
        ],
    )
    .await;
    let last = stdout.lines().last().unwrap_or_default();
    assert!(last.ends_with("all passed"), "{stdout}");
}
