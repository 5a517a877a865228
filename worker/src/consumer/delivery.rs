//! The life of one job delivery: decode it, wait for a slot (and for the worker's heartbeat to
//! hold), register the job's token, start the attempt in Redis, run the job ([`super::run`]),
//! record its outcome ([`super::outcome`]) — and only then settle the delivery with the broker,
//! in one place ([`handle`], through [`Settler`]; acks coalesced by [`super::acks`]): acked once
//! its outcome is in Redis (or Redis says there is none of ours to write), put back on the queue
//! when this worker could not start it or no replica confirmed its outcome.
//!
//! It decides no outcome and writes no terminal state itself.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::Either;
use lapin::Acker;
use lapin::options::BasicNackOptions;
use lro_common::name::OperationName;
use lro_common::operation::{Operation, Refused, Started};
use lro_common::store::StoreError;
use lro_common::time::{Millis, now_millis};
use lro_common::wire::{self, JobMessage};
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::CancellationToken;

use super::Shared;
use super::acks::{self, Acks};
use super::outcome;
use super::run::{self, JobSpec};
use crate::registry::{CancelReason, Held};

/// Longest a delivery waits for a free slot before going back to the queue. Deliveries only wait
/// when the broker has sent more than the worker's concurrency (after it took deliveries back
/// from a channel it closed while their jobs ran on).
const MAX_SLOT_WAIT: Duration = Duration::from_secs(300);
/// Pause before a delivery that met a Redis error goes back to the queue.
const RETRY_PAUSE: Duration = Duration::from_secs(1);

/// What becomes of a delivery with the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Settle {
    Ack,
    Requeue,
}

/// Why a delivery's job does not run here.
enum Skip {
    /// Gone, done, or running elsewhere: acked.
    Ack,
    /// Recorded as running on this worker already, with no job here: acked, and reconciled.
    Orphan,
    /// Redis did not answer: requeued, and reconciled (the start may have been made).
    Failed,
}

/// What a job holds until its delivery is settled: its slot is given up only after the delivery
/// is. (Its registration goes once its outcome is recorded: from then on the reconcile may see
/// the name unregistered, and finds the record no longer running here.)
type Holding = Option<OwnedSemaphorePermit>;

/// Carries one delivery through its life, then settles it: the only place a job delivery is
/// acked or requeued. The body is decoded before the future is made, so only the name is held
/// while the job runs; a body no worker can act on is dead-lettered and acked.
pub(super) fn handle(
    shared: Arc<Shared>,
    data: Vec<u8>,
    settler: Settler,
    shutdown: CancellationToken,
) -> impl Future<Output = ()> {
    match wire::decode_job(&data) {
        Ok(JobMessage::V1 { name }) => Either::Left(async move {
            let (settle, holding) = life(&shared, name, &shutdown).await;
            match settle {
                Settle::Ack => settler.ack(),
                Settle::Requeue => Box::pin(settler.requeue()).await,
            }
            drop(holding);
        }),
        Err(e) => Either::Right(async move {
            let why = format!("undecodable job message: {e}");
            Box::pin(dead_letter(&shared, &data, &why)).await;
            settler.ack();
        }),
    }
}

/// How a delivery is settled: its acker, and the session's acks an ack joins.
pub(super) struct Settler {
    pub(super) acks: Arc<Acks>,
    pub(super) tag: u64,
    pub(super) acker: Acker,
}

impl Settler {
    /// Joins the session's next coalesced ack.
    fn ack(self) {
        self.acks.ack(self.tag, self.acker);
    }

    /// Puts the delivery back on the queue, at once.
    async fn requeue(self) {
        let requeue = BasicNackOptions {
            requeue: true,
            ..BasicNackOptions::default()
        };
        acks::report("requeue", self.acker.nack(requeue).await);
        self.acks.settled(self.tag);
    }
}

