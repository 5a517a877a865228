//! What an operator sees of authentication from the real `lro-api` binary: the audit log (one
//! JSON line per submit, cancel and delete, refusals included) and the refusal to listen beyond
//! loopback with authentication off. Also the helpers that run the binary and read its log,
//! shared with the batch, trace and OTLP tests.

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::auth::{Creds, READ, hs256, now, refused};
use crate::harness::{Api, DEADLINE, Env, name_of};

/// Starts the real `lro-api` command line with these variables, logging JSON; its stdout lines
/// come back on the channel.
pub fn api_process(
    env: &Env,
    vars: &[(&str, String)],
) -> (
    tokio::process::Child,
    tokio::sync::mpsc::UnboundedReceiver<String>,
) {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_lro-test-api"))
        .env("LRO_NAMESPACE", &env.sys.namespace)
        // The services the in-process api uses (a cluster's nodes, in a cluster pass).
        .env("LRO_REDIS_URL", env.sys.connections().redis_url)
        .env("LRO_AMQP_URL", env.sys.connections().amqp_url)
        .env("LRO_HTTP_ADDR", "127.0.0.1:0")
        .env("LRO_GRPC_ADDR", "127.0.0.1:0")
        .env("LRO_ADMIN_ADDR", "127.0.0.1:0")
        .env("RUST_LOG", "warn,lro::audit=info,lro_api=info")
        .env("LRO_LOG_FORMAT", "json")
        .envs(vars.iter().map(|(k, v)| (k, v)))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("lro-api starts");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut lines = BufReader::new(stdout).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, rx)
}

/// The addresses the `listening on` line of the api process whose log is `lines` names: a client
/// of its REST address, and its gRPC base URL.
pub async fn api_listening(
    lines: &mut tokio::sync::mpsc::UnboundedReceiver<String>,
) -> (Api, String) {
    let listening = line_where(lines, |l| {
        l["message"]
            .as_str()
            .is_some_and(|m| m.contains("listening on http://"))
    })
    .await;
    let mut urls = listening["message"]
        .as_str()
        .expect("message")
        .split_whitespace()
        .filter(|w| w.starts_with("http://"));
    let (rest, grpc) = (urls.next(), urls.next());
    let (rest, grpc) = rest.zip(grpc).expect("REST and gRPC addresses");
    (Api::at(rest), grpc.to_owned())
}

/// The next log line (a JSON object) from `lines` that satisfies `pred`, within [`DEADLINE`].
pub async fn line_where(
    lines: &mut tokio::sync::mpsc::UnboundedReceiver<String>,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    tokio::time::timeout(DEADLINE, async {
        loop {
            let line = lines.recv().await.expect("process still writing");
            let line: Value = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("log line is not JSON: {e}: {line}"));
            if pred(&line) {
                return line;
            }
        }
    })
    .await
    .expect("the line within the deadline")
}

#[tokio::test]
async fn submits_cancels_and_deletes_are_audited_with_their_outcome() {
    let creds = Creds::new();
    let env = Env::start().await;
    let dir = &creds.dir;
    let (_api, mut lines) = api_process(
        &env,
        &[(
            "LRO_AUTH_HS256_SECRET_FILE",
            dir.join("secret").display().to_string(),
        )],
    );
    let (api, _) = api_listening(&mut lines).await;
    let token =
        |sub: &str, scope: &str| hs256(&json!({"sub": sub, "scope": scope, "exp": now() + 600}));
    let alice = api.bearer(&token("alice", "lro.admin"));
    let op = alice
        .submit("projects/a", "sleep", json!({"duration": "60s"}))
        .await;
    let name = name_of(&op);
    alice.cancel(&name).await.ok();
    let reader = api.bearer(&token("rita", READ));
    refused(
        &reader.delete(&name).await,
        403,
        "ACCESS_TOKEN_SCOPE_INSUFFICIENT",
    );
    refused(&api.delete(&name).await, 401, "CREDENTIALS_MISSING");
    alice.delete(&name).await.ok();

    let audit = |method: &'static str, principal: &'static str, outcome: &'static str| {
        let name = name.clone();
        move |l: &Value| {
            l["target"] == "lro::audit"
                && l["method"] == method
                && l["principal"] == principal
                && l["name"] == name.as_str()
                && l["outcome"] == outcome
        }
    };
    let submit = line_where(&mut lines, audit("lro.v1.Jobs.SubmitJob", "alice", "OK")).await;
    let time = submit["time"].as_str().expect("time");
    assert!(time.ends_with('Z') && time.len() >= 20, "{submit}");
    line_where(
        &mut lines,
        audit(
            "google.longrunning.Operations.CancelOperation",
            "alice",
            "OK",
        ),
    )
    .await;
    line_where(
        &mut lines,
        audit(
            "google.longrunning.Operations.DeleteOperation",
            "rita",
            "PERMISSION_DENIED",
        ),
    )
    .await;
    line_where(
        &mut lines,
        audit(
            "google.longrunning.Operations.DeleteOperation",
            "unauthenticated",
            "UNAUTHENTICATED",
        ),
    )
    .await;
    line_where(
        &mut lines,
        audit(
            "google.longrunning.Operations.DeleteOperation",
            "alice",
            "OK",
        ),
    )
    .await;
}

#[tokio::test]
async fn without_credentials_it_refuses_to_listen_beyond_loopback() {
    let env = Env::start().await;
    for (var, addr) in [("LRO_HTTP_ADDR", "0.0.0.0:0"), ("LRO_GRPC_ADDR", "[::]:0")] {
        let out = tokio::time::timeout(
            DEADLINE,
            tokio::process::Command::new(env!("CARGO_BIN_EXE_lro-test-api"))
                .env("LRO_NAMESPACE", &env.sys.namespace)
                .env("LRO_HTTP_ADDR", "127.0.0.1:0")
                .env("LRO_GRPC_ADDR", "127.0.0.1:0")
                .env("LRO_ADMIN_ADDR", "127.0.0.1:0")
                .env(var, addr)
                .env("RUST_LOG", "warn")
                .stdin(std::process::Stdio::null())
                .output(),
        )
        .await
        .expect("exits at once")
        .expect("runs");
        assert!(!out.status.success(), "{var}={addr} started");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
        assert!(stderr.contains("LRO_AUTH_DISABLED"), "{stderr}");
    }
}
