//! The api's metrics, on its own [`Registry`] (one per [`crate::App`]; see
//! `lro_common::metrics` for why not the global recorder): submits by kind, cancels by outcome,
//! and every request's duration by transport, method and canonical code.
//!
//! Handles are registered up front where the label set is fixed (cancel outcomes), on first use
//! where it is open (a kind; a transport × method × code cell, kept in a fixed table), and reused
//! after that: recording allocates nothing.

use std::collections::HashMap;
use std::sync::{OnceLock, RwLock};
use std::time::Duration;

use lro_common::metrics::Registry;
use lro_common::status::Code;
use metrics::{Counter, Histogram};

/// The transports `lro_request_duration_seconds` tells apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transport {
    Rest,
    Grpc,
}

/// The `method` label: one per service method, plus `unknown` for a request that matched no
/// route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RequestMethod {
    Submit,
    Get,
    List,
    Delete,
    Cancel,
    Wait,
    Kinds,
    OpenApi,
    BatchCancel,
    BatchSubmit,
    Unknown,
}

impl RequestMethod {
    const COUNT: usize = 11;

    fn label(self) -> &'static str {
        match self {
            Self::Submit => "submit",
            Self::Get => "get",
            Self::List => "list",
            Self::Delete => "delete",
            Self::Cancel => "cancel",
            Self::Wait => "wait",
            Self::Kinds => "kinds",
            Self::OpenApi => "openapi",
            Self::BatchCancel => "batch_cancel",
            Self::BatchSubmit => "batch_submit",
            Self::Unknown => "unknown",
        }
    }
}

/// How a cancel ended, for `lro_cancel_requests_total{outcome}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CancelOutcome {
    /// Running: the cancel is recorded and the worker told.
    Cancelling,
    /// It was queued: now CANCELLED.
    Cancelled,
    AlreadyDone,
    NotCancellable,
    NotFound,
    /// Not authenticated, or not allowed to cancel it.
    Denied,
}

const CANCEL_OUTCOMES: [(CancelOutcome, &str); 6] = [
    (CancelOutcome::Cancelling, "cancelling"),
    (CancelOutcome::Cancelled, "cancelled"),
    (CancelOutcome::AlreadyDone, "already_done"),
    (CancelOutcome::NotCancellable, "not_cancellable"),
    (CancelOutcome::NotFound, "not_found"),
    (CancelOutcome::Denied, "denied"),
];

const CODES: usize = 17;

pub(crate) struct ApiMetrics {
    registry: Registry,
    submitted: RwLock<HashMap<String, Counter>>,
    cancels: [Counter; 6],
    /// Indexed by transport, method and code.
    requests: Box<[OnceLock<Histogram>]>,
}

impl ApiMetrics {
    pub(crate) fn new(registry: Registry) -> Self {
        let cancels = CANCEL_OUTCOMES.map(|(_, outcome)| {
            registry.counter(
                "lro_cancel_requests_total",
                "cancel requests by outcome",
                &[("outcome", outcome)],
            )
        });
        let requests = (0..2 * RequestMethod::COUNT * CODES)
            .map(|_| OnceLock::new())
            .collect();
        Self {
            registry,
            submitted: RwLock::default(),
            cancels,
            requests,
        }
    }

    pub(crate) fn registry(&self) -> &Registry {
        &self.registry
    }

    /// One new operation of `kind` accepted (a repeated `requestId` is not a new one).
    pub(crate) fn submitted(&self, kind: &str) {
        let found = self
            .submitted
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(kind)
            .cloned();
        let counter = found.unwrap_or_else(|| {
            let mut all = self
                .submitted
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            all.entry(kind.to_owned())
                .or_insert_with(|| {
                    self.registry.counter(
                        "lro_operations_submitted_total",
                        "operations accepted, by kind",
                        &[("kind", kind)],
                    )
                })
                .clone()
        });
        counter.increment(1);
    }

    pub(crate) fn cancel(&self, outcome: CancelOutcome) {
        if let Some(i) = CANCEL_OUTCOMES.iter().position(|(o, _)| *o == outcome) {
            self.cancels[i].increment(1);
        }
    }

    /// One request answered with `code` after `took`.
    pub(crate) fn request(
        &self,
        transport: Transport,
        method: RequestMethod,
        code: Code,
        took: Duration,
    ) {
        let code_index = usize::try_from(code.as_i32()).unwrap_or(0).min(CODES - 1);
        let index =
            (transport as usize * RequestMethod::COUNT + method as usize) * CODES + code_index;
        let Some(cell) = self.requests.get(index) else {
            return;
        };
        cell.get_or_init(|| {
            let transport = match transport {
                Transport::Rest => "rest",
                Transport::Grpc => "grpc",
            };
            self.registry.histogram(
                "lro_request_duration_seconds",
                "request durations by transport, method and canonical code",
                &[
                    ("transport", transport),
                    ("method", method.label()),
                    ("code", code.name()),
                ],
            )
        })
        .record(took.as_secs_f64());
    }
}
