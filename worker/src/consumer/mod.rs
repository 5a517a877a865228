//! The worker's event loop: one `select!` over a closed set of events (shutdown, the end of the
//! shutdown's grace, a reconnect falling due, a job delivery, a cancel message, every job
//! settled), with its state — whether it has a session, and how far a shutdown has got — held in
//! two enums ([`Link`], [`Stage`]).
//!
//! Each delivery becomes a task on a [`TaskTracker`] ([`delivery`]: one delivery's life, and the
//! one place a delivery is acked or handed back); the job itself runs in [`run`], and its outcome
//! is decided and recorded in [`outcome`]. The heartbeat is not the loop's: it runs beside it
//! (`crate::heartbeat`).
//!
//! Ownership of a running job is the attempt recorded in Redis on this worker, held while the
//! worker's heartbeat does — not the delivery. The unacked delivery gives exact flow control
//! (prefetch = concurrency: a worker is sent a job only when it has a free slot). When the broker
//! takes a delivery back while its job still runs (a dropped connection, or RabbitMQ's
//! `consumer_timeout` closing the channel under a long job), the job goes on, and the redelivered
//! copy is skipped by whichever worker receives it (`start` refuses a RUNNING operation); if the
//! worker itself died, a reaper queues its jobs again once its heartbeat has expired.

pub(crate) mod acks;
mod delivery;
mod outcome;
mod run;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use lapin::message::Delivery;
use lro_common::broker::{self, Broker};
use lro_common::store::Store;
use lro_common::time::Millis;
use lro_common::wire::{self, CancelMessage};
use lro_common::{otel, trace};
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::WorkerError;
use crate::heartbeat::Liveness;
use crate::job::Kinds;
use crate::metrics::WorkerMetrics;
use crate::registry::{CancelReason, Registry};
use crate::session::{Session, SessionConfig};
use acks::Acks;

/// First and longest pause between attempts to reconnect to the broker.
const RECONNECT_MIN: Duration = Duration::from_millis(200);
const RECONNECT_MAX: Duration = Duration::from_secs(5);

/// What every job task shares.
pub(crate) struct Shared {
    pub(crate) store: Arc<Store>,
    pub(crate) publisher: Broker,
    pub(crate) kinds: Kinds,
    pub(crate) registry: Registry,
    pub(crate) worker_id: String,
    /// One permit per job this worker may run at once.
    pub(crate) slots: Arc<Semaphore>,
    /// How long one heartbeat holds this worker's attempts (it beats every third of it).
    pub(crate) lease: Duration,
    /// How long a job may take to return once its token fired, before it is aborted.
    pub(crate) stop_grace: Duration,
    /// The backoff before the second attempt of a job that failed retryably; doubled each time.
    pub(crate) retry_backoff: Duration,
    /// Cancel messages this worker has received (for the benchmark's cost per cancel).
    pub(crate) cancels_received: Arc<std::sync::atomic::AtomicU64>,
    /// Whether the heartbeat holds: jobs start only while it does.
    pub(crate) liveness: Liveness,
    /// Asks the heartbeat to compare the owned sets with the registry soon (a start's reply was
    /// lost).
    pub(crate) reconcile: Notify,
    pub(crate) metrics: WorkerMetrics,
    /// Whether the loop has a session and takes jobs (for `/readyz`).
    pub(crate) consuming: Arc<AtomicBool>,
}

impl Shared {
    pub(crate) fn lease_from(&self, now: Millis) -> Millis {
        now + Millis::try_from(self.lease.as_millis()).unwrap_or(Millis::MAX / 2)
    }
}

/// The loop's hold on the broker.
#[allow(
    clippy::large_enum_variant,
    reason = "one value, the loop's own for its whole life: boxing the session would save nothing"
)]
enum Link {
    /// Consuming jobs and cancels on this session.
    Up(Session),
    /// No session: opening one is tried when the reconnect timer fires, and if that fails, again
    /// `backoff` later.
    Down { backoff: Duration },
}

/// How far a shutdown has got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Taking jobs.
    Taking,
    /// Shutdown began: no more jobs are taken, running ones may finish until the grace is over.
    Draining,
    /// The grace is over and every job's token has fired (reason: shutdown): waiting for the
    /// jobs to hand their operations back.
    Stopping,
}

