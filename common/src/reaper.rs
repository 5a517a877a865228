//! Recovery: nothing accepted is left stranded when a process dies at the wrong moment.
//!
//! It also deletes done operations once their retention has passed (see [`Watch::Retention`]).
//!
//! Two failures leave an operation that nobody will move on its own:
//! - its worker died or was cut off while running it (the job's delivery was acked at start, so
//!   the broker will not redeliver it): the attempt's lease in Redis runs out;
//! - a process made it QUEUED in Redis and died before the broker confirmed its job message.
//!
//! Every path that starts or queues an operation first arms an entry on a watch list
//! ([`Watch::Leases`] before a start, [`Watch::Unpublished`] before a queueing write), and removes
//! it once the operation no longer needs watching. A reaper runs in every api and worker process
//! and looks at due entries each tick. Every action it takes is a compare-and-set transition
//! ([`Operation::expire`](crate::operation::Operation::expire)) or an idempotent re-publish, so
//! any number of reapers may run at once: two reapers expiring one lease race on the CAS and only
//! the winner publishes; a duplicate job message is harmless (a worker's `start` refuses an
//! operation that is done or held under a live lease).

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::broker::{AmqpError, Broker};
use crate::metrics::ReaperMetrics;
use crate::name::OperationName;
use crate::operation::{Expired, Operation, Refused};
use crate::store::{Store, StoreError, Watch};
use crate::time::{Millis, now_millis};
use crate::trace::TraceContext;

/// How long a queueing write may wait for its publish to be confirmed before a reaper publishes
/// the job itself.
pub const REPUBLISH_AFTER: Duration = Duration::from_secs(10);

/// Entries handled per watch list per tick.
const BATCH: usize = 200;

/// Step one of queueing an operation, before the Redis write that makes it QUEUED: arm the
/// guard that re-publishes it if step two never completes.
pub async fn guard_publish(store: &Store, name: &OperationName) -> Result<Millis, StoreError> {
    let at = now_millis() + millis(REPUBLISH_AFTER);
    guard_retry(store, name, at).await?;
    Ok(at)
}

/// Step one of submitting a new operation: the publish guard, and its retention watch if it has a
/// retention, for [`Store::create`] to arm in the same step as the write. Returns the guard's
/// time (for [`publish`]) and the entries.
pub fn guards_for_new(op: &Operation) -> (Millis, Vec<(Watch, Millis)>) {
    let now = now_millis();
    let guarded_at = now + millis(REPUBLISH_AFTER);
    let mut lists = vec![(Watch::Unpublished, guarded_at)];
    if let Some(retention) = op.retention_ms {
        lists.push((Watch::Retention, now.saturating_add(retention)));
    }
    (guarded_at, lists)
}

/// Arms the publish guard for `at` (a retry: when its backoff is over), before the write
/// that queues it again.
pub async fn guard_retry(
    store: &Store,
    name: &OperationName,
    at: Millis,
) -> Result<(), StoreError> {
    // Moved, not "no later than": an older entry may be in a reaper's hands right now, about to
    // be removed on the strength of the score it read; a new score keeps this guard alive.
    store.rearm(Watch::Unpublished, name, at).await
}

/// Step two, after the write: publish the job message (with the submit's `trace`, if any) and,
/// once the broker confirmed it, drop the guard armed at `guarded_at`. A failure to drop the
/// guard only costs a later duplicate message.
pub async fn publish(
    store: &Store,
    publisher: &Broker,
    name: &OperationName,
    guarded_at: Millis,
    trace: Option<&TraceContext>,
) -> Result<(), AmqpError> {
    publisher.publish_job(name, trace).await?;
    if let Err(e) = store.unwatch(Watch::Unpublished, name, guarded_at).await {
        tracing::debug!(operation = %name, error = %e, "publish guard left armed");
    }
    Ok(())
}

/// What one sweep did, for logs and tests.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Swept {
    /// Expired leases whose operation was queued again and re-published.
    pub requeued: usize,
    /// Expired leases whose operation ended (cancel on record, or attempts spent).
    pub ended: usize,
    /// Queued operations whose publish was never confirmed, published now.
    pub republished: usize,
    /// Done operations past their retention, deleted.
    pub deleted: usize,
}

/// Sweeps every `tick` until `shutdown`, counting what it did in `metrics`.
pub async fn run(
    store: Store,
    publisher: Broker,
    tick: Duration,
    shutdown: CancellationToken,
    metrics: ReaperMetrics,
) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(tick) => {}
        }
        match sweep(&store, &publisher, now_millis()).await {
            Ok(swept) if swept != Swept::default() => {
                metrics.record(&swept);
                tracing::info!(?swept, "reaper");
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "reaper sweep failed; retrying next tick"),
        }
    }
}

