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
