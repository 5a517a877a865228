//! The gRPC transport: the upstream `google.longrunning.Operations` service and `lro.v1.Jobs`,
//! calling the same [`Service`] functions as the REST routes. Errors carry a `google.rpc.Status`
//! with one `google.rpc.ErrorInfo` in the `grpc-status-details-bin` trailer, with the same codes,
//! reasons and messages as the REST envelope. Messages are built in [`convert`], operations from
//! the same [`OperationView`] REST serializes.

mod convert;

use std::collections::HashMap;
use std::time::Duration;

use lro_common::name::{OperationName, Parent};
use lro_common::operation::Operation;
use lro_common::status::Code;
use lro_common::trace::TraceContext;
use prost::Message;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response};

use crate::auth::{Credentials, Method, Principal};
use crate::error::{ApiError, ERROR_DOMAIN};
use crate::http::MAX_BODY_BYTES;
use crate::list;
use crate::metrics::{RequestMethod, Transport};
use crate::pb::google::longrunning::{self as lr, operations_server};
use crate::pb::google::rpc;
use crate::pb::lro::v1::{self as lro, jobs_server};
use crate::route::{collection, parse_parent};
use crate::service::{BatchCancel, BatchSubmit, Job, Service, Submit, in_request};
use crate::tls::ServerTls;
use crate::view::{ListView, OperationView};
use convert::{any, detail, kind, struct_json};

const ERROR_INFO_TYPE: &str = "type.googleapis.com/google.rpc.ErrorInfo";

/// Serves both gRPC services on `listener` (over TLS with `tls`) until `shutdown` fires.
pub(crate) async fn serve(
    svc: Service,
    listener: TcpListener,
    tls: Option<&ServerTls>,
    shutdown: CancellationToken,
) -> Result<(), tonic::transport::Error> {
    let ops = operations_server::OperationsServer::new(Grpc(svc.clone()))
        .max_decoding_message_size(MAX_BODY_BYTES);
    let jobs = jobs_server::JobsServer::new(Grpc(svc)).max_decoding_message_size(MAX_BODY_BYTES);
    let server = tonic::transport::Server::builder()
        .add_service(ops)
        .add_service(jobs);
    let stop = shutdown.clone().cancelled_owned();
    match tls {
        None => {
            let incoming = tonic::transport::server::TcpIncoming::from(listener);
            server.serve_with_incoming_shutdown(incoming, stop).await
        }
        Some(tls) => {
            let incoming = crate::tls::grpc_incoming(listener, tls, shutdown);
            server.serve_with_incoming_shutdown(incoming, stop).await
        }
    }
}

struct Grpc(Service);

impl Grpc {
    /// The caller of `req`, from its `authorization` / `x-goog-api-key` metadata.
    fn caller<T>(
        &self,
        req: &Request<T>,
        method: Method,
        target: &str,
    ) -> Result<Principal, ApiError> {
        let md = req.metadata();
        let creds = Credentials {
            authorization: md.get("authorization").map(|v| v.as_bytes()),
            api_key: md.get("x-goog-api-key").and_then(|v| v.to_str().ok()),
        };
        self.0.caller(creds, method, target)
    }
}

/// The caller's W3C trace context from `traceparent` / `tracestate` metadata; absent or invalid
/// is `None`.
fn trace<T>(req: &Request<T>) -> Option<TraceContext> {
    let md = req.metadata();
    let text = |name: &str| md.get(name).and_then(|v| v.to_str().ok());
    TraceContext::from_headers(text("traceparent"), text("tracestate"))
}

type Answer<T> = Result<Response<T>, tonic::Status>;

#[tonic::async_trait]
impl operations_server::Operations for Grpc {
    async fn list_operations(
        &self,
        req: Request<lr::ListOperationsRequest>,
    ) -> Answer<lr::ListOperationsResponse> {
        let run = async {
            let parent = list_parent(&req.get_ref().name)?;
            let who = self.caller(&req, Method::List, &collection(&parent))?;
            let req = req.get_ref();
            let size = list::page_size_of(i64::from(req.page_size))?;
            let token = Some(req.page_token.as_str()).filter(|t| !t.is_empty());
            let (ops, next) = self.0.list(&who, &parent, &req.filter, size, token).await?;
            Ok(convert::list(&ListView::of(&ops, next.as_deref())))
        };
        self.answer(RequestMethod::List, run).await
    }

