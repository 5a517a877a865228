//! The worker's event loop and the life of one delivery.
//!
//! The loop is one `select!` over a closed set of events: shutdown, a job delivery, a cancel
//! message. Each delivery becomes a task on a [`TaskTracker`]; the task waits for a free slot,
//! registers the job's token, starts the attempt in Redis under a lease, runs the job, settles it
//! in one place ([`settle`]), and only then acks the delivery.
//!
//! Ownership of a running job is the lease in Redis, not the delivery. The unacked delivery gives
//! exact flow control (prefetch = concurrency: a worker is sent a job only when it has a free
//! slot) and fast recovery when a worker's connection drops (the broker redelivers at once; the
//! next worker's `start` takes over once the lease has run out, else the reaper does). When the
//! broker takes a delivery back while its job still runs (RabbitMQ's `consumer_timeout` closing
//! the channel under a long job), the job goes on under its lease, and the redelivered copy is
//! skipped by whichever worker receives it (`start` refuses an operation held under a live lease).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use lapin::Acker;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicNackOptions};
use lro_common::name::OperationName;
use lro_common::operation::{Operation, Phase, Refused, Retried, Started, Terminal};
use lro_common::publish;
use lro_common::status::{Code, Status};
use lro_common::store::{Store, StoreError, Watch, WatchEffect};
use lro_common::time::{Millis, now_millis};
use lro_common::topology::{self, Broker};
use lro_common::trace;
use lro_common::wire::{self, CancelMessage, JobMessage};
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::WorkerError;
use crate::job::{JobContext, JobError, JobResult, Kinds};
use crate::metrics::{Finished, WorkerMetrics};
use crate::registry::{CancelReason, Held, Registry, Stop};
use crate::session::{Session, SessionConfig};

/// Longest a delivery waits for a free slot before going back to the queue. Deliveries only wait
/// when the broker has sent more than the worker's concurrency (after it took deliveries back
/// from a channel it closed while their jobs ran on).
const MAX_SLOT_WAIT: Duration = Duration::from_secs(300);
/// The longest backoff before a retry.
const MAX_RETRY_BACKOFF: Duration = Duration::from_secs(600);
/// First and longest pause between attempts to reconnect to the broker.
const RECONNECT_MIN: Duration = Duration::from_millis(200);
const RECONNECT_MAX: Duration = Duration::from_secs(5);
/// Pause before a delivery that met a Redis error goes back to the queue.
const RETRY_PAUSE: Duration = Duration::from_secs(1);

/// What every job task shares.
pub(crate) struct Shared {
    pub(crate) store: Arc<Store>,
    pub(crate) publisher: Broker,
    pub(crate) kinds: Kinds,
    pub(crate) registry: Registry,
    pub(crate) worker_id: String,
    /// One permit per job this worker may run at once.
    pub(crate) slots: Arc<Semaphore>,
    /// How long a start or renewal holds an operation.
    pub(crate) lease: Duration,
    /// How long a job may take to return once its token fired, before it is aborted.
    pub(crate) stop_grace: Duration,
    /// The backoff before the second attempt of a job that failed retryably; doubled each time.
    pub(crate) retry_backoff: Duration,
    /// Cancel messages this worker has received (for the benchmark's cost per cancel).
    pub(crate) cancels_received: Arc<std::sync::atomic::AtomicU64>,
    /// Wakes the lease renewals at once (after a reconnect, to re-read cancels).
    pub(crate) recheck: Notify,
    pub(crate) metrics: WorkerMetrics,
    /// Whether the loop has a session and takes jobs (for `/readyz`).
    pub(crate) consuming: Arc<AtomicBool>,
}

impl Shared {
    pub(crate) fn lease_from(&self, now: Millis) -> Millis {
        now + Millis::try_from(self.lease.as_millis()).unwrap_or(Millis::MAX / 2)
    }
}

