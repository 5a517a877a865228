//! Guarded publishing: how an operation made QUEUED in Redis is sure to reach the jobs queue even
//! if its process dies between the Redis write and the broker's confirm.
//!
//! Two steps. Before (or with) the write that queues the operation, arm its publish guard: an
//! entry on [`Watch::Unpublished`] due [`REPUBLISH_AFTER`] later. After the write, publish the job
//! message and, once the broker confirmed it, drop the guard ([`publish`]). A guard still armed
//! when it falls due means step two never completed; a reaper then publishes the job itself
//! ([`crate::reaper`]). Submits, retries, hand-backs and the reaper's own re-queues all go
//! through here; this module never looks at due guards, which is the reaper's part.

use std::time::Duration;

use crate::broker::{AmqpError, Broker};
use crate::name::OperationName;
use crate::operation::Operation;
use crate::store::{Store, StoreError, Watch};
use crate::time::{Millis, millis, now_millis};
use crate::trace::TraceContext;

/// How long a queueing write may wait for its publish to be confirmed before a reaper publishes
/// the job itself.
pub const REPUBLISH_AFTER: Duration = Duration::from_secs(10);

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
