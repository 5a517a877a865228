//! The operations service: one function per method of `google.longrunning.Operations` (get,
//! list, delete, cancel, wait) and of `lro.v1.Jobs` (submit, batch cancel, list kinds),
//! independent of transport: the REST routes (`http.rs`) and the gRPC services (`grpc.rs`) both
//! call these, so validation, codes and reasons live here, never in a transport.
//!
//! Every method takes the caller's [`Principal`] (from [`Service::caller`], which authenticates
//! and rate-limits) and authorizes it before it reads anything. Submits, cancels, batch cancels
//! and deletes are written to the audit log (target [`AUDIT_TARGET`]) with their outcome. A submit
//! and a cancel each run in a span (`submit`, `cancel`) that continues the caller's trace when
//! spans are exported ([`lro_common::otel`]); what goes on to the worker is then that span's
//! position in the trace.

use std::time::Duration;

use lro_common::broker::Broker;
use lro_common::cancel;
use lro_common::kinds::{self, BatchCancelInput, KindInfo};
use lro_common::name::{OperationName, Parent};
use lro_common::operation::{CancelEffect, Operation, Refused};
use lro_common::otel;
use lro_common::status::Code;
use lro_common::store::{Store, StoreError};
use lro_common::time::now_millis;
use lro_common::trace::TraceContext;
use tracing::Instrument as _;

use crate::auth::{Auth, Credentials, Method, Principal};
use crate::error::ApiError;
use crate::limit::Limiter;
use crate::list;
use crate::metrics::{ApiMetrics, CancelOutcome};
use crate::schema::{Kind, KindCache};
use crate::waiters::Waiters;

/// The most operations one list call reads from the index while filtering, before it returns a
/// short page with a token to go on from (AIP-158 allows short pages).
const LIST_SCAN_LIMIT: usize = 10_000;
/// The tracing target of the audit log: one line per submit, cancel, batch cancel and delete.
pub const AUDIT_TARGET: &str = "lro::audit";

mod submit;

pub use submit::{BatchSubmit, Job, Submit, in_request};

/// State shared by every request. Cloned per request (by axum and tonic), so one shared
/// allocation: a clone is a reference count, not copies of the store's and broker's handles.
#[derive(Clone)]
pub struct Service(std::sync::Arc<Shared>);

impl Service {
    pub(crate) fn new(shared: Shared) -> Self {
        Self(std::sync::Arc::new(shared))
    }
}

impl std::ops::Deref for Service {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

pub struct Shared {
    pub(crate) store: Store,
    pub(crate) publisher: Broker,
    pub(crate) waiters: Waiters,
    pub(crate) kinds: KindCache,
    pub(crate) max_wait: Duration,
    /// How long done operations are kept.
    pub(crate) retention_ms: u64,
    pub(crate) auth: Auth,
    pub(crate) limiter: Limiter,
    pub(crate) metrics: ApiMetrics,
}

/// A batch cancel request, already shaped but not yet validated.
#[derive(Debug, Clone)]
pub struct BatchCancel {
    pub parent: Parent,
    pub filter: String,
    pub request_id: Option<String>,
}

impl Service {
    /// Who sent `creds` (authenticated, and within its rate limit). `method` and `target` (the
    /// name or collection the request is for) are for the audit log, which records refused
    /// submits, cancels and deletes too.
    pub fn caller(
        &self,
        creds: Credentials<'_>,
        method: Method,
        target: &str,
    ) -> Result<Principal, ApiError> {
        let who = self.auth.authenticate(creds);
        let who = who.and_then(|p| self.limiter.check(&p).map(|()| p));
        if let Err(e) = &who
            && matches!(
                method,
                Method::Submit
                    | Method::BatchSubmit
                    | Method::Cancel
                    | Method::BatchCancel
                    | Method::Delete
            )
        {
            audit(None, method, target, Err(e));
            if method == Method::Cancel && e.code == Code::Unauthenticated {
                self.metrics.cancel(CancelOutcome::Denied);
            }
        }
        who
    }

