//! A finished attempt's outcome and its persistence, together: the [`Outcome`] enum, the one
//! `match` that decides it from what the job returned and why its token fired ([`decide`]), and
//! the one place it is written to Redis ([`record`]: the terminal write, a retry, a hand-back).
//!
//! It does not ack: the delivery is settled by [`super::delivery`] once this has returned — put
//! back on the queue when the terminal write was made but no replica confirmed it (a redelivery
//! of a done operation is refused by `start` and acked; if the master was lost with the write,
//! the operation is still RUNNING on this worker, which runs no job for it any more: the
//! worker's reconcile gives the attempt up, and it runs again). Likewise when the record is found
//! QUEUED though this attempt started: with replicas in use, the start may have been lost with
//! its master, and the redelivery runs it.

use std::time::Duration;

use lro_common::name::OperationName;
use lro_common::operation::{Phase, Progress, Refused, Retried, Terminal};
use lro_common::publish;
use lro_common::status::{Code, Status};
use lro_common::store::StoreError;
use lro_common::time::{Millis, now_millis};

use super::Shared;
use crate::job::{JobError, JobResult};
use crate::metrics::Finished;
use crate::registry::{CancelReason, Stop};

/// The longest backoff before a retry.
const MAX_RETRY_BACKOFF: Duration = Duration::from_secs(600);

/// How a finished attempt is recorded.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Outcome {
    Terminal(Terminal),
    /// Not finished (shutdown): queued again, to run elsewhere as the next attempt.
    HandBack,
    /// The worker no longer holds the operation (its heartbeat lapsed): nothing of this
    /// attempt is recorded; it is given up, fenced by its number, unless a reaper did already.
    Abandon,
    /// Failed, worth another attempt after a backoff.
    Retry(Status),
}

impl Outcome {
    /// How the attempt counts in the worker's metrics.
    pub(super) fn finished(&self) -> Finished {
        match self {
            Self::Terminal(Terminal::Succeeded(_)) => Finished::Succeeded,
            Self::Terminal(Terminal::Failed(_)) | Self::Retry(_) => Finished::Failed,
            Self::Terminal(Terminal::Cancelled) => Finished::Cancelled,
            Self::HandBack => Finished::HandedBack,
            Self::Abandon => Finished::LeaseLost,
        }
    }
}

/// How an attempt ended, as [`record`] writes it.
pub(super) struct Ended {
    pub(super) outcome: Outcome,
    /// Its stop was forced (it ignored its token past the grace).
    pub(super) forced: bool,
    /// The last progress it reported, not written yet (coalesced): written with a terminal
    /// outcome, so a done operation shows it.
    pub(super) progress: Option<Progress>,
}

/// Where settling left the operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Settled {
    /// Recorded (done, queued for a retry, handed back), or not this attempt's to record.
    Recorded,
    /// Done by a write that no replica confirmed, or found QUEUED with replicas in use (its
    /// start may have been lost with its master): the delivery goes back to the queue.
    Unconfirmed,
}

/// Turns what the job returned, and why its token fired (if it did), into an outcome.
pub(super) fn decide(
    result: JobResult,
    reason: Option<CancelReason>,
    timeout_ms: Option<u64>,
) -> Outcome {
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

/// Records how `attempt` ended: the one place where a
/// finished attempt is persisted. A Redis error is retried until it succeeds or the heartbeat
/// lapses (the reaper then runs the job again). Answers whether the delivery may be acked: false
/// when the write that ended the operation was not confirmed by a replica.
pub(super) async fn record(
    shared: &Shared,
    name: &OperationName,
    attempt: u32,
    Ended {
        outcome,
        forced,
        progress,
    }: Ended,
    stop: &Stop,
) -> bool {
    let store = &shared.store;
    let mut pause = Duration::from_millis(50);
    let mut cancel_recorded = None;
    let recorded = |_| Settled::Recorded;
    let settled = loop {
        let now = now_millis();
        let written = match &outcome {
            Outcome::Abandon => {
                give_up(shared, name, attempt, now).await;
                break Settled::Recorded;
            }
            // The owned-set entry goes with the write that ends the operation, in one script.
            Outcome::Terminal(t) => store
                .update(name, |op| {
                    cancel_recorded = op.cancel_requested;
                    if let Some(p) = &progress {
                        op.report_progress(attempt, p.clone(), now)?;
                    }
                    if forced {
                        op.finish_forced(attempt, t.clone(), now)
                    } else {
                        op.finish(attempt, t.clone(), now)
                    }
                })
                .await
                .map(|_| {
                    // Cancel recorded (by the api) → this job's token fired (here).
                    if let (Some(recorded), Some(fired)) =
                        (cancel_recorded, stop.cancelled_by_user_at())
                    {
                        let latency = Duration::from_millis(fired.saturating_sub(recorded));
                        shared.metrics.cancel_latency(latency);
                    }
                    Settled::Recorded
                }),
            Outcome::HandBack => hand_back(shared, name, attempt, now).await.map(recorded),
            Outcome::Retry(status) => retry(shared, name, attempt, status, now)
                .await
                .map(recorded),
        };
        match written {
            Ok(settled) => break settled,
            Err(StoreError::NotFound) => {
                tracing::debug!("operation was deleted while it ran");
                if let Err(e) = store.disown(&shared.worker_id, name).await {
                    tracing::debug!(error = %e, "owned entry left for the reconcile");
                }
                break Settled::Recorded;
            }
            Err(e @ StoreError::NotReplicated { .. }) => {
                // Written: writing again would be refused as done. Whether it survives is up to
                // its master; the redelivery (or the reconcile) covers the case it does not.
                tracing::warn!(error = %e, "outcome recorded unconfirmed; delivery requeued");
                break Settled::Unconfirmed;
            }
            Err(StoreError::Refused(Refused::NotRunning)) if store.replicas() > 0 => {
                // QUEUED, though this attempt started: the start was lost with its master (or a
                // reaper queued it again, and published it: the copy is then refused as running).
                tracing::warn!("outcome not recorded: not running; delivery requeued");
                break Settled::Unconfirmed;
            }
            Err(StoreError::Refused(r)) => {
                // Done already, or a newer attempt owns it: this attempt's result is not recorded.
                tracing::info!(refused = %r, "outcome not recorded");
                break Settled::Recorded;
            }
            Err(e) if stop.reason() == Some(CancelReason::LeaseLost) => {
                tracing::warn!(error = %e, "could not record outcome before the heartbeat lapsed");
                break Settled::Recorded;
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not record outcome; retrying");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(2));
            }
        }
    };
    settled != Settled::Unconfirmed
}

/// Gives the attempt up without an outcome (the heartbeat lapsed, so a reaper is losing this
/// worker's attempts): lost, fenced by its number, unless a reaper (or a newer attempt) was
/// first. A failure is left to the reconcile, which finds the attempt recorded here and no job
/// running it.
async fn give_up(shared: &Shared, name: &OperationName, attempt: u32, now: Millis) {
    let mine = |op: &lro_common::operation::Operation| {
        (op.held_by(&shared.worker_id) == Some(attempt)).then_some(attempt)
    };
    match lro_common::lose::lose(&shared.store, &shared.publisher, name, mine, now).await {
        Ok(Some(lost)) => tracing::info!(?lost, "heartbeat lapsed: attempt given up"),
        Ok(None) => tracing::info!("heartbeat lapsed: attempt already lost"),
        Err(e) => tracing::warn!(error = %e, "heartbeat lapsed: attempt left for the reconcile"),
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
