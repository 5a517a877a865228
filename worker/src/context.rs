//! What a running job can see and do: its [`JobContext`] — its name and attempt, its token and
//! why it fired, and its progress reports (coalesced: a job may report as often as it likes).

use std::time::{Duration, Instant};

use lro_common::broker::Broker;
use lro_common::name::OperationName;
use lro_common::operation::Progress;
use lro_common::store::Store;
use lro_common::time::now_millis;
use tokio_util::sync::CancellationToken;

use crate::registry::{CancelReason, Stop};

/// What a running job can see and do.
#[derive(Clone)]
pub struct JobContext {
    name: OperationName,
    attempt: u32,
    stop: Stop,
    store: std::sync::Arc<Store>,
    /// For the built-in kinds that talk to other workers (a batch cancel's cancel messages).
    broker: Broker,
}

/// Progress reports closer together than this are coalesced: the latest one is written when the
/// interval is over (or with the outcome, if the job ends first), the ones before it never.
pub(crate) const PROGRESS_INTERVAL: Duration = Duration::from_millis(250);

impl JobContext {
    pub(crate) fn new(
        name: OperationName,
        attempt: u32,
        stop: Stop,
        store: std::sync::Arc<Store>,
        broker: Broker,
    ) -> Self {
        Self {
            name,
            attempt,
            stop,
            store,
            broker,
        }
    }

    pub(crate) fn store(&self) -> &Store {
        &self.store
    }

    pub(crate) fn broker(&self) -> &Broker {
        &self.broker
    }

    pub fn name(&self) -> &OperationName {
        &self.name
    }

    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// Resolves when the job should stop (cancel, deadline or shutdown).
    pub async fn cancelled(&self) {
        self.stop.token().cancelled().await;
    }

    pub fn is_cancelled(&self) -> bool {
        self.stop.token().is_cancelled()
    }

    /// The token itself, for work off the async threads (`spawn_blocking`).
    pub fn token(&self) -> CancellationToken {
        self.stop.token().clone()
    }

    /// Why the token fired, once it has.
    pub fn cancel_reason(&self) -> Option<CancelReason> {
        self.stop.reason()
    }

    /// Records progress on the operation. Best effort: a failed write is logged, not returned,
    /// and a stale attempt's progress is refused by the store. Reports closer together than
    /// [`PROGRESS_INTERVAL`] are coalesced: only the latest is written, at the end of the interval
    /// (so a job may report as often as it likes; Redis sees at most four writes a second).
    pub async fn progress(&self, percent: u32, message: impl Into<String>) {
        let progress = Progress {
            percent,
            message: message.into(),
        };
        let now = Instant::now();
        {
            let mut reports = self.stop.reports();
            let next = reports.last.map(|last| last + PROGRESS_INTERVAL);
            if let Some(next) = next.filter(|&next| next > now) {
                reports.pending = Some(progress);
                if !reports.flushing {
                    reports.flushing = true;
                    tokio::spawn(self.clone().flush_at(next));
                }
                return;
            }
            reports.last = Some(now);
            reports.pending = None;
        }
        self.write_progress(progress).await;
    }

    /// Writes the report pending at `at`, if the outcome did not take it first.
    async fn flush_at(self, at: Instant) {
        tokio::time::sleep_until(at.into()).await;
        let pending = {
            let mut reports = self.stop.reports();
            reports.flushing = false;
            reports.last = Some(Instant::now());
            reports.pending.take()
        };
        if let Some(progress) = pending {
            self.write_progress(progress).await;
        }
    }

    async fn write_progress(&self, progress: Progress) {
        // Boxed: a job's future is as large as its largest step, and holds that space for the
        // job's whole life; unboxed, this Redis call would add ~2 KiB to every job that reports.
        let result = Box::pin(self.store.update(&self.name, |op| {
            op.report_progress(self.attempt, progress.clone(), now_millis())
        }))
        .await;
        if let Err(e) = result {
            tracing::debug!(error = %e, "progress not recorded");
        }
    }
}

/// The report a job left unwritten when it returned, for its outcome's write.
pub(crate) fn take_pending(stop: &Stop) -> Option<Progress> {
    stop.reports().pending.take()
}