    async fn get_operation(&self, req: Request<lr::GetOperationRequest>) -> Answer<lr::Operation> {
        let run = async {
            let name = operation_name(&req.get_ref().name)?;
            let who = self.caller(&req, Method::Get, name.as_str())?;
            Ok(operation(&self.0.get(&who, &name).await?))
        };
        self.answer(RequestMethod::Get, run).await
    }

    async fn delete_operation(&self, req: Request<lr::DeleteOperationRequest>) -> Answer<()> {
        let run = async {
            let name = operation_name(&req.get_ref().name)?;
            let who = self.caller(&req, Method::Delete, name.as_str())?;
            self.0.delete(&who, &name).await
        };
        self.answer(RequestMethod::Delete, run).await
    }

    async fn cancel_operation(&self, req: Request<lr::CancelOperationRequest>) -> Answer<()> {
        let run = async {
            let name = operation_name(&req.get_ref().name)?;
            let who = self.caller(&req, Method::Cancel, name.as_str())?;
            self.0.cancel(&who, &name, trace(&req)).await
        };
        self.answer(RequestMethod::Cancel, run).await
    }

    /// Answers when the operation is done, or with its current state at the shorter of the
    /// request's timeout and the call's deadline (a little before the deadline, so the answer
    /// still reaches the caller).
    async fn wait_operation(
        &self,
        req: Request<lr::WaitOperationRequest>,
    ) -> Answer<lr::Operation> {
        let deadline = call_deadline(&req).map(|d| d.saturating_sub((d / 10).min(DEADLINE_MARGIN)));
        let run = async {
            let name = operation_name(&req.get_ref().name)?;
            let who = self.caller(&req, Method::Wait, name.as_str())?;
            let requested = req.get_ref().timeout.map(duration).transpose()?;
            let timeout = match (requested, deadline) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            Ok(operation(&self.0.wait(&who, &name, timeout).await?))
        };
        self.answer(RequestMethod::Wait, run).await
    }
}

#[tonic::async_trait]
impl jobs_server::Jobs for Grpc {
    async fn submit_job(&self, req: Request<lro::SubmitJobRequest>) -> Answer<lr::Operation> {
        let run = async {
            let parent = parse_parent(&req.get_ref().parent)?;
            let who = self.caller(&req, Method::Submit, &collection(&parent))?;
            let trace = trace(&req);
            let job = job(req.into_inner(), parent)?;
            Ok(operation(
                &self.0.submit(&who, Submit { job, trace }).await?,
            ))
        };
        self.answer(RequestMethod::Submit, run).await
    }

    async fn batch_submit_jobs(
        &self,
        req: Request<lro::BatchSubmitJobsRequest>,
    ) -> Answer<lro::BatchSubmitJobsResponse> {
        let run = async {
            let parent = parse_parent(&req.get_ref().parent)?;
            let who = self.caller(&req, Method::BatchSubmit, &collection(&parent))?;
            let trace = trace(&req);
            let jobs = req
                .into_inner()
                .requests
                .into_iter()
                .enumerate()
                .map(|(i, r)| {
                    // A job without a parent is under the batch's; the service refuses another.
                    let own = if r.parent.is_empty() {
                        parent.clone()
                    } else {
                        parse_parent(&r.parent).map_err(|e| in_request(e, i, "parent"))?
                    };
                    job(r, own).map_err(|e| in_request(e, i, ""))
                })
                .collect::<Result<_, ApiError>>()?;
            let batch = BatchSubmit {
                parent,
                jobs,
                trace,
            };
            let ops = self.0.batch_submit(&who, batch).await?;
            Ok(lro::BatchSubmitJobsResponse {
                operations: ops.iter().map(operation).collect(),
            })
        };
        self.answer(RequestMethod::BatchSubmit, run).await
    }

    async fn batch_cancel_operations(
        &self,
        req: Request<lro::BatchCancelOperationsRequest>,
    ) -> Answer<lr::Operation> {
        let run = async {
            let parent = parse_parent(&req.get_ref().parent)?;
            let who = self.caller(&req, Method::BatchCancel, &collection(&parent))?;
            let req = req.into_inner();
            let batch = BatchCancel {
                parent,
                filter: req.filter,
                request_id: Some(req.request_id).filter(|r| !r.is_empty()),
            };
            Ok(operation(&self.0.batch_cancel(&who, batch).await?))
        };
        self.answer(RequestMethod::BatchCancel, run).await
    }

