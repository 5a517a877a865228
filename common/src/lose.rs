//! Losing an attempt: the one way an attempt that will record no outcome is taken off its
//! operation — by a reaper, for a worker whose heartbeat expired, and by a worker, for an attempt
//! it stopped without an outcome (its heartbeat lapsed) or one Redis says it runs but it does not.
//!
//! The transition is [`Operation::lose`], a compare-and-set fenced by the attempt: it applies only
//! while that very attempt runs, so a reaper and the worker (or two reapers) losing the same
//! attempt change the record once, and only the winner re-publishes. A lost attempt is queued
//! again — guarded before the write, so a crash before the publish is repaired by a reaper — or
//! ends CANCELLED (a cancel on record) or FAILED (attempts spent).

use crate::broker::Broker;
use crate::name::OperationName;
use crate::operation::{Expired, Operation};
use crate::publish::{guard_publish, publish};
use crate::store::{Store, StoreError};
use crate::time::Millis;

/// Loses the attempt `attempt_of` picks from the record (none: there is nothing to lose, e.g.
/// the operation no longer runs on that worker), re-publishing it if it is queued again. Answers
/// what became of it, or `None` if the record had no such attempt (or is gone).
pub async fn lose(
    store: &Store,
    publisher: &Broker,
    name: &OperationName,
    attempt_of: impl Fn(&Operation) -> Option<u32>,
    now: Millis,
) -> Result<Option<Expired>, StoreError> {
    // Guarded before the write when it would requeue: if this process dies between requeueing the
    // operation and publishing it, a reaper publishes it. (Only then: a guard armed anew would
    // postpone a retry's.)
    let would_requeue = match store.get(name).await {
        Ok(op) => attempt_of(&op).is_some_and(|a| op.clone().lose(a, now) == Ok(Expired::Requeued)),
        Err(StoreError::NotFound) => return Ok(None),
        Err(e) => return Err(e),
    };
    let guarded_at = if would_requeue {
        Some(guard_publish(store, name).await?)
    } else {
        None
    };
    let lost = store
        .update(name, |op| {
            let attempt = attempt_of(op).ok_or(crate::operation::Refused::NotRunning)?;
            op.lose(attempt, now)
        })
        .await;
    match lost {
        Ok((_, Expired::Requeued)) => {
            tracing::info!(operation = %name, "attempt lost: queued again");
            // Requeued without a guard: the record changed between the look and the write.
            let guarded_at = match guarded_at {
                Some(at) => at,
                None => guard_publish(store, name).await?,
            };
            // A failed publish is repaired by the guard on a later tick.
            if let Err(e) = publish(store, publisher, name, guarded_at, None).await {
                tracing::warn!(operation = %name, error = %e, "re-publish failed");
            }
            Ok(Some(Expired::Requeued))
        }
        Ok((_, ended)) => {
            tracing::info!(operation = %name, ?ended, "attempt lost: ended");
            Ok(Some(ended))
        }
        Err(StoreError::Refused(_) | StoreError::NotFound) => Ok(None),
        Err(e) => Err(e),
    }
}
