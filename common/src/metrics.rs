//! A Prometheus registry per component (one api, one worker), rendered by the admin listener's
//! `GET /metrics` ([`crate::admin`]).
//!
//! **Per-component, not process-global.** The `metrics` crate's macros record into one global
//! recorder, but the integration tests run several apis and workers in one process, and each must
//! count only what it did. So every component builds its own [`Registry`] (a
//! `PrometheusRecorder` of its own) and registers its handles on it directly
//! ([`metrics::Recorder::register_counter`] and friends): no global recorder is installed and no
//! macro is used. The handles are registered once, for fixed label sets when the component starts
//! (or on first use for open ones, such as a job kind), and kept: recording is then an atomic
//! update on an `Arc`'d cell — no key hashing, no allocation on the hot path.
//!
//! Every histogram has explicit buckets ([`BUCKETS`]), so the exporter renders histograms (which
//! add up across processes), never summaries. It does not install a global recorder, serve HTTP
//! (its own listener pulls hyper-util and TLS) or push anywhere.

use std::sync::Arc;
use std::time::Duration;

use metrics::{Counter, Gauge, Histogram, Key, Label, Level, Metadata, Recorder};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusRecorder};
use tokio_util::sync::CancellationToken;

/// Bucket bounds of every histogram, in seconds: from a millisecond (a request, a cancel) to an
/// hour (a long job, a long wait in the queue).
pub const BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    300.0, 900.0, 3600.0,
];

/// How often recorded histogram samples are folded into their buckets when nobody scrapes (a
/// scrape folds them too), so that samples never pile up in memory.
const UPKEEP: Duration = Duration::from_secs(5);

const METADATA: Metadata<'static> = Metadata::new("lro", Level::INFO, Some(module_path!()));

/// One component's metrics. Cheap to clone.
#[derive(Clone)]
pub struct Registry {
    recorder: Arc<PrometheusRecorder>,
}

impl Default for Registry {
    fn default() -> Self {
        Self::new()
    }
}

impl Registry {
    pub fn new() -> Self {
        let recorder = PrometheusBuilder::new()
            .set_buckets(BUCKETS)
            .expect("the bucket list is not empty")
            .build_recorder();
        Self {
            recorder: Arc::new(recorder),
        }
    }

    /// A counter for `name` with these labels, described by `help` (the `# HELP` line).
    pub fn counter(
        &self,
        name: &'static str,
        help: &'static str,
        labels: &[(&'static str, &str)],
    ) -> Counter {
        self.recorder
            .describe_counter(name.into(), None, help.into());
        self.recorder
            .register_counter(&key(name, labels), &METADATA)
    }

    pub fn gauge(
        &self,
        name: &'static str,
        help: &'static str,
        labels: &[(&'static str, &str)],
    ) -> Gauge {
        self.recorder.describe_gauge(name.into(), None, help.into());
        self.recorder.register_gauge(&key(name, labels), &METADATA)
    }

    pub fn histogram(
        &self,
        name: &'static str,
        help: &'static str,
        labels: &[(&'static str, &str)],
    ) -> Histogram {
        self.recorder
            .describe_histogram(name.into(), None, help.into());
        self.recorder
            .register_histogram(&key(name, labels), &METADATA)
    }

    /// Everything recorded, in the Prometheus text format.
    pub fn render(&self) -> String {
        self.recorder.handle().render()
    }

    /// Folds histogram samples into buckets every few seconds until `stop` fires.
    pub async fn upkeep(self, stop: CancellationToken) {
        let handle = self.recorder.handle();
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(UPKEEP) => handle.run_upkeep(),
            }
        }
    }
}

fn key(name: &'static str, labels: &[(&'static str, &str)]) -> Key {
    let labels: Vec<Label> = labels
        .iter()
        .map(|&(k, v)| Label::new(k, v.to_owned()))
        .collect();
    Key::from_parts(name, labels)
}

/// `lro_reaper_actions_total{action}`: what the reaper of this process did, one counter per
/// [`crate::reaper::Swept`] field.
#[derive(Clone)]
pub struct ReaperMetrics {
    pub requeued: Counter,
    pub ended: Counter,
    pub republished: Counter,
    pub deleted: Counter,
}

impl ReaperMetrics {
    pub fn new(registry: &Registry) -> Self {
        let action = |a: &str| {
            registry.counter(
                "lro_reaper_actions_total",
                "reaper actions: requeued (its worker died, queued again), ended (its worker died, \
                 ended), republished (publish never confirmed), deleted (retention passed)",
                &[("action", a)],
            )
        };
        Self {
            requeued: action("requeued"),
            ended: action("ended"),
            republished: action("republished"),
            deleted: action("deleted"),
        }
    }

    /// No-op counters, for a reaper run without a registry.
    pub fn noop() -> Self {
        Self {
            requeued: Counter::noop(),
            ended: Counter::noop(),
            republished: Counter::noop(),
            deleted: Counter::noop(),
        }
    }

    pub fn record(&self, swept: &crate::reaper::Swept) {
        let n = |x: usize| u64::try_from(x).unwrap_or(u64::MAX);
        self.requeued.increment(n(swept.requeued));
        self.ended.increment(n(swept.ended));
        self.republished.increment(n(swept.republished));
        self.deleted.increment(n(swept.deleted));
    }
}

/// Seconds as a histogram records them.
pub fn seconds(d: Duration) -> f64 {
    d.as_secs_f64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registries_are_separate_and_histograms_have_buckets() {
        let (a, b) = (Registry::new(), Registry::new());
        a.counter("lro_t_total", "t", &[("kind", "noop")])
            .increment(3);
        b.counter("lro_t_total", "t", &[("kind", "noop")])
            .increment(1);
        a.histogram("lro_t_seconds", "t", &[]).record(0.2);
        let text = a.render();
        assert!(text.contains("lro_t_total{kind=\"noop\"} 3"), "{text}");
        assert!(
            text.contains("lro_t_seconds_bucket{le=\"0.25\"} 1"),
            "{text}"
        );
        assert!(b.render().contains("lro_t_total{kind=\"noop\"} 1"));
    }
}