/// Runs until shutdown, then drains: stops taking jobs (the broker gets them back), lets running
/// jobs finish for `shutdown_grace`, then fires their tokens (reason: shutdown) so that they hand
/// their operations back, and returns once every job has settled. Cancels are still received
/// while draining. When the session fails it is dropped and reopened (backing off while the
/// broker is unreachable); running jobs carry on, and once reconnected every lease is renewed at
/// once, which re-reads the cancels that may have been sent meanwhile.
pub(crate) async fn run(
    shared: Arc<Shared>,
    session: Session,
    session_config: SessionConfig,
    shutdown: CancellationToken,
    drain: CancellationToken,
    shutdown_grace: Duration,
) -> Result<(), WorkerError> {
    let tracker = TaskTracker::new();
    let mut session = Some(session);
    let grace_over = tokio::time::sleep(Duration::MAX);
    tokio::pin!(grace_over);
    let reconnect = tokio::time::sleep(Duration::MAX);
    tokio::pin!(reconnect);
    let mut backoff = RECONNECT_MIN;
    let mut draining = false;
    loop {
        shared
            .consuming
            .store(session.is_some() && !draining, Ordering::Relaxed);
        let event = {
            let connected = session.is_some();
            let (jobs, cancels) = match &mut session {
                Some(s) => (Some(&mut s.jobs), Some(&mut s.cancels)),
                None => (None, None),
            };
            tokio::select! {
                () = shutdown.cancelled(), if !draining => Event::Shutdown,
                () = &mut grace_over, if draining && !drain.is_cancelled() => Event::GraceOver,
                () = tracker.wait(), if draining => break,
                () = &mut reconnect, if !connected => Event::Reconnect,
                delivery = next_or_pending(jobs), if !draining => Event::Job(delivery),
                message = next_or_pending(cancels) => Event::Cancel(message),
            }
        };
        let failed = match event {
            Event::Shutdown => {
                draining = true;
                tracker.close();
                grace_over
                    .as_mut()
                    .reset(tokio::time::Instant::now() + shutdown_grace);
                tracing::info!(running = shared.registry.len(), "draining");
                None
            }
            Event::GraceOver => {
                drain.cancel();
                None
            }
            Event::Reconnect => {
                match Session::open(&session_config).await {
                    Ok(s) => {
                        tracing::info!("rabbitmq reconnected; re-checking running jobs");
                        session = Some(s);
                        backoff = RECONNECT_MIN;
                        shared.recheck.notify_one();
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, retry_in = ?backoff, "rabbitmq unreachable");
                        reconnect
                            .as_mut()
                            .reset(tokio::time::Instant::now() + backoff);
                        backoff = (backoff * 2).min(RECONNECT_MAX);
                    }
                }
                None
            }
            Event::Job(Some(Ok(delivery))) => {
                // Only the body and the acker travel on: the rest of the delivery (~0.4 KiB)
                // would be held for as long as the job runs.
                let Delivery {
                    data,
                    acker,
                    properties,
                    ..
                } = delivery;
                // The job's span, its fields recorded once known; instrumenting the whole task
                // here stores its future once (an inner `instrument` would need its own box).
                let span = tracing::info_span!(
                    "job",
                    operation = tracing::field::Empty,
                    attempt = tracing::field::Empty,
                    kind = tracing::field::Empty,
                    trace_id = tracing::field::Empty,
                    parent_id = tracing::field::Empty,
                    span_id = tracing::field::Empty
                );
                // The submit's trace (W3C `traceparent` header), continued by a span of our own
                // whose id is logged, so what the job's logs say can be joined to the trace.
                if let Some(trace) = topology::trace_of(&properties) {
                    span.record("trace_id", trace.trace_id())
                        .record("parent_id", trace.parent_id())
                        .record("span_id", trace::span_id_hex(trace::new_span_id()));
                }
                drop(properties);
                let job = handle(shared.clone(), data, acker, shutdown.clone());
                tracker.spawn(job.instrument(span));
                None
            }
            Event::Cancel(Some(Ok(message))) => {
                shared
                    .cancels_received
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                on_cancel(&shared.registry, &message.data, &message.properties);
                None
            }
            Event::Job(Some(Err(e))) | Event::Cancel(Some(Err(e))) => Some(e.to_string()),
            Event::Job(None) | Event::Cancel(None) => Some("consumer closed".to_owned()),
        };
        if let Some(why) = failed
            && let Some(old) = session.take()
        {
            tracing::warn!(error = %why, "rabbitmq session lost; reconnecting");
            old.close().await;
            reconnect.as_mut().reset(tokio::time::Instant::now());
        }
    }
    if let Some(s) = session {
        s.close().await;
    }
    Ok(())
}

