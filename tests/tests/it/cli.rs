//! The `lro` command as an operator meets it: the real binary (`lro-test-cli`, the same
//! `lro_cli::main`) run as a child process against the in-process api, every verb, every output
//! form and every exit status of the contract. Each run is bounded by [`DEADLINE`]; the child's
//! own exit (or a line it printed) is what the tests wait on, never a timer.

use std::process::Stdio;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use crate::auth::{Creds, claims, hs256};
use crate::harness::{DEADLINE, Env, name_of, state_of};

const LRO: &str = env!("CARGO_BIN_EXE_lro-test-cli");

/// What one run of `lro` left behind.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    /// The stdout lines, each parsed as JSON.
    #[track_caller]
    fn json_lines(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?} in {self:?}")))
            .collect()
    }

    fn lines(&self) -> Vec<&str> {
        self.stdout.lines().collect()
    }

    /// Asserts the one-line error of an api error (exit 5) with this status.
    #[track_caller]
    fn api_error(&self, status: &str) {
        assert_eq!(self.code, 5, "{self:?}");
        assert_eq!(self.stderr.lines().count(), 1, "{self:?}");
        let prefix = format!("lro: {status}: ");
        assert!(self.stderr.starts_with(&prefix), "{self:?}");
        assert!(self.stderr.len() > prefix.len() + 1, "no message: {self:?}");
    }
}

fn base(env: &Env) -> String {
    format!("http://{}", env.sys.addr)
}

/// `lro --api <env's api> ARGS`.
async fn lro(env: &Env, args: &[&str]) -> Run {
    lro_with(&base(env), args, &[]).await
}

/// `lro --api BASE ARGS` with these variables (and no `LRO_*` of the test's own environment).
async fn lro_with(base: &str, args: &[&str], vars: &[(&str, &str)]) -> Run {
    let out = tokio::time::timeout(
        DEADLINE,
        command(base, args, vars).stdout(Stdio::piped()).output(),
    )
    .await
    .unwrap_or_else(|_| panic!("lro {args:?} did not finish within {DEADLINE:?}"))
    .expect("lro runs");
    Run {
        code: out.status.code().expect("exited, not killed"),
        stdout: String::from_utf8(out.stdout).expect("utf-8 stdout"),
        stderr: String::from_utf8(out.stderr).expect("utf-8 stderr"),
    }
}