/// One delivery up to its settling: how to settle it, and what the job holds until then.
#[allow(
    clippy::manual_async_fn,
    reason = "an async fn stores its arguments beside the locals they move into"
)]
fn life<'a>(
    shared: &'a Shared,
    name: OperationName,
    shutdown: &'a CancellationToken,
) -> impl Future<Output = (Settle, Holding)> + 'a {
    async move {
        tracing::Span::current().record("operation", tracing::field::display(&name));
        let Some(permit) = Box::pin(acquire_slot(shared, shutdown)).await else {
            return (Settle::Requeue, None);
        };
        // No start while the heartbeat does not hold: a reaper may be losing this worker's
        // attempts right now.
        tokio::select! {
            () = Box::pin(shared.liveness.alive()) => {}
            () = shutdown.cancelled() => return (Settle::Requeue, None),
        }
        // Registered before the attempt starts: a cancel message arriving from now on finds it.
        // The registration holds the name and the stop from here on (not copies beside it).
        let registration = shared.registry.register(name);
        let (name, stop) = (registration.name(), registration.stop());
        let now = now_millis();
        // The Redis and broker calls here are boxed, and results are reduced to what is kept
        // before the next await: this future lives as long as the job runs and is as large as its
        // largest step, so every byte held across an await is held per running job (~5 KiB
        // before).
        let started = match Box::pin(start(shared, name, now)).await {
            Ok((op, started, queued_since)) => {
                let waited = Duration::from_millis(now.saturating_sub(queued_since));
                shared.metrics.started(&op.kind, waited);
                Ok((op.kind, op.input, op.timeout_ms, started))
            }
            Err(StoreError::Refused(Refused::Held { worker, .. }))
                if worker == shared.worker_id =>
            {
                // Recorded as running here, yet no job of this delivery runs it: a start whose
                // reply was lost, or an outcome lost with its master. Once this delivery's
                // registration is gone, the reconcile gives that attempt up, and it runs again.
                tracing::warn!(operation = %name, "recorded as running here: reconciling");
                Err(Skip::Orphan)
            }
            Err(StoreError::NotFound | StoreError::Refused(_)) => {
                // Deleted, done already (cancelled while queued), or running (a duplicate or
                // redelivered message): never run it here.
                tracing::debug!(operation = %name, "skipping job that is gone, done or running");
                Err(Skip::Ack)
            }
            Err(e) => {
                tracing::error!(operation = %name, error = %e, "could not start job");
                Err(Skip::Failed)
            }
        };
        let (kind, input, timeout_ms, started) = match started {
            Ok(started) => started,
            Err(Skip::Ack) => return (Settle::Ack, Some(permit)),
            Err(Skip::Orphan) => {
                drop(registration);
                shared.reconcile.notify_one();
                return (Settle::Ack, Some(permit));
            }
            Err(Skip::Failed) => {
                // The start may have been applied though its reply was lost: once no job here
                // holds the name, the reconcile gives such an attempt up.
                drop(registration);
                shared.reconcile.notify_one();
                Box::pin(tokio::time::sleep(RETRY_PAUSE)).await;
                return (Settle::Requeue, Some(permit));
            }
        };
        registration.started(Held {
            attempt: started.attempt,
        });
        if started.cancel_requested {
            stop.fire(CancelReason::User);
        }
        tracing::Span::current()
            .record("attempt", started.attempt)
            .record("kind", kind.as_str());
        tracing::debug!("started");
        let job = JobSpec {
            name,
            kind: &kind,
            timeout_ms,
            attempt: started.attempt,
        };
        shared.metrics.running.increment(1);
        let ran = std::time::Instant::now();
        let (outcome, forced, progress) = run::run_job(shared, job, input, stop).await;
        shared.metrics.running.decrement(1);
        let finished = outcome.finished();
        shared.metrics.finished(&kind, finished, ran.elapsed());
        tracing::debug!(outcome = ?finished, "finished");
        let ended = outcome::Ended {
            outcome,
            forced,
            progress,
        };
        let confirmed = Box::pin(outcome::record(shared, name, started.attempt, ended, stop)).await;
        let settle = if confirmed {
            Settle::Ack
        } else {
            Settle::Requeue
        };
        drop(registration);
        (settle, Some(permit))
    }
}

/// Starts the attempt in Redis; the same script adds it to this worker's owned set, so no crash
/// comes between the start and what recovers it if this worker dies. Also answers since when the
/// operation was waiting to start: since it was last queued (created, handed back, re-queued), or
/// since its retry's backoff ended.
async fn start(
    shared: &Shared,
    name: &OperationName,
    now: Millis,
) -> Result<(Operation, Started, Millis), StoreError> {
    let mut queued_since = now;
    let (op, started) = shared
        .store
        .update(name, |op| {
            queued_since = op.updated.max(op.not_before.unwrap_or(0));
            op.start(&shared.worker_id, now)
        })
        .await?;
    Ok((op, started, queued_since))
}

/// A slot for one more job, or `None` (the delivery goes back to the queue) when none frees up
/// within [`MAX_SLOT_WAIT`] or the worker is shutting down.
async fn acquire_slot(
    shared: &Shared,
    shutdown: &CancellationToken,
) -> Option<OwnedSemaphorePermit> {
    tokio::select! {
        permit = shared.slots.clone().acquire_owned() => permit.ok(),
        () = tokio::time::sleep(MAX_SLOT_WAIT) => None,
        () = shutdown.cancelled() => None,
    }
}

/// Keeps a job message no worker can act on in the dead-letter queue (best effort: it is acked
/// either way, so it can never loop).
pub(super) async fn dead_letter(shared: &Shared, body: &[u8], reason: &str) {
    tracing::warn!(reason, "job message dead-lettered");
    if let Err(e) = shared.publisher.publish_dead(body, reason).await {
        tracing::error!(error = %e, reason, "could not dead-letter a job message; dropped");
    }
}
