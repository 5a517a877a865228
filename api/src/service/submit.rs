//! Submitting jobs: one ([`Service::submit`]) or up to [`MAX_BATCH`] at once
//! ([`Service::batch_submit`]), and the create-and-queue step a batch cancel shares.
//!
//! A job is admitted first — its kind, its input against the kind's schema, its request id and
//! timeout — so a refused one writes nothing. A batch is admitted whole before any write, so if
//! any of its jobs is refused none is accepted (AIP-233). An admitted operation is then written
//! with its publish guard and published ([`lro_common::publish`]). A batch's writes are sent
//! together (the multiplexed connection pipelines them), then its publishes (their confirms
//! awaited together); if any write or publish fails, the batch's new operations are taken back
//! and the batch answers the error, as a single submit does.

use std::collections::HashMap;
use std::time::Duration;

use futures_util::future::join_all;
use lro_common::kinds::{BATCH_CANCEL, KindInfo};
use lro_common::name::{OperationName, Parent};
use lro_common::operation::{NewOperation, Operation};
use lro_common::otel;
use lro_common::publish;
use lro_common::store::{Bucket, Created};
use lro_common::time::{Millis, now_millis};
use lro_common::trace::TraceContext;
use serde_json::Value;
use tracing::Instrument as _;
use tracing::field::Empty;

use super::{Service, audit};
use crate::auth::{Method, Principal};
use crate::error::{ApiError, Detail};

/// The most jobs one batch submit may carry.
pub const MAX_BATCH: usize = 1000;
/// Longest accepted request id.
const MAX_REQUEST_ID_LEN: usize = 128;

/// One job to submit, already shaped but not yet validated.
#[derive(Debug, Clone)]
pub struct Job {
    /// Where its operation is created.
    pub parent: Parent,
    pub kind: String,
    pub input: Option<Value>,
    pub request_id: Option<String>,
    /// The longest one attempt may run.
    pub timeout: Option<Duration>,
}

/// A job submission.
#[derive(Debug, Clone)]
pub struct Submit {
    pub job: Job,
    /// The caller's trace (W3C `traceparent`), carried on the job message to the worker.
    pub trace: Option<TraceContext>,
}

/// A batch submission: every job's `parent` must be the batch's.
#[derive(Debug, Clone)]
pub struct BatchSubmit {
    pub parent: Parent,
    pub jobs: Vec<Job>,
    /// The caller's trace, carried on every job message of the batch.
    pub trace: Option<TraceContext>,
}

impl Service {
    pub async fn submit(&self, who: &Principal, req: Submit) -> Result<Operation, ApiError> {
        let collection = crate::route::collection(&req.job.parent);
        let span = tracing::info_span!("submit", kind = %req.job.kind, operation = Empty);
        let trace = otel::continue_trace(&span, req.trace.as_ref()).or(req.trace);
        let job = req.job;
        let result = async {
            who.authorize(Method::Submit, Some(&job.parent))?;
            let op = self.admit(job).await?;
            self.create(op, trace.as_ref()).await
        }
        .instrument(span.clone())
        .await;
        if let Ok(op) = &result {
            span.record("operation", op.name.as_str());
        }
        let target = result
            .as_ref()
            .map_or(collection.as_str(), |op| op.name.as_str());
        audit(
            Some(who),
            Method::Submit,
            target,
            result.as_ref().map(|_| ()),
        );
        result
    }

    /// Submits every job of `req` or none: the operations in the order of the jobs (a job whose
    /// request id was used before, in an earlier request or earlier in this batch, answers the
    /// operation it made first).
    pub async fn batch_submit(
        &self,
        who: &Principal,
        mut req: BatchSubmit,
    ) -> Result<Vec<Operation>, ApiError> {
        let collection = crate::route::collection(&req.parent);
        let span = tracing::info_span!("batch_submit", jobs = req.jobs.len());
        if let Some(own) = otel::continue_trace(&span, req.trace.as_ref()) {
            req.trace = Some(own);
        }
        let result = self.batch_submit_as(who, req).instrument(span).await;
        match &result {
            Ok(ops) => {
                for op in ops {
                    audit(Some(who), Method::BatchSubmit, op.name.as_str(), Ok(()));
                }
            }
            Err(e) => audit(Some(who), Method::BatchSubmit, &collection, Err(e)),
        }
        result
    }

