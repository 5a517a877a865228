//! Dead workers: the reaper that claims a worker whose heartbeat expired (`{ns}:reaping:…`, which
//! also condemns its entry, so that worker's heartbeat is refused from then on: if it was only
//! paused or cut off, it stops its jobs when it comes back) loses every attempt its owned sets
//! name, bucket by bucket, then removes its entry and inbox — only then may a worker of that name
//! register again.
//! A failure part-way leaves the entry in place, so the next tick (or another reaper, once the
//! claim has run out) does it again; every loss is fenced by its attempt, so doing it twice
//! changes nothing.

use std::time::Duration;

use futures_util::StreamExt;

use super::Swept;
use crate::broker::Broker;
use crate::lose::lose;
use crate::operation::Expired;
use crate::store::{Bucket, Store, StoreError};
use crate::time::Millis;

/// Dead workers looked at per tick.
const WORKERS_PER_TICK: usize = 16;
/// Attempts lost at once (each a few Redis round trips).
const CONCURRENCY: usize = 32;

/// Loses the attempts of each worker whose heartbeat expired before `now` and that this reaper
/// can claim for `hold`, then forgets the worker.
pub async fn reap_workers(
    store: &Store,
    publisher: &Broker,
    now: Millis,
    hold: Duration,
) -> Result<Swept, StoreError> {
    let mut swept = Swept::default();
    for worker in store.expired_workers(now, WORKERS_PER_TICK).await? {
        if !store.claim_reaping(&worker, now, hold).await? {
            continue;
        }
        tracing::warn!(%worker, "worker's heartbeat expired: losing its attempts");
        for bucket in Bucket::all() {
            let names = store.owned(bucket, &worker).await?;
            let outcomes: Vec<_> = futures_util::stream::iter(names)
                .map(|name| {
                    let worker = worker.as_str();
                    async move {
                        let lost =
                            lose(store, publisher, &name, |op| op.held_by(worker), now).await?;
                        // A write that moves an operation off a worker removes it from the set;
                        // a deleted one is dropped here.
                        if lost.is_none() {
                            forget_if_deleted(store, worker, &name).await?;
                        }
                        Ok::<_, StoreError>(lost)
                    }
                })
                .buffer_unordered(CONCURRENCY)
                .collect()
                .await;
            for outcome in outcomes {
                match outcome? {
                    Some(Expired::Requeued) => swept.requeued += 1,
                    Some(Expired::Cancelled | Expired::Failed) => swept.ended += 1,
                    None => {}
                }
            }
        }
        store.forget_worker(&worker).await?;
    }
    Ok(swept)
}

/// Drops `name` from `worker`'s owned set if its record is gone (a delete leaves the set as it
/// was). A record that exists keeps its member: only the write that moves it off the worker
/// removes it, so a start racing this look is never forgotten.
pub async fn forget_if_deleted(
    store: &Store,
    worker: &str,
    name: &crate::name::OperationName,
) -> Result<(), StoreError> {
    match store.get(name).await {
        Err(StoreError::NotFound) => store.disown(worker, name).await,
        Ok(_) => Ok(()),
        Err(e) => Err(e),
    }
}