/// What woke the worker's loop.
enum Event {
    Shutdown,
    GraceOver,
    Reconnect,
    Job(Option<Result<Delivery, lapin::Error>>),
    Cancel(Option<Result<Delivery, lapin::Error>>),
}

/// The next item of a consumer, or never if there is none.
async fn next_or_pending(
    consumer: Option<&mut lapin::Consumer>,
) -> Option<Result<Delivery, lapin::Error>> {
    match consumer {
        Some(c) => c.next().await,
        None => std::future::pending().await,
    }
}

/// Fires the token of the job a cancel message names. With the canceller's trace (W3C
/// `traceparent` header) the firing is logged at info with its ids, so the cancel's trace shows
/// where it took effect.
fn on_cancel(registry: &Registry, data: &[u8], properties: &lapin::BasicProperties) {
    match wire::decode_cancel(data) {
        Ok(CancelMessage::V1 { name, attempt }) => {
            let found = registry.cancel(&name, CancelReason::User);
            match topology::trace_of(properties) {
                Some(trace) if found => tracing::info!(
                    operation = %name,
                    attempt,
                    trace_id = trace.trace_id(),
                    parent_id = trace.parent_id(),
                    span_id = trace::span_id_hex(trace::new_span_id()),
                    "cancel message: token fired"
                ),
                _ => tracing::debug!(operation = %name, attempt, found, "cancel message"),
            }
        }
        Err(e) => tracing::warn!(error = %e, "ignoring cancel message"),
    }
}

/// How a finished attempt is recorded.
#[derive(Debug, Clone, PartialEq)]
enum Outcome {
    Terminal(Terminal),
    /// Not finished (shutdown): queued again, to run elsewhere as the next attempt.
    HandBack,
    /// The worker no longer holds the operation: nothing of this attempt is recorded.
    Abandon,
    /// Failed, worth another attempt after a backoff.
    Retry(Status),
}

/// Where settling left the operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Settled {
    /// It may run again (queued for a retry or handed back), or this attempt lost it: the
    /// lease entry stays.
    Open,
    /// Done (or deleted): its lease entry is no longer needed.
    Done,
    /// Done, and the write that ended it removed the lease entry too.
    DoneUnwatched,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Settle {
    Ack,
    Requeue,
}