/// Looks at every due watch-list entry once.
pub async fn sweep(store: &Store, publisher: &Broker, now: Millis) -> Result<Swept, StoreError> {
    let mut swept = Swept::default();
    for (name, due) in store.due(Watch::Leases, now, BATCH).await? {
        // Guarded before the write when it would requeue: if this reaper dies between requeueing
        // the operation and publishing it, another one publishes it. (Only then: a guard armed
        // anew would postpone a retry's.)
        let would_requeue = match store.get(&name).await {
            Ok(mut op) => op.expire(now) == Ok(Expired::Requeued),
            Err(StoreError::NotFound) => false,
            Err(e) => return Err(e),
        };
        let guarded_at = if would_requeue {
            Some(guard_publish(store, &name).await?)
        } else {
            None
        };
        // A lease entry goes only with a done or deleted operation: an operation that may start
        // again keeps its entry (a start arms it "no later than", so never postpones it).
        let later = now + millis(REPUBLISH_AFTER);
        match store.update(&name, |op| op.expire(now)).await {
            Ok((_, Expired::Requeued)) => {
                tracing::info!(operation = %name, "lease expired: queued again");
                store
                    .rewatch(Watch::Leases, &name, due, Some(later))
                    .await?;
                // A failed publish is repaired by the guard on a later tick. (Requeued without a
                // guard: the record changed between the look and the write; guard it now.)
                let guarded_at = match guarded_at {
                    Some(at) => at,
                    None => guard_publish(store, &name).await?,
                };
                if let Err(e) = publish(store, publisher, &name, guarded_at, None).await {
                    tracing::warn!(operation = %name, error = %e, "re-publish failed");
                }
                swept.requeued += 1;
            }
            Ok((_, Expired::Cancelled | Expired::Failed)) => {
                tracing::info!(operation = %name, "lease expired: ended");
                store.unwatch(Watch::Leases, &name, due).await?;
                swept.ended += 1;
            }
            // Renewed meanwhile: look again when the new lease ends.
            Err(StoreError::Refused(Refused::Held { until, .. })) => {
                store
                    .rewatch(Watch::Leases, &name, due, Some(until))
                    .await?;
            }
            // Queued (a start in flight, or handed back and published): look again later (a
            // worker that starts it re-arms the entry for its lease); done or deleted: nothing
            // left to watch.
            Err(StoreError::Refused(Refused::NotRunning)) => {
                store
                    .rewatch(Watch::Leases, &name, due, Some(later))
                    .await?;
            }
            Err(StoreError::Refused(_) | StoreError::NotFound) => {
                store.unwatch(Watch::Leases, &name, due).await?;
            }
            Err(e) => return Err(e),
        }
    }
    for (name, due) in store.due(Watch::Unpublished, now, BATCH).await? {
        let queued = match store.get(&name).await {
            Ok(op) if op.state() == crate::operation::State::Queued => {
                // A retry's backoff is not over yet: publish it when it is.
                if let Some(at) = op.not_before.filter(|&at| at > now) {
                    store
                        .rewatch(Watch::Unpublished, &name, due, Some(at))
                        .await?;
                    continue;
                }
                true
            }
            Ok(_) | Err(StoreError::NotFound) => false,
            Err(e) => return Err(e),
        };
        if queued {
            tracing::info!(operation = %name, "publish never confirmed: publishing");
            if let Err(e) = publisher.publish_job(&name, None).await {
                tracing::warn!(operation = %name, error = %e, "re-publish failed");
                continue;
            }
            swept.republished += 1;
        }
        store.unwatch(Watch::Unpublished, &name, due).await?;
    }
    for (name, due) in store.due(Watch::Retention, now, BATCH).await? {
        let op = match store.get(&name).await {
            Ok(op) => op,
            Err(StoreError::NotFound) => {
                store.unwatch(Watch::Retention, &name, due).await?;
                continue;
            }
            Err(e) => return Err(e),
        };
        match (op.expires_at(), op.retention_ms) {
            (Some(at), _) if at <= now => {
                // Deleted with its index and request-id entries, in one script.
                if store.delete(&name).await? {
                    swept.deleted += 1;
                }
                store.unwatch(Watch::Retention, &name, due).await?;
            }
            (Some(at), _) => {
                store
                    .rewatch(Watch::Retention, &name, due, Some(at))
                    .await?
            }
            // Not done yet: look again a retention later (it can only expire after it ends).
            (None, Some(retention)) => {
                let later = now.saturating_add(retention);
                store
                    .rewatch(Watch::Retention, &name, due, Some(later))
                    .await?;
            }
            (None, None) => store.unwatch(Watch::Retention, &name, due).await?,
        }
    }
    Ok(swept)
}

fn millis(d: Duration) -> Millis {
    Millis::try_from(d.as_millis()).unwrap_or(Millis::MAX)
}
