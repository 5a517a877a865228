//! The worker's heartbeat: one Redis script every third of the lease, whatever the number of
//! running jobs, that keeps this worker's entry alive and drains its cancel inbox. Runs beside the
//! consumer loop, not in it.
//!
//! - **Alive.** While beats succeed, jobs may start ([`Liveness`] opens the gate) and a cancel
//!   found in the inbox fires its job's token (a cancel whose message was lost arrives here,
//!   within a beat).
//! - **Lapsed.** A beat that finds the entry condemned or removed (the process was paused, or cut
//!   off from Redis, past its lease, and a reaper took it for dead) means a reaper is losing — or
//!   has lost — this worker's attempts: every job's token fires ([`CancelReason::LeaseLost`]),
//!   the gate closes, and each job gives its attempt up fenced by its number
//!   (`consumer::outcome`). The worker registers again once a reaper has removed the entry.
//!   While beats fail (Redis unreachable) jobs run on and the beat is retried every 0.2 s: an
//!   entry that expired meanwhile but was not condemned is simply extended (a reaper gives
//!   workers a grace after the list was unreachable), so a Redis failover that outlasts the
//!   lease does not stop every job; a worker cut off alone is condemned, and stops its jobs
//!   when it reaches Redis again (its writes are fenced meanwhile).
//! - **Reconciled.** What Redis says this worker runs (its owned sets) is compared with the
//!   registry at the first beat, after a lapse, when a start's reply was lost (the start may have
//!   been applied), and every [`RECONCILE_EVERY`]: an attempt recorded on this worker that no job
//!   here runs is lost at once ([`lro_common::lose`]), so a live worker is never left recorded as
//!   running what it does not run.
//!
//! It never records an outcome.

use std::sync::Arc;
use std::time::{Duration, Instant};

use lro_common::lose::lose;
use lro_common::reaper::forget_if_deleted;
use lro_common::store::{Beat, Bucket};
use lro_common::time::now_millis;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::consumer::Shared;
use crate::registry::CancelReason;

/// How soon a failed beat is tried again.
const RETRY: Duration = Duration::from_millis(200);

/// How often the owned sets are compared with the registry when nothing asks for it sooner.
pub(crate) const RECONCILE_EVERY: Duration = Duration::from_secs(30);

/// Whether this worker's heartbeat holds: jobs start only while it does.
pub(crate) struct Liveness {
    live: watch::Sender<bool>,
}

impl Liveness {
    pub(crate) fn new() -> Self {
        Self {
            live: watch::Sender::new(false),
        }
    }

    /// Waits until the heartbeat holds (at once, if it does).
    pub(crate) async fn alive(&self) {
        let mut rx = self.live.subscribe();
        // The sender lives in `Shared`, as long as any job: this only fails if it is gone.
        let _ = rx.wait_for(|&live| live).await;
    }

    /// Records whether the heartbeat holds; whether it held before.
    fn set(&self, live: bool) -> bool {
        self.live.send_replace(live)
    }
}

/// Beats every third of the lease until `stopped` fires (once the consumer loop has returned:
/// shutdown began and every job has settled).
pub(crate) async fn run(shared: Arc<Shared>, stopped: CancellationToken) {
    let interval = shared.lease / 3;
    let mut register = true;
    let mut reconcile_at = Instant::now();
    loop {
        let until = shared.lease_from(now_millis());
        let mut pause = interval;
        match shared
            .store
            .heartbeat(&shared.worker_id, until, register)
            .await
        {
            Ok(Beat::Live(cancels)) => {
                register = false;
                if !shared.liveness.set(true) {
                    tracing::info!(worker = %shared.worker_id, "heartbeat holds: taking jobs");
                }
                for name in cancels {
                    if shared.registry.cancel(&name, CancelReason::User) {
                        tracing::info!(operation = %name, "cancel found in the inbox");
                    }
                }
                if Instant::now() >= reconcile_at {
                    reconcile(&shared).await;
                    reconcile_at = Instant::now() + RECONCILE_EVERY;
                }
            }
            Ok(Beat::Condemned) => lapse(&shared, "heartbeat condemned by a reaper"),
            Ok(Beat::Gone) => {
                lapse(&shared, "heartbeat removed by a reaper");
                // Its attempts are lost: register again now, and reconcile once it holds.
                register = true;
                pause = Duration::ZERO;
                reconcile_at = Instant::now();
            }
            Err(e) => {
                tracing::warn!(error = %e, "heartbeat failed; retrying");
                pause = pause.min(RETRY);
            }
        }
        tokio::select! {
            () = stopped.cancelled() => return,
            () = tokio::time::sleep(pause) => {}
            () = shared.reconcile.notified() => reconcile_at = Instant::now(),
        }
    }
}

/// The heartbeat no longer holds: a reaper loses (or has lost) every attempt of this worker, so
/// every job stops, and none starts until it holds again.
fn lapse(shared: &Shared, why: &str) {
    if shared.liveness.set(false) {
        let stopped = shared.registry.cancel_all(CancelReason::LeaseLost);
        tracing::warn!(worker = %shared.worker_id, stopped, why, "heartbeat lapsed: stopping every job");
    }
}

/// Loses every attempt Redis records on this worker that no job here runs (a start whose reply
/// was lost, an attempt of an earlier process with this id, a give-up that failed).
async fn reconcile(shared: &Shared) {
    let (store, registry, me) = (&shared.store, &shared.registry, shared.worker_id.as_str());
    for bucket in Bucket::all() {
        let names = match store.owned(bucket, me).await {
            Ok(names) => names,
            Err(e) => {
                tracing::warn!(error = %e, "reconcile failed; retrying later");
                shared.reconcile.notify_one();
                return;
            }
        };
        for name in names.iter().filter(|n| !registry.holds(n)) {
            // Looked at again inside the compare-and-set: a job registered since (its start is
            // then in flight or made) keeps its attempt.
            let attempt_of = |op: &lro_common::operation::Operation| {
                if registry.holds(name) {
                    None
                } else {
                    op.held_by(me)
                }
            };
            match lose(store, &shared.publisher, name, attempt_of, now_millis()).await {
                Ok(Some(lost)) => {
                    tracing::warn!(operation = %name, ?lost, "orphaned attempt given up");
                }
                Ok(None) => {
                    if let Err(e) = forget_if_deleted(store, me, name).await {
                        tracing::debug!(operation = %name, error = %e, "owned entry left");
                    }
                }
                Err(e) => tracing::warn!(operation = %name, error = %e, "could not give up"),
            }
        }
    }
}