#[allow(
    clippy::manual_async_fn,
    reason = "an async fn stores its arguments beside the locals they move into"
)]
fn handle(
    shared: Arc<Shared>,
    data: Vec<u8>,
    acker: Acker,
    shutdown: CancellationToken,
) -> impl Future<Output = ()> {
    // A block, not an `async fn`: its captures are stored once (an `async fn` keeps its
    // arguments beside the locals they move into).
    async move {
        let name = match wire::decode_job(&data) {
            Ok(JobMessage::V1 { name }) => name,
            Err(e) => {
                let why = format!("undecodable job message: {e}");
                Box::pin(dead_letter(&shared, &data, &why)).await;
                return Box::pin(settle_delivery(&acker, Settle::Ack)).await;
            }
        };
        // The body is not needed past here; its bytes are not held while the job runs.
        drop(data);
        tracing::Span::current().record("operation", tracing::field::display(&name));
        let Some(permit) = Box::pin(acquire_slot(&shared, &shutdown)).await else {
            return Box::pin(settle_delivery(&acker, Settle::Requeue)).await;
        };
        // Registered before the attempt starts: a cancel message arriving from now on finds it.
        let registration = shared.registry.register(&name);
        let stop = registration.stop().clone();
        let now = now_millis();
        let lease_until = shared.lease_from(now);
        // The Redis and broker calls here are boxed, and results are reduced to what is kept before
        // the next await: this future lives as long as the job runs and is as large as its largest
        // step, so every byte held across an await is held per running job (~5 KiB before).
        let started = match Box::pin(start(&shared, &name, now, lease_until)).await {
            Ok((op, started, queued_since)) => {
                let waited = Duration::from_millis(now.saturating_sub(queued_since));
                shared.metrics.started(&op.kind, waited);
                Ok((op.kind, op.input, op.timeout_ms, started))
            }
            Err(StoreError::NotFound | StoreError::Refused(_)) => {
                // Deleted, done already (cancelled while queued), or held by a live attempt (a
                // duplicate message): never run it here.
                tracing::debug!(operation = %name, "skipping job that is gone, done or held");
                Err(Settle::Ack)
            }
            Err(e) => {
                tracing::error!(operation = %name, error = %e, "could not start job");
                Err(Settle::Requeue)
            }
        };
        let (kind, input, timeout_ms, started) = match started {
            Ok(started) => started,
            Err(settle) => {
                if settle == Settle::Requeue {
                    Box::pin(tokio::time::sleep(RETRY_PAUSE)).await;
                }
                return Box::pin(settle_delivery(&acker, settle)).await;
            }
        };
        registration.started(Held {
            attempt: started.attempt,
            lease_until,
        });
        if started.cancel_requested {
            stop.fire(CancelReason::User);
        }
        tracing::Span::current()
            .record("attempt", started.attempt)
            .record("kind", kind.as_str());
        tracing::debug!("started");
        let job = JobSpec {
            name: &name,
            kind: &kind,
            timeout_ms,
            attempt: started.attempt,
        };
        shared.metrics.running.increment(1);
        let ran = std::time::Instant::now();
        let (outcome, forced) = run_job(&shared, job, input, &stop).await;
        shared.metrics.running.decrement(1);
        let finished = match &outcome {
            Outcome::Terminal(Terminal::Succeeded(_)) => Finished::Succeeded,
            Outcome::Terminal(Terminal::Failed(_)) | Outcome::Retry(_) => Finished::Failed,
            Outcome::Terminal(Terminal::Cancelled) => Finished::Cancelled,
            Outcome::HandBack => Finished::HandedBack,
            Outcome::Abandon => Finished::LeaseLost,
        };
        shared.metrics.finished(&kind, finished, ran.elapsed());
        tracing::debug!(outcome = ?finished, "finished");
        // Done with the lease entry once the record needs no more watching (an operation that may
        // start again keeps it); the latest armed score is the one last renewed.
        let armed = || registration.held().map_or(lease_until, |h| h.lease_until);
        let settled = Box::pin(settle(
            &shared,
            &name,
            started.attempt,
            (outcome, forced),
            &stop,
            &armed,
        ))
        .await;
        if settled == Settled::Done
            && let Err(e) = Box::pin(shared.store.unwatch(Watch::Leases, &name, armed())).await
        {
            tracing::debug!(error = %e, "lease entry left for the reaper");
        }
        Box::pin(settle_delivery(&acker, Settle::Ack)).await;
        drop(registration);
        drop(permit);
    }
}

/// Starts the attempt in Redis, its lease entry armed by the same script, so no crash comes
/// between the start and the watch that recovers it. Also answers since when the operation was
/// waiting to start: since it was last queued (created, handed back, re-queued), or since its
/// retry's backoff ended.
async fn start(
    shared: &Shared,
    name: &OperationName,
    now: Millis,
    lease_until: Millis,
) -> Result<(Operation, Started, Millis), StoreError> {
    let mut queued_since = now;
    let (op, started) = shared
        .store
        .update_watching(
            name,
            |op| {
                queued_since = op.updated.max(op.not_before.unwrap_or(0));
                op.start(&shared.worker_id, now, lease_until)
            },
            |_| Some(WatchEffect::Arm(Watch::Leases, lease_until)),
        )
        .await?;
    Ok((op, started, queued_since))
}

/// What running one attempt takes (the rest of the record is not kept while it runs).
struct JobSpec<'a> {
    name: &'a OperationName,
    kind: &'a str,
    timeout_ms: Option<u64>,
    attempt: u32,
}

/// Lease renewals in flight at once, per worker.
const RENEW_CONCURRENCY: usize = 64;

/// A slot for one more job, or `None` (the delivery goes back to the queue) when none frees up
/// within [`MAX_SLOT_WAIT`] or the worker is shutting down.
async fn acquire_slot(
    shared: &Shared,
    shutdown: &CancellationToken,
) -> Option<tokio::sync::OwnedSemaphorePermit> {
    tokio::select! {
        permit = shared.slots.clone().acquire_owned() => permit.ok(),
        () = tokio::time::sleep(MAX_SLOT_WAIT) => None,
        () = shutdown.cancelled() => None,
    }
}

