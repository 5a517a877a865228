//! Entry points for `lro-bench`'s `metrics` scenario: what the request path records, callable in
//! a tight loop. Not an API: hidden from the docs, no stability promised, and nothing in the
//! server calls it.

use std::time::Duration;

use lro_common::metrics::Registry;
use lro_common::status::Code;

use crate::metrics::{ApiMetrics, RequestMethod, Transport};

/// The api's metrics on a registry of their own.
pub struct Metrics(ApiMetrics);

impl Default for Metrics {
    fn default() -> Self {
        Self(ApiMetrics::new(Registry::new()))
    }
}

impl Metrics {
    /// What one accepted REST submit of `kind` records: its request's duration (histogram) and
    /// the kind's submit counter.
    pub fn submit(&self, kind: &str, took: Duration) {
        self.0
            .request(Transport::Rest, RequestMethod::Submit, Code::Ok, took);
        self.0.submitted(kind);
    }

    /// Everything recorded, as a scrape renders it (this folds histogram samples into buckets).
    pub fn render(&self) -> String {
        self.0.registry().render()
    }
}
