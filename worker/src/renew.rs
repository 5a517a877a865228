//! Lease renewals: while its job runs, each started attempt's lease in Redis is renewed once a
//! third of it has passed, and the renewal re-reads the cancel request, so a cancel whose message
//! was lost still reaches the job. Runs beside the consumer loop, not in it.
//!
//! It never records an outcome: a lost lease only fires the job's token
//! ([`CancelReason::LeaseLost`]), and the job's own task decides what that means.

use std::sync::Arc;

use futures_util::StreamExt;
use lro_common::store::{StoreError, Watch, WatchEffect};
use lro_common::time::{Millis, now_millis};
use tokio_util::sync::CancellationToken;

use crate::consumer::Shared;
use crate::registry::CancelReason;

/// Lease renewals in flight at once, per worker.
const RENEW_CONCURRENCY: usize = 64;

/// Renews the lease of every started job every third of a lease, until `stopped` fires (once
/// the consumer loop has returned: shutdown began and every job has settled). A renewal also re-reads the cancel request, so a cancel whose message was lost
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