    /// Starts a batch cancel of the operations of `req.parent` matching `req.filter`: an
    /// operation of kind `batch-cancel` under the same parent, run by a worker. The filter is
    /// checked here (the list's parser) so a bad one creates nothing; the caller's name goes into
    /// the batch's input, for the worker to record as each cancel's `cancelRequestedBy`.
    pub async fn batch_cancel(
        &self,
        who: &Principal,
        req: BatchCancel,
    ) -> Result<Operation, ApiError> {
        let collection = crate::route::collection(&req.parent);
        let result = self.batch_cancel_as(who, req).await;
        let target = result
            .as_ref()
            .map_or(collection.as_str(), |op| op.name.as_str());
        audit(
            Some(who),
            Method::BatchCancel,
            target,
            result.as_ref().map(|_| ()),
        );
        result
    }

    async fn batch_cancel_as(
        &self,
        who: &Principal,
        req: BatchCancel,
    ) -> Result<Operation, ApiError> {
        who.authorize(Method::BatchCancel, Some(&req.parent))?;
        if req.filter.trim().is_empty() {
            return Err(ApiError::invalid(
                "MISSING_FILTER",
                "filter is required: a batch cancel names the operations it cancels",
            ));
        }
        list::parse_filter(&req.filter)?;
        let input = BatchCancelInput {
            filter: req.filter,
            principal: who.name().map(str::to_owned),
        };
        let input = serde_json::to_value(input).map_err(|e| ApiError::internal(&e))?;
        let op = self.new_operation(
            req.parent,
            &kinds::batch_cancel(),
            input,
            req.request_id,
            None,
        )?;
        self.create(op, None).await
    }

    /// Every kind the api accepts (built-in and registered), sorted by name.
    pub async fn kinds(&self, who: &Principal) -> Result<Vec<KindInfo>, ApiError> {
        who.authorize(Method::ListKinds, None)?;
        Ok(self.kinds.all(&self.store).await?)
    }

    async fn kind(&self, name: &str) -> Result<std::sync::Arc<Kind>, ApiError> {
        if name.is_empty() {
            return Err(ApiError::invalid("MISSING_KIND", "kind is required"));
        }
        self.kinds.get(&self.store, name).await?.ok_or_else(|| {
            ApiError::invalid(
                "UNKNOWN_KIND",
                format!(
                    "unknown job kind {name:?}; known kinds: {}",
                    self.kinds.names().join(", ")
                ),
            )
            .with("kind", name)
        })
    }

    pub async fn get(&self, who: &Principal, name: &OperationName) -> Result<Operation, ApiError> {
        who.authorize(Method::Get, Some(name.parent()))?;
        self.read(name).await
    }

    async fn read(&self, name: &OperationName) -> Result<Operation, ApiError> {
        self.store
            .get(name)
            .await
            .map_err(|e| not_found_as(e, name))
    }

    /// One page of operations under `parent`, and the token of the next page if there is one.
    pub async fn list(
        &self,
        who: &Principal,
        parent: &Parent,
        filter_text: &str,
        page_size: usize,
        page_token: Option<&str>,
    ) -> Result<(Vec<Operation>, Option<String>), ApiError> {
        who.authorize(Method::List, Some(parent))?;
        let filter = list::parse_filter(filter_text)?;
        let mut after = match page_token {
            Some(t) if !t.is_empty() => Some(list::read_page_token(t, parent, filter_text)?),
            _ => None,
        };
        let mut page = Vec::new();
        let mut scanned = 0;
        loop {
            let batch = (page_size + 1 - page.len()).clamp(50, 1000);
            let ids = self
                .store
                .index_page(parent, after.as_deref(), batch)
                .await?;
            for op in self.store.get_many(parent, &ids).await? {
                if !filter.matches(&op) {
                    continue;
                }
                if page.len() == page_size {
                    let last: &Operation = &page[page.len() - 1];
                    let token = list::page_token(last.name.id(), parent, filter_text);
                    return Ok((page, Some(token)));
                }
                page.push(op);
            }
            scanned += ids.len();
            match ids.last() {
                Some(last) if ids.len() == batch => {
                    if scanned >= LIST_SCAN_LIMIT {
                        return Ok((page, Some(list::page_token(last, parent, filter_text))));
                    }
                    after = Some(last.clone());
                }
                _ => return Ok((page, None)),
            }
        }
    }

    pub async fn delete(&self, who: &Principal, name: &OperationName) -> Result<(), ApiError> {
        let result = async {
            who.authorize(Method::Delete, Some(name.parent()))?;
            if self.store.delete(name).await? {
                Ok(())
            } else {
                Err(ApiError::not_found(name.as_str()))
            }
        };
        let result = result.await;
        audit(
            Some(who),
            Method::Delete,
            name.as_str(),
            result.as_ref().map(|_| ()),
        );
        result
    }

