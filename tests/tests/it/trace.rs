//! W3C trace context: a `traceparent` on a submit (REST header or gRPC metadata) reaches the
//! worker, whose JSON log lines for that job carry its trace id; a cancel's `traceparent` is on
//! the line that logs the job's token firing. Against the real worker command line.

use lro_api::pb::google::longrunning::CancelOperationRequest;
use lro_api::pb::lro::v1::SubmitJobRequest;
use serde_json::{Value, json};
use tokio::sync::mpsc::UnboundedReceiver;

use crate::audit::line_where;
use crate::grpc::Grpc;
use crate::harness::{Env, name_of};

const SUBMIT_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CANCEL_TRACE: &str = "0af7651916cd43dd8448eb211c80319c";

fn traceparent(trace_id: &str) -> String {
    format!("00-{trace_id}-00f067aa0ba902b7-01")
}

/// The worker command line writing JSON, with the job's `started` line (debug) included.
fn logged_worker(env: &Env, id: &str) -> (tokio::process::Child, UnboundedReceiver<String>) {
    env.worker_process_logged(
        id,
        2,
        &[
            ("LRO_LOG_FORMAT", "json"),
            ("RUST_LOG", "info,lro_worker=debug"),
        ],
    )
}

fn long_sleep() -> Value {
    json!({ "duration": "60s", "steps": 600 })
}

/// Whether `line` was written in the job span of `name`.
fn of_job(line: &Value, name: &str) -> bool {
    line["span"]["name"] == "job" && line["span"]["operation"] == name
}

/// The token-firing line of a cancel of `name`.
fn token_fired(line: &Value, name: &str) -> bool {
    line["message"] == "cancel message: token fired" && line["operation"] == name
}

/// Reads lines up to the token firing for `name`, and asserts every line of that job's span on
/// the way carried `trace_id` (and a span id of the worker's own, different from the parent's).
async fn job_lines_until_cancelled(lines: &mut UnboundedReceiver<String>, name: &str) -> Value {
    let fired = line_where(lines, |l| {
        if of_job(l, name) {
            let span = &l["span"];
            assert_eq!(
                span["trace_id"], SUBMIT_TRACE,
                "a job line without its trace: {l}"
            );
            assert_eq!(span["parent_id"], "00f067aa0ba902b7", "{l}");
            let span_id = span["span_id"].as_str().expect("span_id");
            assert_eq!(span_id.len(), 16, "{l}");
            assert_ne!(span_id, "00f067aa0ba902b7", "{l}");
        }
        token_fired(l, name)
    })
    .await;
    // The job's lines after the cancel (its end) still carry the submit's trace.
    let after = line_where(lines, |l| of_job(l, name) && l["message"] == "finished").await;
    assert_eq!(after["span"]["trace_id"], SUBMIT_TRACE, "{after}");
    assert_eq!(after["outcome"], "Cancelled", "{after}");
    fired
}

#[tokio::test]
async fn a_rest_traceparent_is_on_the_workers_job_lines_and_a_cancels_on_the_token_firing() {
    let env = Env::start().await;
    let (_worker, mut lines) = logged_worker(&env, "traced");
    let api = env
        .api
        .with_header("traceparent", &traceparent(SUBMIT_TRACE));
    let name = name_of(&api.submit("projects/t", "sleep", long_sleep()).await);
    env.api.running(&name).await;
    let started = line_where(&mut lines, |l| {
        of_job(l, &name) && l["message"] == "started"
    })
    .await;
    assert_eq!(started["span"]["trace_id"], SUBMIT_TRACE, "{started}");
    assert_eq!(started["span"]["attempt"], 1, "{started}");

    let canceller = env
        .api
        .with_header("traceparent", &traceparent(CANCEL_TRACE));
    canceller.cancel(&name).await.ok();
    let fired = job_lines_until_cancelled(&mut lines, &name).await;
    assert_eq!(fired["trace_id"], CANCEL_TRACE, "{fired}");
    assert_eq!(fired["parent_id"], "00f067aa0ba902b7", "{fired}");
    assert_eq!(fired["attempt"], 1, "{fired}");
    let op = env.api.done(&name).await;
    assert_eq!(op["metadata"]["state"], "CANCELLED", "{op}");
}

#[tokio::test]
async fn a_grpc_traceparent_is_on_the_workers_job_lines_and_a_cancels_on_the_token_firing() {
    let env = Env::start().await;
    let (_worker, mut lines) = logged_worker(&env, "traced-grpc");
    let grpc = Grpc::connect(&env).await;
    let text = |s: &str| prost_types::Value {
        kind: Some(prost_types::value::Kind::StringValue(s.into())),
    };
    let input = prost_types::Struct {
        fields: [("duration".to_owned(), text("60s"))].into(),
    };
    let mut req = tonic::Request::new(SubmitJobRequest {
        parent: "projects/t".into(),
        kind: "sleep".into(),
        input: Some(input),
        ..Default::default()
    });
    req.metadata_mut().insert(
        "traceparent",
        traceparent(SUBMIT_TRACE).parse().expect("metadata"),
    );
    let op = grpc.jobs.clone().submit_job(req).await.expect("submitted");
    let name = op.into_inner().name;
    env.api.running(&name).await;

    let mut req = tonic::Request::new(CancelOperationRequest { name: name.clone() });
    req.metadata_mut().insert(
        "traceparent",
        traceparent(CANCEL_TRACE).parse().expect("metadata"),
    );
    grpc.ops
        .clone()
        .cancel_operation(req)
        .await
        .expect("cancel");
    let fired = job_lines_until_cancelled(&mut lines, &name).await;
    assert_eq!(fired["trace_id"], CANCEL_TRACE, "{fired}");
    env.api.done(&name).await;
}

/// Without a `traceparent` (or with one that does not parse) nothing is made up: the job's lines
/// carry no trace id and no span id, and the cancel is not logged as traced.
#[tokio::test]
async fn without_a_valid_traceparent_the_job_lines_carry_no_trace_id() {
    let env = Env::start().await;
    let (_worker, mut lines) = logged_worker(&env, "untraced");
    let bad = env.api.with_header(
        "traceparent",
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
    );
    let mut names = Vec::new();
    // One after the other, so that each job's `started` line is read before the next one starts.
    for api in [&env.api, &bad] {
        let name = name_of(&api.submit("projects/t", "sleep", long_sleep()).await);
        names.push(name.clone());
        let name = &name;
        env.api.running(name).await;
        let started =
            line_where(&mut lines, |l| of_job(l, name) && l["message"] == "started").await;
        let span = started["span"].as_object().expect("span");
        assert!(!span.contains_key("trace_id"), "{started}");
        assert!(!span.contains_key("span_id"), "{started}");
        env.api.cancel(name).await.ok();
        let op = env.api.done(name).await;
        assert_eq!(op["metadata"]["state"], "CANCELLED", "{op}");
    }
    while let Ok(line) = lines.try_recv() {
        let l: Value = serde_json::from_str(&line).expect("json");
        assert!(
            !token_fired(&l, &names[0]) && !token_fired(&l, &names[1]),
            "{l}"
        );
    }
}
