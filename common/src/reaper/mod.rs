//! Recovery: nothing accepted is left stranded when a process dies at the wrong moment. A reaper
//! runs in every api and worker process and, each tick, first loses the attempts of every worker
//! whose heartbeat expired (`workers.rs`), then looks at the due entries of the watch lists
//! ([`crate::store::Watch`]) of every bucket it can claim for that tick: the lists are per
//! [`Bucket`], and one claim per bucket (`{ns}:reaper:{B}`) means that however many processes run,
//! each bucket's entries are looked at once per claim, by one of them.
//!
//! Three failures leave an operation that nobody will move on its own:
//! - its worker died, hung or was cut off while running it. A running attempt is held by its
//!   worker's heartbeat, not by the delivery: a copy the broker redelivers is skipped (`start`
//!   refuses a RUNNING operation, and the copy is acked), and a hung worker's delivery is not
//!   redelivered at all. So once a worker's heartbeat has expired, the reaper loses each attempt
//!   its owned sets name ([`crate::lose`]): queued again and re-published, or ended;
//! - a process made it QUEUED in Redis and died before the broker confirmed its job message: the
//!   reaper publishes it once its publish guard falls due ([`Watch::Unpublished`]). Arming and
//!   dropping guards is [`crate::publish`]'s; the reaper uses it for its own re-queues;
//! - the api recorded a cancel and died before writing it to the worker's inbox: the reaper writes
//!   it there when the cancel's backstop entry falls due ([`Watch::Cancels`]).
//!
//! It also deletes done operations once their retention has passed ([`Watch::Retention`]).
//!
//! Every action it takes is a compare-and-set transition
//! ([`Operation::lose`](crate::operation::Operation::lose), fenced by the attempt) or an
//! idempotent re-publish or inbox write, so any number of reapers may run at once: two reapers
//! losing one attempt race on the CAS and only the winner publishes; a duplicate job message is
//! harmless (a worker's `start` refuses an operation that is done or running). An entry it is
//! done with is removed only if still armed for the time it read, so an entry armed anew
//! meanwhile survives.

mod workers;

use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::broker::Broker;
use crate::metrics::ReaperMetrics;
use crate::store::{BUCKETS, Bucket, Store, StoreError, Watch};
use crate::time::{Millis, now_millis};
pub use workers::{forget_if_deleted, reap_workers};

/// After the workers' list was unreachable (a Redis failover), how long a reaper leaves the
/// workers to beat again before it takes any for dead: their entries may have expired meanwhile,
/// and a worker's heartbeat retries every 0.2 s while it fails.
const WORKERS_GRACE: Duration = Duration::from_secs(2);

/// Entries handled per watch list per bucket per tick.
const BATCH: usize = 200;

/// What one sweep did, for logs and tests.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Swept {
    /// Attempts of dead workers whose operation was queued again and re-published.
    pub requeued: usize,
    /// Attempts of dead workers whose operation ended (cancel on record, or attempts spent).
    pub ended: usize,
    /// Queued operations whose publish was never confirmed, published now.
    pub republished: usize,
    /// Done operations past their retention, deleted.
    pub deleted: usize,
}

/// Sweeps every `tick` until `shutdown`, counting what it did in `metrics`. Each tick it walks
/// every bucket from a random one on, and sweeps those it can claim for a tick
/// ([`Store::claim_sweep`]): with many processes, each bucket's sweep is done by one of them per
/// claim, and reapers that tick together share the buckets out.
pub async fn run(
    store: Store,
    publisher: Broker,
    tick: Duration,
    shutdown: CancellationToken,
    metrics: ReaperMetrics,
) {
    // Whether the workers' list failed to answer, and when dead workers may be reaped again.
    let mut blind = false;
    let mut reap_after = Instant::now();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(tick) => {}
        }
        if Instant::now() >= reap_after {
            if blind {
                // The workers' list answers again: give the workers a grace to beat before any
                // of them is taken for dead (their entries may have expired during the outage).
                if store.expired_workers(now_millis(), 1).await.is_ok() {
                    blind = false;
                    reap_after = Instant::now() + WORKERS_GRACE;
                }
            } else {
                // A reaping claim outlives the tick: losing many attempts takes longer.
                match reap_workers(&store, &publisher, now_millis(), tick * 30).await {
                    Ok(swept) if swept != Swept::default() => {
                        metrics.record(&swept);
                        tracing::info!(?swept, "reaper: dead workers");
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "reaping dead workers failed; retrying");
                        blind = true;
                    }
                }
            }
        }
        let start = usize::from(uuid::Uuid::new_v4().as_bytes()[0]) % usize::from(BUCKETS);
        for bucket in Bucket::all().cycle().skip(start).take(usize::from(BUCKETS)) {
            let swept = match store.claim_sweep(bucket, tick).await {
                Ok(true) => sweep_bucket(&store, &publisher, bucket, now_millis()).await,
                Ok(false) => continue,
                Err(e) => Err(e),
            };
            match swept {
                Ok(swept) if swept != Swept::default() => {
                    metrics.record(&swept);
                    tracing::info!(?swept, bucket = bucket.index(), "reaper");
                }
                Ok(_) => {}
                // Another bucket may be on a master that answers: go on with it.
                Err(e) => tracing::warn!(
                    bucket = bucket.index(),
                    error = %e,
                    "reaper sweep failed; retrying next tick"
                ),
            }
        }
    }
}

/// Loses the attempts of every dead worker, then looks at every due watch-list entry of every
/// bucket once, claimed or not (for tests and tools: the running reaper sweeps the buckets it
/// claims).
pub async fn sweep(store: &Store, publisher: &Broker, now: Millis) -> Result<Swept, StoreError> {
    let mut swept = reap_workers(store, publisher, now, Duration::from_secs(30)).await?;
    for bucket in Bucket::all() {
        let s = sweep_bucket(store, publisher, bucket, now).await?;
        swept.requeued += s.requeued;
        swept.ended += s.ended;
        swept.republished += s.republished;
        swept.deleted += s.deleted;
    }
    Ok(swept)
}

/// Looks at every due entry of `bucket`'s watch lists once.
pub async fn sweep_bucket(
    store: &Store,
    publisher: &Broker,
    bucket: Bucket,
    now: Millis,
) -> Result<Swept, StoreError> {
    let mut swept = Swept::default();
    for (name, due) in store.due_in(Watch::Cancels, bucket, now, BATCH).await? {
        // Still running with its cancel on record: its worker's inbox gets it (again: the api
        // wrote it there unless it died first; a second copy is harmless).
        match store.get(&name).await {
            Ok(op) if op.state() == crate::operation::State::Cancelling => {
                if let Some(run) = op.run() {
                    store.send_to_inbox(&run.worker, &name).await?;
                }
            }
            Ok(_) | Err(StoreError::NotFound) => {}
            Err(e) => return Err(e),
        }
        store.unwatch(Watch::Cancels, &name, due).await?;
    }
    for (name, due) in store.due_in(Watch::Unpublished, bucket, now, BATCH).await? {
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
    for (name, due) in store.due_in(Watch::Retention, bucket, now, BATCH).await? {
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