/// Runs the job to its end. Once its token has fired (cancel, deadline, shutdown, lease lost) the
/// job gets `stop_grace` to return; after that it is aborted (at its next await: the async part of
/// a job is dropped; a thread of `spawn_blocking` work runs on until it next checks its token) and
/// the outcome is recorded as a forced stop. Returns the outcome and whether it was forced.
async fn run_job(
    shared: &Shared,
    spec: JobSpec<'_>,
    input: serde_json::Value,
    stop: &Stop,
) -> (Outcome, bool) {
    let Some(kind) = shared.kinds.get(spec.kind) else {
        let why = format!("no worker runs jobs of kind {:?}", spec.kind);
        let message = wire::encode(&JobMessage::V1 {
            name: spec.name.clone(),
        });
        Box::pin(dead_letter(shared, &message, &why)).await;
        let status = Status::new(Code::Unimplemented, why);
        return (Outcome::Terminal(Terminal::Failed(status)), false);
    };
    let ctx = JobContext::new(
        spec.name.clone(),
        spec.attempt,
        stop.clone(),
        shared.store.clone(),
        shared.publisher.clone(),
    );
    // Spawned so that a panicking job fails its operation instead of the worker, and so that it
    // can be aborted.
    let mut job = tokio::spawn((kind.handler)(input, ctx));
    // The timers are boxed: most jobs never need them, and unboxed each would hold its space
    // (~0.1 KiB) in this future for the job's whole life.
    let deadline = async {
        match spec.timeout_ms {
            Some(ms) => Box::pin(tokio::time::sleep(Duration::from_millis(ms))).await,
            None => std::future::pending().await,
        }
    };
    let joined = tokio::select! {
        joined = &mut job => Some(joined),
        () = deadline => {
            stop.fire(CancelReason::Deadline);
            None
        }
        () = stop.token().cancelled() => None,
    };
    let (joined, forced) = match joined {
        Some(joined) => (joined, false),
        None => match Box::pin(tokio::time::timeout(shared.stop_grace, &mut job)).await {
            Ok(joined) => (joined, false),
            Err(_) => {
                job.abort();
                tracing::warn!(grace = ?shared.stop_grace, "job ignored its token: aborted");
                (Ok(Err(JobError::Cancelled)), true)
            }
        },
    };
    let result: JobResult =
        joined.unwrap_or_else(|e| Err(JobError::new(Code::Internal, format!("job panicked: {e}"))));
    (decide(result, stop.reason(), spec.timeout_ms), forced)
}

/// Keeps a job message no worker can act on in the dead-letter queue (best effort: it is acked
/// either way, so it can never loop).
async fn dead_letter(shared: &Shared, body: &[u8], reason: &str) {
    tracing::warn!(reason, "job message dead-lettered");
    if let Err(e) = shared.publisher.publish_dead(body, reason).await {
        tracing::error!(error = %e, reason, "could not dead-letter a job message; dropped");
    }
}

/// Turns what the job returned, and why its token fired (if it did), into an outcome.
fn decide(result: JobResult, reason: Option<CancelReason>, timeout_ms: Option<u64>) -> Outcome {
    let terminal = match result {
        Ok(value) => Terminal::Succeeded(value),
        Err(JobError::Failed(status)) => Terminal::Failed(status),
        Err(JobError::Retry(status)) => match reason {
            Some(CancelReason::Shutdown) => return Outcome::HandBack,
            Some(CancelReason::LeaseLost) => return Outcome::Abandon,
            // A cancel on record ends it CANCELLED instead (in `Operation::retry`).
            _ => return Outcome::Retry(status),
        },
        Err(JobError::Cancelled) => match reason {
            Some(CancelReason::User) => Terminal::Cancelled,
            Some(CancelReason::Deadline) => Terminal::Failed(Status::new(
                Code::DeadlineExceeded,
                format!(
                    "the job ran past its timeout of {}",
                    lro_common::time::duration_json(Duration::from_millis(
                        timeout_ms.unwrap_or_default()
                    ))
                ),
            )),
            Some(CancelReason::Shutdown) => return Outcome::HandBack,
            Some(CancelReason::LeaseLost) => return Outcome::Abandon,
            None => Terminal::Failed(Status::new(
                Code::Cancelled,
                "the job stopped itself as cancelled, but no cancel was requested",
            )),
        },
    };
    Outcome::Terminal(terminal)
}