    async fn batch_submit_as(
        &self,
        who: &Principal,
        req: BatchSubmit,
    ) -> Result<Vec<Operation>, ApiError> {
        who.authorize(Method::BatchSubmit, Some(&req.parent))?;
        if req.jobs.is_empty() || req.jobs.len() > MAX_BATCH {
            return Err(ApiError::invalid(
                "INVALID_BATCH_SIZE",
                format!(
                    "requests must hold 1-{MAX_BATCH} jobs, not {}",
                    req.jobs.len()
                ),
            )
            .with("maxRequests", MAX_BATCH.to_string()));
        }
        // A request id given twice in the batch is one submission: the later job answers the
        // earlier one's operation, as a repeated submit does. `slots`: each job's place in `ops`.
        let mut first_with: HashMap<String, usize> = HashMap::new();
        let mut slots = Vec::with_capacity(req.jobs.len());
        let mut ops = Vec::with_capacity(req.jobs.len());
        for (i, job) in req.jobs.into_iter().enumerate() {
            if job.parent != req.parent {
                let e = ApiError::invalid(
                    "PARENT_MISMATCH",
                    format!(
                        "parent {:?} is not the batch's parent {:?}; leave it empty",
                        job.parent.to_string(),
                        req.parent.to_string()
                    ),
                );
                return Err(in_request(e, i, "parent"));
            }
            let op = self.admit(job).await.map_err(|e| in_request(e, i, ""))?;
            let earlier = op.request_id.as_ref().and_then(|r| first_with.get(r));
            let slot = match earlier {
                Some(&slot) => slot,
                None => {
                    if let Some(r) = &op.request_id {
                        first_with.insert(r.clone(), ops.len());
                    }
                    ops.push(op);
                    ops.len() - 1
                }
            };
            slots.push(slot);
        }
        let trace = req.trace.as_ref();
        let created = join_all(ops.iter().map(|op| async move {
            let (guarded_at, guards) = publish::guards_for_new(op);
            (self.store.create(op, &guards).await, guarded_at)
        }))
        .await;
        // Every name this batch may have written: each is its own (minted here), so taking them
        // back touches nothing an earlier request made.
        let mut mine = Vec::new();
        let mut fresh = Vec::new();
        let mut failed = None;
        let mut answer = Vec::with_capacity(ops.len());
        for (op, (created, guarded_at)) in ops.into_iter().zip(created) {
            match created {
                Ok(Created::New) => {
                    mine.push(op.name.clone());
                    fresh.push((op.name.clone(), guarded_at));
                    answer.push(Answer::New(Box::new(op)));
                }
                Ok(Created::Existing(first)) => answer.push(Answer::Existing(first)),
                Err(e) => {
                    mine.push(op.name.clone());
                    failed.get_or_insert(ApiError::from(e));
                    answer.push(Answer::New(Box::new(op)));
                }
            }
        }
        if let Some(e) = failed {
            self.take_back(&mine).await;
            return Err(e);
        }
        let published = join_all(fresh.iter().map(|(name, guarded_at)| {
            publish::publish(&self.store, &self.publisher, name, *guarded_at, trace)
        }))
        .await;
        if let Some(Err(e)) = published.into_iter().find(Result::is_err) {
            self.take_back(&mine).await;
            return Err(ApiError::unavailable("rabbitmq", e));
        }
        let ops = join_all(answer.into_iter().map(|a| async move {
            match a {
                Answer::New(op) => {
                    self.metrics.submitted(&op.kind);
                    Ok(*op)
                }
                Answer::Existing(first) => self.read(&first).await,
            }
        }))
        .await
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?;
        Ok(slots.into_iter().map(|slot| ops[slot].clone()).collect())
    }

    /// Checks a job and makes its operation, writing nothing.
    async fn admit(&self, job: Job) -> Result<Operation, ApiError> {
        if job.kind == BATCH_CANCEL {
            // Its input names the principal it cancels for: only the api may write that.
            return Err(ApiError::invalid(
                "KIND_NOT_SUBMITTABLE",
                "operations of kind batch-cancel are started by POST …/operations:batchCancel",
            )
            .with("kind", BATCH_CANCEL));
        }
        let kind = self.kind(&job.kind).await?;
        let input = match job.input {
            None | Some(Value::Null) => Value::Object(Default::default()),
            Some(v @ Value::Object(_)) => v,
            Some(_) => {
                return Err(ApiError::invalid(
                    "INVALID_INPUT",
                    "input must be a JSON object",
                ));
            }
        };
        let input = kind.admit(input)?;
        self.new_operation(job.parent, &kind.info, input, job.request_id, job.timeout)
    }

