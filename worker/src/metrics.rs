//! The worker's metrics, on its own [`Registry`] (one per [`crate::Worker`]; see
//! `lro_common::metrics` for why not the global recorder): jobs running, attempts finished by
//! kind and outcome, job durations, time spent queued, and cancel latency.
//!
//! Every kind the worker runs gets its handles when the worker starts, so recording a job's
//! figures is a map lookup by `&str` and atomic updates; a kind no one here runs (its job is
//! dead-lettered) is registered when first seen.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::Duration;

use lro_common::metrics::Registry;
use metrics::{Counter, Gauge, Histogram};

/// How one attempt ended, for `lro_jobs_finished_total{outcome}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Finished {
    Succeeded,
    /// Failed, retryably or not (a retry runs again as a new attempt).
    Failed,
    Cancelled,
    /// Stopped by a shutdown: queued again, to run elsewhere.
    HandedBack,
    /// Another attempt owns the operation: nothing of this one recorded.
    LeaseLost,
}

const OUTCOMES: [&str; 5] = [
    "succeeded",
    "failed",
    "cancelled",
    "handed_back",
    "lease_lost",
];

struct KindMetrics {
    finished: [Counter; 5],
    duration: Histogram,
    queue_wait: Histogram,
}

pub(crate) struct WorkerMetrics {
    registry: Registry,
    kinds: RwLock<HashMap<String, KindMetrics>>,
    pub(crate) running: Gauge,
    cancel_latency: Histogram,
}

impl WorkerMetrics {
    pub(crate) fn new(registry: Registry, kinds: impl IntoIterator<Item = String>) -> Self {
        let running = registry.gauge("lro_jobs_running", "jobs running now", &[]);
        let cancel_latency = registry.histogram(
            "lro_cancel_latency_seconds",
            "from a cancel recorded to the job's token firing",
            &[],
        );
        let metrics = Self {
            registry,
            kinds: RwLock::default(),
            running,
            cancel_latency,
        };
        for kind in kinds {
            let m = metrics.register(&kind);
            metrics.write().insert(kind, m);
        }
        metrics
    }

    /// One attempt of a `kind` job ended with `outcome` after running `took`.
    pub(crate) fn finished(&self, kind: &str, outcome: Finished, took: Duration) {
        self.with_kind(kind, |m| {
            m.finished[outcome as usize].increment(1);
            m.duration.record(took.as_secs_f64());
        });
    }

    /// A `kind` job started after waiting `waited` in the queue.
    pub(crate) fn started(&self, kind: &str, waited: Duration) {
        self.with_kind(kind, |m| m.queue_wait.record(waited.as_secs_f64()));
    }

    /// A job's token fired `latency` after its cancel was recorded.
    pub(crate) fn cancel_latency(&self, latency: Duration) {
        self.cancel_latency.record(latency.as_secs_f64());
    }

    /// Calls `f` with the kind's handles (under a read lock: no clone, no allocation).
    fn with_kind(&self, kind: &str, f: impl FnOnce(&KindMetrics)) {
        {
            let kinds = self
                .kinds
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some(m) = kinds.get(kind) {
                return f(m);
            }
        }
        let m = self.register(kind);
        f(self.write().entry(kind.to_owned()).or_insert(m));
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, KindMetrics>> {
        self.kinds
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn register(&self, kind: &str) -> KindMetrics {
        let r = &self.registry;
        KindMetrics {
            finished: OUTCOMES.map(|outcome| {
                r.counter(
                    "lro_jobs_finished_total",
                    "attempts finished, by kind and outcome",
                    &[("kind", kind), ("outcome", outcome)],
                )
            }),
            duration: r.histogram(
                "lro_job_duration_seconds",
                "how long attempts ran, by kind",
                &[("kind", kind)],
            ),
            queue_wait: r.histogram(
                "lro_queue_wait_seconds",
                "from created or queued again to started, by kind",
                &[("kind", kind)],
            ),
        }
    }
}
