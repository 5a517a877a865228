//! The worker's event loop and the life of one delivery.
//!
//! The loop is one `select!` over a closed set of events: shutdown, a job delivery, a cancel
//! message. Each delivery becomes a task on a [`TaskTracker`]; the task registers the job's token,
//! starts the attempt in Redis, runs the job, then settles it in one place ([`settle`]): the
//! outcome is written to Redis first, and only then is the delivery acked.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicNackOptions};
use lro_common::name::OperationName;
use lro_common::operation::{Operation, Terminal};
use lro_common::status::{Code, Status};
use lro_common::store::{Store, StoreError};
use lro_common::time::now_millis;
use lro_common::wire::{self, CancelMessage, JobMessage};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::WorkerError;
use crate::job::{JobContext, JobError, JobResult, Kinds};
use crate::registry::{CancelReason, Registry, Stop};

/// What every job task shares.
pub(crate) struct Shared {
    pub(crate) store: Store,
    pub(crate) kinds: Kinds,
    pub(crate) registry: Registry,
    pub(crate) worker_id: String,
}

/// Runs until shutdown, then waits for the running jobs (whose tokens fired with it) to settle.
pub(crate) async fn run(
    shared: Arc<Shared>,
    mut jobs: lapin::Consumer,
    mut cancels: lapin::Consumer,
    shutdown: CancellationToken,
) -> Result<(), WorkerError> {
    let tracker = TaskTracker::new();
    let result = loop {
        tokio::select! {
            () = shutdown.cancelled() => break Ok(()),
            delivery = jobs.next() => match delivery {
                Some(Ok(delivery)) => {
                    tracker.spawn(handle(shared.clone(), delivery));
                }
                Some(Err(e)) => break Err(WorkerError::Amqp(e.into())),
                None => break Err(WorkerError::ConsumerClosed("jobs")),
            },
            message = cancels.next() => match message {
                Some(Ok(message)) => on_cancel(&shared.registry, &message.data),
                Some(Err(e)) => break Err(WorkerError::Amqp(e.into())),
                None => break Err(WorkerError::ConsumerClosed("cancel")),
            },
        }
    };
    tracker.close();
    tracker.wait().await;
    result
}

fn on_cancel(registry: &Registry, data: &[u8]) {
    match wire::decode_cancel(data) {
        Ok(CancelMessage::V1 { name, attempt }) => {
            let found = registry.cancel(&name, CancelReason::User);
            tracing::debug!(operation = %name, attempt, found, "cancel message");
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
}

/// What happens to the delivery once Redis is up to date.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Settle {
    Ack,
    Requeue,
}

async fn handle(shared: Arc<Shared>, delivery: Delivery) {
    let name = match wire::decode_job(&delivery.data) {
        Ok(JobMessage::V1 { name }) => name,
        Err(e) => {
            tracing::warn!(error = %e, "dropping undecodable job message");
            return ack_or_requeue(&delivery, Settle::Ack).await;
        }
    };
    // Registered before the attempt starts: a cancel message arriving from now on finds it.
    let registration = shared.registry.register(&name);
    let stop = registration.stop().clone();
    let started = shared
        .store
        .update(&name, |op| op.start(&shared.worker_id, now_millis()))
        .await;
    let (op, started) = match started {
        Ok(started) => started,
        Err(StoreError::NotFound | StoreError::Refused(_)) => {
            // Deleted, or done already (cancelled while queued): never run it.
            tracing::debug!(operation = %name, "skipping job that is gone or done");
            return ack_or_requeue(&delivery, Settle::Ack).await;
        }
        Err(e) => {
            tracing::error!(operation = %name, error = %e, "could not start job");
            return ack_or_requeue(&delivery, Settle::Requeue).await;
        }
    };
    if started.cancel_requested {
        stop.fire(CancelReason::User);
    }
    let span =
        tracing::info_span!("job", operation = %name, attempt = started.attempt, kind = %op.kind);
    async {
        tracing::debug!("started");
        let outcome = run_job(&shared, &op, started.attempt, &stop).await;
        let settle = settle(&shared.store, &name, started.attempt, outcome).await;
        ack_or_requeue(&delivery, settle).await;
    }
    .instrument(span)
    .await;
    drop(registration);
}

async fn run_job(shared: &Shared, op: &Operation, attempt: u32, stop: &Stop) -> Outcome {
    let Some(kind) = shared.kinds.get(&op.kind) else {
        return Outcome::Terminal(Terminal::Failed(Status::new(
            Code::Unimplemented,
            format!("no worker runs jobs of kind {:?}", op.kind),
        )));
    };
    let ctx = JobContext::new(op.name.clone(), attempt, stop.clone(), shared.store.clone());
    // Spawned so that a panicking job fails its operation instead of the worker.
    let mut job = tokio::spawn((kind.handler)(op.input.clone(), ctx));
    let joined = match op.timeout_ms {
        Some(ms) => {
            tokio::select! {
                joined = &mut job => joined,
                () = tokio::time::sleep(Duration::from_millis(ms)) => {
                    stop.fire(CancelReason::Deadline);
                    job.await
                }
            }
        }
        None => job.await,
    };
    let result: JobResult =
        joined.unwrap_or_else(|e| Err(JobError::new(Code::Internal, format!("job panicked: {e}"))));
    decide(result, stop.reason(), op.timeout_ms)
}

/// Turns what the job returned, and why its token fired (if it did), into an outcome.
fn decide(result: JobResult, reason: Option<CancelReason>, timeout_ms: Option<u64>) -> Outcome {
    let terminal = match result {
        Ok(value) => Terminal::Succeeded(value),
        Err(JobError::Failed(status)) => Terminal::Failed(status),
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
            None => Terminal::Failed(Status::new(
                Code::Cancelled,
                "the job stopped itself as cancelled, but no cancel was requested",
            )),
        },
    };
    Outcome::Terminal(terminal)
}

/// Records the outcome in Redis, then says what to do with the delivery. The one place where a
/// finished attempt is persisted.
async fn settle(store: &Store, name: &OperationName, attempt: u32, outcome: Outcome) -> Settle {
    let now = now_millis();
    let written = match &outcome {
        Outcome::Terminal(t) => store
            .update(name, |op| op.finish(attempt, t.clone(), now))
            .await
            .map(|_| ()),
        Outcome::HandBack => store
            .update(name, |op| op.hand_back(attempt, now))
            .await
            .map(|_| ()),
    };
    match (outcome, written) {
        (Outcome::Terminal(_), Ok(())) => Settle::Ack,
        (Outcome::HandBack, Ok(())) => Settle::Requeue,
        (_, Err(StoreError::NotFound)) => {
            tracing::debug!("operation was deleted while it ran");
            Settle::Ack
        }
        (_, Err(StoreError::Refused(r))) => {
            // Done already, or a newer attempt owns it: this attempt's result is not recorded.
            tracing::info!(refused = %r, "outcome not recorded");
            Settle::Ack
        }
        (_, Err(e)) => {
            tracing::error!(error = %e, "could not record outcome; the job will run again");
            Settle::Requeue
        }
    }
}

async fn ack_or_requeue(delivery: &Delivery, settle: Settle) {
    let result = match settle {
        Settle::Ack => delivery.ack(BasicAckOptions::default()).await,
        Settle::Requeue => {
            delivery
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