    /// The operation of `kind` to create for an admitted `input`, once its request id and timeout
    /// are checked.
    pub(super) fn new_operation(
        &self,
        parent: Parent,
        kind: &KindInfo,
        input: Value,
        request_id: Option<String>,
        timeout: Option<Duration>,
    ) -> Result<Operation, ApiError> {
        if let Some(r) = &request_id {
            let ok = !r.is_empty()
                && r.len() <= MAX_REQUEST_ID_LEN
                && r.bytes().all(|b| b.is_ascii_graphic());
            if !ok {
                return Err(ApiError::invalid(
                    "INVALID_REQUEST_ID",
                    format!("requestId must be 1-{MAX_REQUEST_ID_LEN} printable ASCII characters"),
                ));
            }
        }
        let timeout_ms = match timeout {
            None => None,
            Some(d) => {
                let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
                if ms == 0 {
                    return Err(ApiError::invalid(
                        "INVALID_TIMEOUT",
                        "timeout must be at least 1ms",
                    ));
                }
                Some(ms)
            }
        };
        // An operation with a request id is minted in that request's bucket, so the request-id
        // entry shares its slot and the create stays one script.
        let id = match &request_id {
            Some(r) => Bucket::of_request(&parent, r).new_id(),
            None => uuid::Uuid::now_v7().to_string(),
        };
        let name = parent
            .operation(&id)
            .map_err(|e| ApiError::invalid("INVALID_NAME", e.to_string()))?;
        Ok(Operation::new(
            NewOperation {
                name,
                kind: kind.name.clone(),
                input,
                cancellable: kind.cancellable,
                request_id,
                timeout_ms,
                retention_ms: Some(self.retention_ms),
            },
            now_millis(),
        ))
    }

    /// Writes and queues a new operation; a repeated request id answers the operation it made
    /// first instead.
    pub(super) async fn create(
        &self,
        op: Operation,
        trace: Option<&TraceContext>,
    ) -> Result<Operation, ApiError> {
        // Guarded as it is written: if this process dies before the broker confirms the job
        // message, a reaper publishes it.
        let (guarded_at, guards) = publish::guards_for_new(&op);
        match self.store.create(&op, &guards).await? {
            Created::Existing(existing) => self.read(&existing).await,
            Created::New => {
                let published = self.publish_new(&op.name, guarded_at, trace).await;
                if let Err(e) = published {
                    self.take_back(std::slice::from_ref(&op.name)).await;
                    return Err(e);
                }
                self.metrics.submitted(&op.kind);
                Ok(op)
            }
        }
    }

    async fn publish_new(
        &self,
        name: &OperationName,
        guarded_at: Millis,
        trace: Option<&TraceContext>,
    ) -> Result<(), ApiError> {
        publish::publish(&self.store, &self.publisher, name, guarded_at, trace)
            .await
            .map_err(|e| ApiError::unavailable("rabbitmq", e))
    }

    /// Deletes operations just written whose submit failed, so nothing accepted is left
    /// stranded; one that cannot be deleted is published by a reaper (its guard is armed).
    async fn take_back(&self, names: &[OperationName]) {
        join_all(names.iter().map(|name| async move {
            if let Err(e) = self.store.delete(name).await {
                tracing::error!(operation = %name, error = %e, "could not undo a failed submit; the reaper will publish it");
            }
        }))
        .await;
    }
}

/// What one job of a batch answers once written.
enum Answer {
    New(Box<Operation>),
    /// Its request id made this operation before.
    Existing(OperationName),
}

/// The error of the batch's `i`th job: its message and its field paths say which
/// (`requests[3].input.x`); `field` names the job's field at fault when the error has no paths.
pub fn in_request(mut e: ApiError, i: usize, field: &str) -> ApiError {
    let at = format!("requests[{i}]");
    e.message = format!("{at}: {}", e.message);
    e = e.with("requestIndex", i.to_string());
    let mut paths = false;
    for d in &mut e.details {
        if let Detail::BadRequest(violations) = d {
            for v in violations {
                v.field = format!("{at}.{}", v.field);
                paths = true;
            }
        }
    }
    if !paths && !field.is_empty() {
        let violation = crate::error::FieldViolation {
            field: format!("{at}.{field}"),
            description: e.message.clone(),
        };
        e = e.with_detail(Detail::BadRequest(vec![violation]));
    }
    e
}