/// Records the outcome in Redis: the one place where a finished attempt is persisted. A Redis
/// error is retried until it succeeds or the lease is lost (the reaper then runs the job again).
/// Answers whether the operation is now done (or deleted), so needs no more watching.
async fn settle(
    shared: &Shared,
    name: &OperationName,
    attempt: u32,
    (outcome, forced): (Outcome, bool),
    stop: &Stop,
    armed: &(dyn Fn() -> Millis + Sync),
) -> Settled {
    let store = &shared.store;
    let mut pause = Duration::from_millis(50);
    let mut cancel_recorded = None;
    let done = |done: bool| if done { Settled::Done } else { Settled::Open };
    loop {
        let now = now_millis();
        let written = match &outcome {
            Outcome::Abandon => {
                tracing::info!("lease lost: outcome not recorded");
                return Settled::Open;
            }
            // The lease entry goes with the write that ends the operation, in one script.
            Outcome::Terminal(t) => store
                .update_watching(
                    name,
                    |op| {
                        cancel_recorded = op.cancel_requested;
                        if forced {
                            op.finish_forced(attempt, t.clone(), now)
                        } else {
                            op.finish(attempt, t.clone(), now)
                        }
                    },
                    |_| Some(WatchEffect::Remove(Watch::Leases, armed())),
                )
                .await
                .map(|_| {
                    // Cancel recorded (by the api) → this job's token fired (here).
                    if let (Some(recorded), Some(fired)) =
                        (cancel_recorded, stop.cancelled_by_user_at())
                    {
                        let latency = Duration::from_millis(fired.saturating_sub(recorded));
                        shared.metrics.cancel_latency(latency);
                    }
                    Settled::DoneUnwatched
                }),
            Outcome::HandBack => hand_back(shared, name, attempt, now).await.map(done),
            Outcome::Retry(status) => retry(shared, name, attempt, status, now).await.map(done),
        };
        match written {
            Ok(settled) => return settled,
            Err(StoreError::NotFound) => {
                tracing::debug!("operation was deleted while it ran");
                return Settled::Done;
            }
            Err(StoreError::Refused(r)) => {
                // Done already, or a newer attempt owns it: this attempt's result is not recorded.
                tracing::info!(refused = %r, "outcome not recorded");
                return done(r == Refused::Done);
            }
            Err(e) if stop.reason() == Some(CancelReason::LeaseLost) => {
                tracing::warn!(error = %e, "could not record outcome before losing the lease");
                return Settled::Open;
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not record outcome; retrying");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(2));
            }
        }
    }
}

/// Queues the operation again after a backoff that doubles with each attempt: a reaper publishes
/// it when the backoff is over (the guard is armed before the write).
async fn retry(
    shared: &Shared,
    name: &OperationName,
    attempt: u32,
    status: &Status,
    now: Millis,
) -> Result<bool, StoreError> {
    let backoff = shared
        .retry_backoff
        .saturating_mul(1 << attempt.saturating_sub(1).min(16))
        .min(MAX_RETRY_BACKOFF);
    let at = now + Millis::try_from(backoff.as_millis()).unwrap_or(Millis::MAX / 2);
    publish::guard_retry(&shared.store, name, at).await?;
    let (_, retried) = shared
        .store
        .update(name, |op| op.retry(attempt, status.clone(), now, at))
        .await?;
    tracing::info!(?retried, code = status.code, message = %status.message, "retryable failure");
    Ok(!matches!(retried, Retried::At(_)))
}

/// Gives the operation back: QUEUED again (guarded, then published), unless a cancel is on
/// record, which ends it CANCELLED.
async fn hand_back(
    shared: &Shared,
    name: &OperationName,
    attempt: u32,
    now: Millis,
) -> Result<bool, StoreError> {
    let guarded_at = publish::guard_publish(&shared.store, name).await?;
    let (op, ()) = shared
        .store
        .update(name, |op| op.hand_back(attempt, now))
        .await?;
    if matches!(op.phase, Phase::Queued) {
        // A failed publish is repaired by the reaper through the guard.
        if let Err(e) =
            publish::publish(&shared.store, &shared.publisher, name, guarded_at, None).await
        {
            tracing::warn!(error = %e, "handed back; publish failed, the reaper will retry");
        }
    }
    Ok(op.is_done())
}