fn command(base: &str, args: &[&str], vars: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(LRO);
    cmd.arg("--api")
        .arg(base)
        .args(args)
        .env_remove("LRO_API")
        .env_remove("LRO_TOKEN")
        .envs(vars.iter().copied())
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// A queued operation (the env has no worker for it).
async fn queued(env: &Env, parent: &str) -> String {
    name_of(
        &env.api
            .submit(parent, "sleep", json!({"duration": "60s"}))
            .await,
    )
}

#[tokio::test]
async fn cli_get_prints_the_operation_in_each_output_form() {
    let env = Env::start().await;
    let name = queued(&env, "").await;
    let stored = env.api.get(&name).await.ok();

    let json = lro(&env, &["get", &name, "-o", "json"]).await;
    assert_eq!(json.code, 0, "{json:?}");
    assert_eq!(json.json_lines(), std::slice::from_ref(&stored), "{json:?}");
    // Options go before the verb too, and a name may carry its `/v1/`.
    let before = lro(&env, &["-o", "json", "get", &format!("/v1/{name}")]).await;
    assert_eq!(before.json_lines(), [stored], "{before:?}");

    let names = lro(&env, &["get", &name, "-o", "name"]).await;
    assert_eq!(
        (names.code, names.stdout.as_str()),
        (0, format!("{name}\n").as_str())
    );

    let table = lro(&env, &["get", &name]).await;
    assert_eq!(table.code, 0, "{table:?}");
    for wanted in [name.as_str(), "sleep", "QUEUED", "created"] {
        assert!(table.stdout.contains(wanted), "no {wanted} in {table:?}");
    }
}

#[tokio::test]
async fn cli_list_prints_a_page_or_all_of_them() {
    let env = Env::start().await;
    let parent = "projects/cli";
    let mut names = Vec::new();
    for _ in 0..5 {
        names.push(queued(&env, parent).await);
    }
    names.sort();

    let page = lro(&env, &["list", parent, "--page-size", "2", "-o", "name"]).await;
    assert_eq!((page.code, page.lines().len()), (0, 2), "{page:?}");

    let all = lro(
        &env,
        &["list", parent, "--page-size", "2", "--all", "-o", "name"],
    )
    .await;
    let mut listed: Vec<&str> = all.lines();
    listed.sort_unstable();
    assert_eq!(
        (all.code, listed),
        (0, names.iter().map(String::as_str).collect()),
        "{all:?}"
    );

    let json = lro(
        &env,
        &["list", parent, "--all", "--page-size", "2", "-o", "json"],
    )
    .await;
    let expected = env.api.list_all(&format!("{parent}/operations"), "").await;
    assert_eq!((json.code, json.json_lines()), (0, expected), "{json:?}");

    let table = lro(
        &env,
        &["list", parent, "--filter", "metadata.kind=\"sleep\""],
    )
    .await;
    assert_eq!(table.code, 0, "{table:?}");
    for wanted in ["NAME", "STATE", "AGE", "QUEUED", names[0].as_str()] {
        assert!(table.stdout.contains(wanted), "no {wanted} in {table:?}");
    }
    // The root's own list holds none of them.
    let root = lro(&env, &["list", "--all", "-o", "name"]).await;
    assert_eq!((root.code, root.stdout.as_str()), (0, ""), "{root:?}");
}

#[tokio::test]
async fn cli_submit_sends_input_from_a_file_parent_request_id_and_timeout() {
    let env = Env::start().await;
    let dir = std::env::temp_dir().join(format!("lro-cli-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("input.json");
    std::fs::write(&file, r#"{"duration": "30s", "steps": 3}"#).expect("input file");
    let at_file = format!("@{}", file.display());

    let run = lro(
        &env,
        &[
            "submit",
            "sleep",
            "--input",
            &at_file,
            "--parent",
            "projects/s",
            "--request-id",
            "r-1",
            "--timeout",
            "60s",
            "-o",
            "json",
        ],
    )
    .await;
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(run.code, 0, "{run:?}");
    let [op] = run.json_lines().try_into().expect("one line");
    let name = name_of(&op);
    assert!(name.starts_with("projects/s/operations/"), "{op}");
    let stored = env.api.get(&name).await.ok();
    assert_eq!(op, stored);
    let m = &stored["metadata"];
    assert_eq!(
        (&m["kind"], &m["requestId"], &m["timeout"]),
        (&json!("sleep"), &json!("r-1"), &json!("60s"))
    );

    let inline = lro(
        &env,
        &[
            "submit",
            "sleep",
            "--input",
            r#"{"duration": "1s"}"#,
            "-o",
            "name",
        ],
    )
    .await;
    assert_eq!(inline.code, 0, "{inline:?}");
    assert_eq!(
        state_of(&env.api.get(inline.stdout.trim()).await.ok()),
        "QUEUED"
    );

    // The server's own refusal is an api error; input that is not JSON is a usage error.
    lro(&env, &["submit", "sleep", "--input", r#"{"steps": 0}"#])
        .await
        .api_error("INVALID_ARGUMENT");
    let bad = lro(&env, &["submit", "sleep", "--input", "{"]).await;
    assert_eq!(bad.code, 2, "{bad:?}");
}

#[tokio::test]
async fn cli_submit_wait_exits_0_on_success_and_1_on_failure() {
    let mut env = Env::start().await;
    env.worker(lro_worker::Kinds::builtin(), 4).await;

    let ok = lro(&env, &["submit", "noop", "--wait", "-o", "json"]).await;
    assert_eq!(ok.code, 0, "{ok:?}");
    let [op] = ok.json_lines().try_into().expect("one line");
    assert_eq!(
        (&op["done"], state_of(&op)),
        (&json!(true), "SUCCEEDED"),
        "{op}"
    );
    assert_eq!(op, env.api.get(&name_of(&op)).await.ok());

    let input = r#"{"code": 13, "message": "boom"}"#;
    let failed = lro(
        &env,
        &["submit", "fail", "--input", input, "--wait", "-o", "json"],
    )
    .await;
    assert_eq!(failed.code, 1, "{failed:?}");
    let [op] = failed.json_lines().try_into().expect("one line");
    assert_eq!(
        (&op["error"]["code"], state_of(&op)),
        (&json!(13), "FAILED"),
        "{op}"
    );
}

#[tokio::test]
async fn cli_cancel_then_wait_exits_3() {
    let env = Env::start().await;
    let name = queued(&env, "").await;

    let run = lro(&env, &["cancel", &name, "-o", "name"]).await;
    assert_eq!(
        (run.code, run.stdout.as_str()),
        (0, format!("{name}\n").as_str()),
        "{run:?}"
    );
    assert_eq!(state_of(&env.api.get(&name).await.ok()), "CANCELLED");

    let wait = lro(&env, &["wait", &name, "-o", "json"]).await;
    assert_eq!(wait.code, 3, "{wait:?}");
    assert_eq!(wait.json_lines()[0]["error"]["code"], 1, "{wait:?}");

    // Several names: each is cancelled, one that is unknown is reported and makes it exit 5.
    let other = queued(&env, "").await;
    let run = lro(&env, &["cancel", &other, "operations/nope"]).await;
    run.api_error("NOT_FOUND");
    assert_eq!(
        run.stdout,
        format!("{other}: cancel requested\n"),
        "{run:?}"
    );
    assert_eq!(state_of(&env.api.get(&other).await.ok()), "CANCELLED");
}

#[tokio::test]
async fn cli_wait_runs_out_with_4_and_reports_each_change() {
    let mut env = Env::start().await;
    env.worker(lro_worker::Kinds::builtin(), 4).await;
    let op = env
        .api
        .submit("", "sleep", json!({"duration": "60s", "steps": 60}))
        .await;
    let name = name_of(&op);
    env.api.running(&name).await;

    let run = lro(&env, &["wait", &name, "--timeout", "1.5s", "-o", "json"]).await;
    assert_eq!(run.code, 4, "{run:?}");
    let [op] = run.json_lines().try_into().expect("one line");
    // Not done: proto3 JSON omits the default `done: false`.
    assert_eq!((op.get("done"), state_of(&op)), (None, "RUNNING"), "{op}");
    // Not a terminal: progress is plain lines on stderr, the first one naming the operation.
    let first = run.stderr.lines().next().expect("a progress line");
    assert!(first.starts_with(&format!("{name} RUNNING")), "{run:?}");
    env.api.cancel(&name).await.ok();
}

/// On a terminal, `wait` draws a bar from the operation's progress. `script` gives the command a
/// terminal; on a machine without it the test says so and passes.
#[tokio::test]
async fn cli_wait_draws_a_progress_bar_on_a_terminal() {
    if std::process::Command::new("script")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipped: no `script` here to give lro a terminal");
        return;
    }
    let (env, probe) = Env::with_worker(4).await;
    let name = name_of(&env.api.submit("", "gate", json!({})).await);
    // The probe reports 40 % "gate open" before it counts as started.
    probe.started(&name).await;
    let line = format!(
        "{LRO} --api {} wait {name} --timeout 1.5s -o name",
        base(&env)
    );
    let out = tokio::time::timeout(
        DEADLINE,
        Command::new("script")
            .args(["-qec", &line, "/dev/null"])
            .env("TERM", "xterm")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("lro under script finishes")
    .expect("script runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(4), "{text}");
    // A 30-wide bar at 40 %, and the message beside it (stdout itself holds only the name).
    assert!(text.contains("[============>"), "no bar in {text:?}");
    assert!(
        text.contains(" 40% RUNNING gate open"),
        "no progress in {text:?}"
    );
    probe.release(&name);
}

#[tokio::test]
async fn cli_api_errors_are_one_line_and_exit_5() {
    let env = Env::start().await;
    let run = lro(&env, &["get", "operations/nope"]).await;
    run.api_error("NOT_FOUND");
    assert!(run.stderr.contains("operations/nope"), "{run:?}");
    assert_eq!(run.stdout, "");
    lro(&env, &["submit", "no-such-kind"])
        .await
        .api_error("INVALID_ARGUMENT");
    lro(&env, &["delete", "operations/nope"])
        .await
        .api_error("NOT_FOUND");

    // Nothing listening: a port that was free a moment ago.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let run = lro_with(&url, &["get", "operations/x"], &[]).await;
    run.api_error("UNAVAILABLE");
    assert!(
        run.stderr
            .starts_with(&format!("lro: UNAVAILABLE: cannot reach {url}")),
        "{run:?}"
    );
}

#[tokio::test]
async fn cli_usage_errors_exit_2() {
    for args in [
        &[][..],
        &["frobnicate"],
        &["get"],
        &["-o", "yaml", "get", "operations/x"],
        &["cancel"],
        &["cancel", "--filter", "done=false"],
        &["cancel", "operations/x", "--filter", "done=false", "--yes"],
        &["wait", "operations/x", "--timeout", "soon"],
        &["completions", "powershell-ish"],
    ] {
        let run = lro_with("http://127.0.0.1:1", args, &[]).await;
        assert_eq!(run.code, 2, "{args:?}: {run:?}");
        assert!(!run.stderr.is_empty(), "{args:?}: {run:?}");
    }
}

#[tokio::test]
async fn cli_sends_the_token_as_a_bearer_and_reports_refusals() {
    let creds = Creds::new();
    let env = creds.env(|_| {}).await;
    let admin = hs256(&claims("operator", "lro.admin"));
    let reader = hs256(&claims("viewer", "lro.operations.read"));

    let run = lro(&env, &["submit", "sleep", "--token", &admin, "-o", "name"]).await;
    assert_eq!(run.code, 0, "{run:?}");
    let name = run.stdout.trim().to_owned();
    let get = lro_with(
        &base(&env),
        &["get", &name, "-o", "name"],
        &[("LRO_TOKEN", &reader)],
    )
    .await;
    assert_eq!((get.code, get.stdout.trim()), (0, name.as_str()), "{get:?}");

    lro(&env, &["get", &name])
        .await
        .api_error("UNAUTHENTICATED");
    lro(&env, &["--token", "not-a-jwt", "get", &name])
        .await
        .api_error("UNAUTHENTICATED");
    lro(&env, &["--token", &reader, "cancel", &name])
        .await
        .api_error("PERMISSION_DENIED");

    let cancel = lro(&env, &["--token", &admin, "cancel", &name]).await;
    assert_eq!(cancel.code, 0, "{cancel:?}");
    let op = env.api.bearer(&admin).get(&name).await.ok();
    assert_eq!(op["metadata"]["cancelRequestedBy"], "operator", "{op}");
}

#[tokio::test]
async fn cli_delete_removes_the_record() {
    let env = Env::start().await;
    let name = queued(&env, "").await;
    let run = lro(&env, &["delete", &name]).await;
    assert_eq!(
        (run.code, run.stdout.as_str()),
        (0, format!("{name}: deleted\n").as_str()),
        "{run:?}"
    );
    env.api.get(&name).await.error(404, "NOT_FOUND");

    let other = queued(&env, "").await;
    let json = lro(&env, &["delete", &other, "-o", "json"]).await;
    assert_eq!(
        (json.code, json.json_lines()),
        (0, vec![json!({})]),
        "{json:?}"
    );
}

#[tokio::test]
async fn cli_watch_shows_a_submitted_operation() {
    let env = Env::start().await;
    let name = queued(&env, "projects/w").await;
    let mut child = command(&base(&env), &["watch", "projects/w"], &[])
        .stdout(Stdio::piped())
        .spawn()
        .expect("lro watch starts");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut header = false;
    let seen = tokio::time::timeout(DEADLINE, async {
        while let Some(line) = lines.next_line().await.expect("read") {
            header |= line.contains("NAME") && line.contains("PROGRESS") && line.contains("AGE");
            if line.contains(&name) {
                return Some(line);
            }
        }
        None
    })
    .await
    .expect("a table within the deadline");
    // Ctrl-C ends it, with exit status 0.
    let pid = child.id().expect("pid").to_string();
    let sent = Command::new("kill").args(["-INT", &pid]).status().await;
    assert!(sent.expect("kill runs").success());
    let status = tokio::time::timeout(DEADLINE, child.wait())
        .await
        .expect("lro watch stops on Ctrl-C")
        .expect("wait");
    assert_eq!(status.code(), Some(0), "{status:?}");
    let row = seen.expect("the operation's row before the output ended");
    assert!(header, "no header before {row:?}");
    assert!(row.contains("QUEUED") && row.contains("sleep"), "{row:?}");
}

#[tokio::test]
async fn cli_completions_print_a_script() {
    let bash = lro_with("http://127.0.0.1:1", &["completions", "bash"], &[]).await;
    assert_eq!(bash.code, 0, "{bash:?}");
    assert!(
        bash.stdout.contains("_lro()") && bash.stdout.contains("complete -F"),
        "{bash:?}"
    );
    let zsh = lro_with("http://127.0.0.1:1", &["completions", "zsh"], &[]).await;
    assert!(zsh.stdout.starts_with("#compdef lro"), "{zsh:?}");
}

/// Batch cancel is being built on another branch: this runs only once the api answers the
/// route (a 404 `NO_SUCH_METHOD` means it is not there yet, and the test says so and passes).
#[tokio::test]
async fn cli_batch_cancel_waits_for_the_batch_and_prints_its_counts() {
    let mut env = Env::start().await;
    let probe = env
        .api
        .call(
            "POST",
            "/v1/projects/probe/operations:batchCancel",
            Some(json!({"filter": ""})),
        )
        .await;
    let reason = &probe.body["error"]["details"][0]["reason"];
    if probe.status == 404 && reason == "NO_SUCH_METHOD" {
        eprintln!("skipped: the api has no :batchCancel route yet");
        return;
    }
    env.worker(lro_worker::Kinds::builtin(), 4).await;
    let parent = "projects/bc";
    let sleeps = [queued(&env, parent).await, queued(&env, parent).await];
    let other = queued(&env, "projects/elsewhere").await;

    let run = lro(
        &env,
        &[
            "cancel",
            "--filter",
            "metadata.kind=\"sleep\"",
            "--parent",
            parent,
            "--yes",
        ],
    )
    .await;
    assert_eq!(run.code, 0, "{run:?}");
    let count = |key: &str| {
        run.lines()
            .into_iter()
            .find(|l| l.split_whitespace().any(|w| w == key))
            .unwrap_or_else(|| panic!("no {key} row in {run:?}"))
            .split_whitespace()
            .find_map(|w| w.parse::<u64>().ok())
    };
    assert_eq!(
        (count("matched"), count("cancelled")),
        (Some(2), Some(2)),
        "{run:?}"
    );
    for name in &sleeps {
        assert_eq!(state_of(&env.api.done(name).await), "CANCELLED");
    }
    assert!(env.api.get(&other).await.ok().get("done").is_none());
}
