//! OTLP trace export, as an operator turns it on: the real api and worker command lines with
//! `OTEL_EXPORTER_OTLP_ENDPOINT` pointing at a tiny OTLP/HTTP receiver in this test. A submit and
//! its cancel (REST or gRPC), each with a `traceparent` of one trace, arrive as that trace's spans
//! from both services, the job span a child of the api's submit span; a collector that is not
//! there costs the worker nothing, and the last spans are sent on SIGTERM.

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use bytes::Bytes;
use lro_api::pb::google::longrunning::CancelOperationRequest;
use lro_api::pb::lro::v1::SubmitJobRequest;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use prost::Message as _;
use serde_json::{Value, json};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

use crate::audit::{api_listening, api_process, line_where};
use crate::faults::signal;
use crate::grpc::Grpc;
use crate::harness::{DEADLINE, Env, name_of};

const TRACE: &str = "5bf92f3577b34da6a3ce929d0e0e4737";
const SUBMIT_PARENT: &str = "00f067aa0ba902b7";
const CANCEL_PARENT: &str = "b7ad6b7169203331";

/// One span as the receiver got it, ids in hex.
#[derive(Debug, Clone)]
struct Got {
    service: String,
    name: String,
    trace_id: String,
    span_id: String,
    parent_span_id: String,
}

/// An OTLP/HTTP receiver (`POST /v1/traces`, protobuf) on a free loopback port.
struct Collector {
    endpoint: String,
    arrived: UnboundedReceiver<Got>,
    seen: Vec<Got>,
}

impl Collector {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
        let (tx, arrived) = unbounded_channel();
        let app = axum::Router::new()
            .route("/v1/traces", axum::routing::post(traces))
            .with_state(tx);
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self {
            endpoint,
            arrived,
            seen: Vec::new(),
        }
    }

    /// Waits, within [`DEADLINE`], until the spans received so far satisfy `pred`.
    async fn until(&mut self, what: &str, pred: impl Fn(&[Got]) -> bool) {
        let (seen, arrived) = (&mut self.seen, &mut self.arrived);
        let waited = tokio::time::timeout(DEADLINE, async {
            while !pred(seen) {
                seen.push(arrived.recv().await.expect("receiver running"));
            }
        })
        .await;
        assert!(
            waited.is_ok(),
            "{what} within the deadline: {:#?}",
            self.seen
        );
    }
}

/// The span of `service` named `name` in [`TRACE`], among `seen`.
fn traced<'a>(seen: &'a [Got], service: &str, name: &str) -> Option<&'a Got> {
    seen.iter()
        .find(|s| s.service == service && s.name == name && s.trace_id == TRACE)
}

async fn traces(
    State(tx): State<UnboundedSender<Got>>,
    body: Bytes,
) -> impl axum::response::IntoResponse {
    let req = ExportTraceServiceRequest::decode(body).expect("an OTLP trace request");
    for resource in req.resource_spans {
        let service = resource
            .resource
            .iter()
            .flat_map(|r| &r.attributes)
            .find(|kv| kv.key == "service.name")
            .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
                AnyValue::StringValue(s) => Some(s.clone()),
                _ => None,
            })
            .unwrap_or_default();
        for span in resource.scope_spans.into_iter().flat_map(|s| s.spans) {
            let _ = tx.send(Got {
                service: service.clone(),
                name: span.name,
                trace_id: hex::encode(span.trace_id),
                span_id: hex::encode(span.span_id),
                parent_span_id: hex::encode(span.parent_span_id),
            });
        }
    }
    (
        [(CONTENT_TYPE, "application/x-protobuf")],
        ExportTraceServiceResponse::default().encode_to_vec(),
    )
}

/// Whether `line` was written in the job span of `name`.
fn of_job(line: &Value, name: &str) -> bool {
    line["span"]["name"] == "job" && line["span"]["operation"] == name
}

/// How the test calls the api.
#[derive(Clone, Copy)]
enum Transport {
    Rest,
    Grpc,
}

#[tokio::test]
async fn a_rest_submit_its_cancel_and_the_job_are_one_exported_trace() {
    one_trace(Transport::Rest).await;
}

#[tokio::test]
async fn a_grpc_submit_its_cancel_and_the_job_are_one_exported_trace() {
    one_trace(Transport::Grpc).await;
}