/// Runs until shutdown, then drains: stops taking jobs (the broker gets them back), lets running
/// jobs finish for `shutdown_grace`, then fires their tokens (reason: shutdown) so that they hand
/// their operations back, and returns once every job has settled. Cancels are still received
/// while draining. When the session fails it is dropped and reopened (backing off while the
/// broker is unreachable); running jobs carry on, and the cancels sent meanwhile reach them
/// through the inbox their heartbeat drains.
pub(crate) async fn run(
    shared: Arc<Shared>,
    session: Session,
    session_config: SessionConfig,
    shutdown: CancellationToken,
    drain: CancellationToken,
    shutdown_grace: Duration,
) -> Result<(), WorkerError> {
    let tracker = TaskTracker::new();
    let mut link = Link::Up(session);
    let mut stage = Stage::Taking;
    let grace_over = tokio::time::sleep(Duration::MAX);
    tokio::pin!(grace_over);
    let reconnect = tokio::time::sleep(Duration::MAX);
    tokio::pin!(reconnect);
    loop {
        shared.consuming.store(
            matches!(link, Link::Up(_)) && stage == Stage::Taking,
            Ordering::Relaxed,
        );
        let event = {
            let (connected, jobs, cancels) = match &mut link {
                Link::Up(s) => (true, Some(&mut s.jobs), Some(&mut s.cancels)),
                Link::Down { .. } => (false, None, None),
            };
            tokio::select! {
                () = shutdown.cancelled(), if stage == Stage::Taking => Event::Shutdown,
                () = &mut grace_over, if stage == Stage::Draining => Event::GraceOver,
                () = tracker.wait(), if stage != Stage::Taking => break,
                () = &mut reconnect, if !connected => Event::Reconnect,
                delivery = next_or_pending(jobs), if stage == Stage::Taking => Event::Job(delivery),
                message = next_or_pending(cancels) => Event::Cancel(message),
            }
        };
        let failed = match event {
            Event::Shutdown => {
                stage = Stage::Draining;
                tracker.close();
                grace_over
                    .as_mut()
                    .reset(tokio::time::Instant::now() + shutdown_grace);
                tracing::info!(running = shared.registry.len(), "draining");
                None
            }
            Event::GraceOver => {
                stage = Stage::Stopping;
                drain.cancel();
                None
            }
            Event::Reconnect => {
                let Link::Down { backoff } = link else {
                    unreachable!("reconnect is only polled while down")
                };
                match Session::open(&session_config).await {
                    Ok(s) => {
                        tracing::info!("rabbitmq reconnected");
                        link = Link::Up(s);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, retry_in = ?backoff, "rabbitmq unreachable");
                        reconnect
                            .as_mut()
                            .reset(tokio::time::Instant::now() + backoff);
                        link = Link::Down {
                            backoff: (backoff * 2).min(RECONNECT_MAX),
                        };
                    }
                }
                None
            }
            Event::Job(Some(Ok(delivery))) => {
                let Link::Up(session) = &link else {
                    unreachable!("jobs are only polled while up")
                };
                on_delivery(&shared, &tracker, &session.acks, delivery, &shutdown);
                None
            }
            Event::Cancel(Some(Ok(message))) => {
                shared.cancels_received.fetch_add(1, Ordering::Relaxed);
                on_cancel(&shared.registry, &message.data, &message.properties);
                None
            }
            Event::Job(Some(Err(e))) | Event::Cancel(Some(Err(e))) => Some(e.to_string()),
            Event::Job(None) | Event::Cancel(None) => Some("consumer closed".to_owned()),
        };
        // Only a session's consumers fail (a link that is down polls none), so `lost` is `Up`.
        if let Some(why) = failed {
            let lost = std::mem::replace(
                &mut link,
                Link::Down {
                    backoff: RECONNECT_MIN,
                },
            );
            if let Link::Up(old) = lost {
                tracing::warn!(error = %why, "rabbitmq session lost; reconnecting");
                old.close().await;
                reconnect.as_mut().reset(tokio::time::Instant::now());
            }
        }
    }
    if let Link::Up(s) = link {
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

/// Starts the task that carries one job delivery through its life, in the job's span.
fn on_delivery(
    shared: &Arc<Shared>,
    tracker: &TaskTracker,
    acks: &Arc<Acks>,
    delivery: Delivery,
    shutdown: &CancellationToken,
) {
    // Only the body and the acker travel on: the rest of the delivery (~0.4 KiB) would be held
    // for as long as the job runs.
    let Delivery {
        data,
        acker,
        properties,
        delivery_tag,
        ..
    } = delivery;
    acks.delivered(delivery_tag);
    // The job's span, its fields recorded once known; instrumenting the whole task here stores
    // its future once (an inner `instrument` would need its own box).
    let span = tracing::info_span!(
        "job",
        operation = tracing::field::Empty,
        attempt = tracing::field::Empty,
        kind = tracing::field::Empty,
        trace_id = tracing::field::Empty,
        parent_id = tracing::field::Empty,
        span_id = tracing::field::Empty
    );
    // The submit's trace (W3C `traceparent` header), continued by a span of our own whose id is
    // logged, so what the job's logs say can be joined to the trace (with OTLP export on, the
    // exported job span is that span).
    if let Some(trace) = broker::trace_of(&properties) {
        span.record("trace_id", trace.trace_id())
            .record("parent_id", trace.parent_id())
            .record(
                "span_id",
                trace::span_id_hex(otel::span_id_in(&span, &trace)),
            );
    }
    drop(properties);
    let settler = delivery::Settler {
        acks: acks.clone(),
        tag: delivery_tag,
        acker,
    };
    let job = delivery::handle(shared.clone(), data, settler, shutdown.clone());
    tracker.spawn(job.instrument(span));
}

/// Fires the token of the job a cancel message names. With the canceller's trace (W3C
/// `traceparent` header) the firing is logged at info with its ids, so the cancel's trace shows
/// where it took effect.
fn on_cancel(registry: &Registry, data: &[u8], properties: &lapin::BasicProperties) {
    match wire::decode_cancel(data) {
        Ok(CancelMessage::V1 { name, attempt }) => {
            let found = registry.cancel(&name, CancelReason::User);
            match broker::trace_of(properties) {
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