    /// Records the cancel in Redis first, then tells the worker running it. A lost message delays
    /// the cancel (the worker re-checks Redis) but never loses it, so a failed publish still
    /// answers OK. The cancel message carries the caller's `trace` (continued by this request's
    /// span when spans are exported), for the worker's log.
    pub async fn cancel(
        &self,
        who: &Principal,
        name: &OperationName,
        trace: Option<TraceContext>,
    ) -> Result<(), ApiError> {
        let span = tracing::info_span!("cancel", operation = %name);
        let trace = otel::continue_trace(&span, trace.as_ref()).or(trace);
        let result = self
            .cancel_as(who, name, trace.as_ref())
            .instrument(span)
            .await;
        let outcome = match &result {
            Ok(CancelEffect::Requested { .. }) => Some(CancelOutcome::Cancelling),
            Ok(CancelEffect::CancelledWhileQueued) => Some(CancelOutcome::Cancelled),
            Ok(CancelEffect::AlreadyDone) => Some(CancelOutcome::AlreadyDone),
            Err(e) => match e.code {
                Code::Unimplemented => Some(CancelOutcome::NotCancellable),
                Code::NotFound => Some(CancelOutcome::NotFound),
                Code::PermissionDenied | Code::Unauthenticated => Some(CancelOutcome::Denied),
                // Redis unreachable and the like: not an outcome of the cancel itself.
                _ => None,
            },
        };
        if let Some(outcome) = outcome {
            self.metrics.cancel(outcome);
        }
        let result = result.map(|_| ());
        audit(
            Some(who),
            Method::Cancel,
            name.as_str(),
            result.as_ref().map(|_| ()),
        );
        result
    }

    async fn cancel_as(
        &self,
        who: &Principal,
        name: &OperationName,
        trace: Option<&TraceContext>,
    ) -> Result<CancelEffect, ApiError> {
        who.authorize(Method::Cancel, Some(name.parent()))?;
        let (store, broker) = (&self.store, &self.publisher);
        let effect = cancel::request(store, broker, name, now_millis(), who.name(), trace)
            .await
            .map_err(|e| match e {
                StoreError::Refused(Refused::NotCancellable(kind)) => ApiError::new(
                    Code::Unimplemented,
                    "NOT_CANCELLABLE",
                    format!("operations of kind {kind:?} cannot be cancelled"),
                )
                .with("kind", kind),
                e => not_found_as(e, name),
            })?;
        Ok(effect)
    }

    /// Answers as soon as the operation is done, or with its current state when `timeout`
    /// (capped by the server's maximum) runs out.
    pub async fn wait(
        &self,
        who: &Principal,
        name: &OperationName,
        timeout: Option<Duration>,
    ) -> Result<Operation, ApiError> {
        who.authorize(Method::Wait, Some(name.parent()))?;
        let timeout = timeout.map_or(self.max_wait, |t| t.min(self.max_wait));
        let deadline = tokio::time::Instant::now() + timeout;
        let notify = self.waiters.watch(name.as_str());
        loop {
            // Armed before the read, so a change between the read and the await still wakes us.
            let notified = notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let op = self.read(name).await?;
            if op.is_done() {
                return Ok(op);
            }
            tokio::select! {
                () = notified => {}
                () = tokio::time::sleep_until(deadline) => return self.read(name).await,
            }
        }
    }
}

fn not_found_as(e: StoreError, name: &OperationName) -> ApiError {
    match e {
        StoreError::NotFound => ApiError::not_found(name.as_str()),
        e => e.into(),
    }
}

/// One audit line: who called which method on what, and how it ended (`OK`, or the error's
/// canonical code and reason). `who` is `None` when the caller could not be authenticated.
fn audit(who: Option<&Principal>, method: Method, name: &str, result: Result<(), &ApiError>) {
    let principal = who.map_or("unauthenticated", Principal::label);
    let time = lro_common::time::timestamp_json(now_millis());
    match result {
        Ok(()) => tracing::info!(
            target: AUDIT_TARGET,
            time,
            principal,
            method = method.rpc(),
            name,
            outcome = "OK",
            "audit"
        ),
        Err(e) => tracing::info!(
            target: AUDIT_TARGET,
            time,
            principal,
            method = method.rpc(),
            name,
            outcome = e.code.name(),
            reason = e.reason,
            "audit"
        ),
    }
}
