//! Entry points for `lro-bench`'s `metrics` scenario: what a job's attempt records, callable in
//! a tight loop. Not an API: hidden from the docs, no stability promised, and nothing in the
//! worker calls it.

use std::time::Duration;

use lro_common::metrics::Registry;

use crate::metrics::{Finished, WorkerMetrics};

/// The worker's metrics on a registry of their own, for these kinds.
pub struct Metrics(WorkerMetrics, Registry);

impl Metrics {
    pub fn new(kinds: &[&str]) -> Self {
        let registry = Registry::new();
        let metrics = WorkerMetrics::new(registry.clone(), kinds.iter().map(|k| (*k).to_owned()));
        Self(metrics, registry)
    }

    /// What one attempt of a `kind` job that succeeded records, as `consumer::delivery::handle` does: its
    /// queue wait, the running gauge up and down, its outcome and duration.
    pub fn job(&self, kind: &str, waited: Duration, took: Duration) {
        self.0.started(kind, waited);
        self.0.running.increment(1);
        self.0.running.decrement(1);
        self.0.finished(kind, Finished::Succeeded, took);
    }

    /// Everything recorded, as a scrape renders it (this folds histogram samples into buckets).
    pub fn render(&self) -> String {
        self.1.render()
    }
}