/// A `sleep` job submitted and cancelled over `transport`, each call with a `traceparent` of
/// [`TRACE`]: the api's `submit` and `cancel` spans are the callers' children, the worker's `job`
/// span the submit's, and the job's log lines carry the exported ids.
async fn one_trace(transport: Transport) {
    let env = Env::start().await;
    let mut collector = Collector::start().await;
    let endpoint = collector.endpoint.clone();
    let (_api, mut api_lines) = api_process(
        &env,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.clone()),
            ("OTEL_BSP_SCHEDULE_DELAY", "100".into()),
        ],
    );
    let (api, grpc) = api_listening(&mut api_lines).await;
    let grpc = Grpc::at(&grpc).await;
    let (_worker, mut lines) = env.worker_process_logged(
        "otlp",
        2,
        &[
            ("LRO_LOG_FORMAT", "json"),
            ("RUST_LOG", "info,lro_worker=debug"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ],
    );

    let (submit_parent, cancel_parent) = (
        format!("00-{TRACE}-{SUBMIT_PARENT}-01"),
        format!("00-{TRACE}-{CANCEL_PARENT}-01"),
    );
    let name = match transport {
        Transport::Rest => {
            let input = json!({ "duration": "60s", "steps": 600 });
            let submitter = api.with_header("traceparent", &submit_parent);
            name_of(&submitter.submit("projects/o", "sleep", input).await)
        }
        Transport::Grpc => {
            let text = |s: &str| prost_types::Value {
                kind: Some(prost_types::value::Kind::StringValue(s.into())),
            };
            let req = SubmitJobRequest {
                parent: "projects/o".into(),
                kind: "sleep".into(),
                input: Some(prost_types::Struct {
                    fields: [("duration".to_owned(), text("60s"))].into(),
                }),
                ..Default::default()
            };
            let mut jobs = grpc.jobs.clone();
            let op = jobs.submit_job(with_traceparent(req, &submit_parent)).await;
            op.expect("submitted").into_inner().name
        }
    };
    api.running(&name).await;
    let started = line_where(&mut lines, |l| {
        of_job(l, &name) && l["message"] == "started"
    })
    .await;
    assert_eq!(started["span"]["trace_id"], TRACE, "{started}");
    let logged_span_id = started["span"]["span_id"].as_str().expect("span_id");

    match transport {
        Transport::Rest => {
            let canceller = api.with_header("traceparent", &cancel_parent);
            assert_eq!(canceller.cancel(&name).await.ok(), json!({}));
        }
        Transport::Grpc => {
            let req = CancelOperationRequest { name: name.clone() };
            let mut ops = grpc.ops.clone();
            let req = with_traceparent(req, &cancel_parent);
            ops.cancel_operation(req).await.expect("cancel");
        }
    }
    let op = api.done(&name).await;
    assert_eq!(op["metadata"]["state"], "CANCELLED", "{op}");

    collector
        .until("the submit, cancel and job spans", |seen| {
            [
                ("lro-api", "submit"),
                ("lro-api", "cancel"),
                ("lro-worker", "job"),
            ]
            .iter()
            .all(|(service, name)| traced(seen, service, name).is_some())
        })
        .await;
    let seen = &collector.seen;
    let submit = traced(seen, "lro-api", "submit").expect("submit span");
    assert_eq!(submit.parent_span_id, SUBMIT_PARENT, "{submit:?}");
    let cancel = traced(seen, "lro-api", "cancel").expect("cancel span");
    assert_eq!(cancel.parent_span_id, CANCEL_PARENT, "{cancel:?}");
    let job = traced(seen, "lro-worker", "job").expect("job span");
    assert_eq!(
        job.parent_span_id, submit.span_id,
        "the job continues the submit: {job:?}"
    );
    assert_eq!(
        job.span_id, logged_span_id,
        "the job logs its exported span's id"
    );
}

/// `message` as a gRPC request with a `traceparent` in its metadata.
fn with_traceparent<T>(message: T, traceparent: &str) -> tonic::Request<T> {
    let mut req = tonic::Request::new(message);
    let value = traceparent.parse().expect("metadata value");
    req.metadata_mut().insert("traceparent", value);
    req
}

/// A collector that is not there: the worker runs its job as ever, and says so at most once.
#[tokio::test]
async fn a_worker_exporting_to_a_closed_port_still_runs_its_jobs() {
    let env = Env::start().await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port");
    let endpoint = format!("http://{closed}");
    let (_worker, mut lines) = env.worker_process_logged(
        "otlp-away",
        1,
        &[
            ("LRO_LOG_FORMAT", "json"),
            ("RUST_LOG", "warn"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ],
    );
    let submitter = env
        .api
        .with_header("traceparent", &format!("00-{TRACE}-{SUBMIT_PARENT}-01"));
    for _ in 0..2 {
        let input = json!({ "duration": "500ms", "steps": 5 });
        let name = name_of(&submitter.submit("projects/o", "sleep", input).await);
        let op = env.api.done(&name).await;
        assert_eq!(op["metadata"]["state"], "SUCCEEDED", "{op}");
    }
    let mut warnings = 0;
    while let Ok(line) = lines.try_recv() {
        let l: Value = serde_json::from_str(&line).expect("json");
        warnings += usize::from(l["message"] == "otlp export failed; spans dropped");
    }
    assert!(warnings <= 1, "{warnings} warnings of failed exports");
}

/// Spans still queued when SIGTERM comes are sent on the way out: with a batch delay longer than
/// the test, the finished job's span arrives only because the worker flushes as it exits.
#[tokio::test]
async fn a_worker_sends_its_last_spans_when_it_exits() {
    let env = Env::start().await;
    let mut collector = Collector::start().await;
    let mut worker = env.worker_process(
        "otlp-exit",
        1,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &collector.endpoint),
            ("OTEL_BSP_SCHEDULE_DELAY", "600000"),
        ],
    );
    let submitter = env
        .api
        .with_header("traceparent", &format!("00-{TRACE}-{SUBMIT_PARENT}-01"));
    let input = json!({ "duration": "100ms", "steps": 1 });
    let name = name_of(&submitter.submit("projects/o", "sleep", input).await);
    assert_eq!(env.api.done(&name).await["metadata"]["state"], "SUCCEEDED");
    assert!(
        collector.arrived.try_recv().is_err(),
        "nothing sent before the exit"
    );

    signal(&worker, "TERM");
    let exit = tokio::time::timeout(DEADLINE, worker.wait()).await;
    assert!(
        exit.expect("exits within the deadline")
            .expect("status")
            .success()
    );
    collector
        .until("the job span, sent on exit", |seen| {
            traced(seen, "lro-worker", "job").is_some()
        })
        .await;
}