async fn settle_delivery(acker: &Acker, settle: Settle) {
    let result = match settle {
        Settle::Ack => acker.ack(BasicAckOptions::default()).await,
        Settle::Requeue => {
            acker
                .nack(BasicNackOptions {
                    requeue: true,
                    ..BasicNackOptions::default()
                })
                .await
        }
    };
    match result {
        Ok(true) => {}
        Ok(false) => tracing::warn!(
            ?settle,
            "delivery from a closed channel: it will be redelivered"
        ),
        Err(e) => tracing::warn!(?settle, error = %e, "could not settle delivery"),
    }
}

/// Renews the lease of every started job every third of a lease, until `shutdown` has fired and
/// no job is left. A renewal also re-reads the cancel request, so a cancel whose message was lost
/// is honoured within a third of a lease. A job whose operation another attempt owns, or whose
/// lease ran out while Redis was unreachable, is stopped with [`CancelReason::LeaseLost`].
pub(crate) async fn renew_leases(shared: Arc<Shared>, stopped: CancellationToken) {
    // Each job is renewed once a third of its lease has passed since its last renewal, looked
    // for every fifteenth of a lease: the renewals spread out as the jobs' starts did, instead
    // of all of them at once every third of a lease, a burst that queued cancels' Redis calls
    // behind it (cancel p50 1.8 -> 3.8 ms at 100,000 in flight).
    let tick = shared.lease / 15;
    let two_thirds =
        Millis::try_from((shared.lease * 2 / 3).as_millis()).unwrap_or(Millis::MAX / 4);
    loop {
        let due_by = tokio::select! {
            () = stopped.cancelled() => return,
            () = tokio::time::sleep(tick) => now_millis().saturating_add(two_thirds),
            // After a reconnect: every job at once, to find cancels whose message was missed.
            () = shared.recheck.notified() => Millis::MAX,
        };
        // Concurrently (the Redis connection pipelines them): one after another, a pass over
        // 50,000 jobs at ~0.3 ms each would outlast the lease it renews.
        let jobs = futures_util::stream::iter(shared.registry.started_jobs_due(due_by));
        jobs.for_each_concurrent(RENEW_CONCURRENCY, |job| {
            let shared = &shared;
            async move {
                let now = now_millis();
                let until = shared.lease_from(now);
                // The lease entry moves with the renewal, in one script.
                let renewed = shared
                    .store
                    .update_watching(
                        &job.name,
                        |op| op.renew(job.held.attempt, until),
                        |_| Some(WatchEffect::Move(Watch::Leases, until)),
                    )
                    .await;
                match renewed {
                    Ok((_, renewed)) => {
                        shared.registry.renewed(&job.name, job.id, until);
                        if renewed.cancel_requested && !job.stop.token().is_cancelled() {
                            tracing::info!(operation = %job.name, "cancel found on renewal");
                            job.stop.fire(CancelReason::User);
                        }
                    }
                    // Deleted: the job runs on (delete does not cancel); its result is dropped.
                    Err(StoreError::NotFound) => {}
                    // Another attempt owns it, or it ended (a reaper expired the lease).
                    Err(StoreError::Refused(r)) => {
                        tracing::warn!(operation = %job.name, refused = %r, "lease lost: stopping");
                        job.stop.fire(CancelReason::LeaseLost);
                    }
                    Err(e) if now >= job.held.lease_until => {
                        tracing::warn!(operation = %job.name, error = %e, "lease ran out: stopping");
                        job.stop.fire(CancelReason::LeaseLost);
                    }
                    Err(e) => tracing::warn!(operation = %job.name, error = %e, "lease not renewed"),
                }
            }
        })
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn outcomes_follow_the_cancel_reason() {
        let cancelled = || Err(JobError::Cancelled);
        assert_eq!(
            decide(cancelled(), Some(CancelReason::User), None),
            Outcome::Terminal(Terminal::Cancelled)
        );
        assert_eq!(
            decide(cancelled(), Some(CancelReason::Shutdown), None),
            Outcome::HandBack
        );
        match decide(cancelled(), Some(CancelReason::Deadline), Some(1500)) {
            Outcome::Terminal(Terminal::Failed(s)) => {
                assert_eq!(s.code, Code::DeadlineExceeded.as_i32());
                assert!(s.message.contains("1.500s"), "{}", s.message);
            }
            other => panic!("{other:?}"),
        }
        // Completed despite cancellation.
        assert_eq!(
            decide(Ok(json!(1)), Some(CancelReason::User), None),
            Outcome::Terminal(Terminal::Succeeded(json!(1)))
        );
    }
}