    async fn list_kinds(
        &self,
        req: Request<lro::ListKindsRequest>,
    ) -> Answer<lro::ListKindsResponse> {
        let run = async {
            let who = self.caller(&req, Method::ListKinds, "kinds")?;
            let kinds = self.0.kinds(&who).await?;
            Ok(lro::ListKindsResponse {
                kinds: kinds.iter().map(kind).collect(),
            })
        };
        self.answer(RequestMethod::Kinds, run).await
    }
}

/// How much earlier than a call's deadline a wait answers, at most.
const DEADLINE_MARGIN: Duration = Duration::from_millis(100);

impl Grpc {
    /// Runs a call and answers it: the one place gRPC requests are timed and counted.
    async fn answer<T>(
        &self,
        method: RequestMethod,
        run: impl Future<Output = Result<T, ApiError>>,
    ) -> Answer<T> {
        let started = std::time::Instant::now();
        let result = run.await;
        let code = result.as_ref().map_or_else(|e| e.code, |_| Code::Ok);
        self.0
            .metrics
            .request(Transport::Grpc, method, code, started.elapsed());
        result.map(Response::new).map_err(status)
    }
}

/// `name` of a list request: the collection (`operations`, `projects/p/operations`) or its
/// parent (`projects/p`); empty is the top level.
fn list_parent(name: &str) -> Result<Parent, ApiError> {
    let parent = match name.strip_suffix("operations") {
        Some(p) if p.is_empty() || p.ends_with('/') => p.trim_end_matches('/'),
        _ => name,
    };
    parse_parent(parent)
}

fn operation_name(name: &str) -> Result<OperationName, ApiError> {
    OperationName::parse(name).map_err(|e| ApiError::invalid("INVALID_NAME", e.to_string()))
}

/// A request's `google.protobuf.Duration`; negative or out-of-range ones are refused.
/// The job a `SubmitJobRequest` asks for, under `parent`.
fn job(req: lro::SubmitJobRequest, parent: Parent) -> Result<Job, ApiError> {
    Ok(Job {
        parent,
        kind: req.kind,
        input: req.input.as_ref().map(struct_json).transpose()?,
        request_id: Some(req.request_id).filter(|r| !r.is_empty()),
        timeout: req.timeout.map(duration).transpose()?,
    })
}

fn duration(d: prost_types::Duration) -> Result<Duration, ApiError> {
    Duration::try_from(d)
        .map_err(|e| ApiError::invalid("INVALID_TIMEOUT", format!("timeout {d}: {e}")))
}

/// The call's deadline from its `grpc-timeout` header (gRPC over HTTP/2: up to 8 digits and a
/// unit H, M, S, m, u or n).
fn call_deadline<T>(req: &Request<T>) -> Option<Duration> {
    let v = req.metadata().get("grpc-timeout")?.to_str().ok()?;
    let (n, unit) = v.split_at(v.len().checked_sub(1)?);
    let n: u64 = n.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.saturating_mul(3600)),
        "M" => Duration::from_secs(n.saturating_mul(60)),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// The error as gRPC sends it: code and message, and the `google.rpc.Status` with its
/// `ErrorInfo` and further details in the details trailer.
fn status(e: ApiError) -> tonic::Status {
    let info = rpc::ErrorInfo {
        reason: e.reason.to_owned(),
        domain: ERROR_DOMAIN.to_owned(),
        metadata: e.metadata.into_iter().collect::<HashMap<_, _>>(),
    };
    let details = rpc::Status {
        code: e.code.as_i32(),
        message: e.message.clone(),
        details: std::iter::once(any(ERROR_INFO_TYPE, &info))
            .chain(e.details.iter().map(detail))
            .collect(),
    };
    tonic::Status::with_details(
        tonic::Code::from_i32(e.code.as_i32()),
        e.message,
        details.encode_to_vec().into(),
    )
}

/// The operation as gRPC answers it: built from its [`OperationView`], as REST's JSON is.
fn operation(op: &Operation) -> lr::Operation {
    convert::operation(&OperationView::of(op))
}
