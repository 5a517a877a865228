//! OTLP trace export, on only when `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set: spans go over OTLP/HTTP protobuf, batched on
//! tokio, as `OTEL_SERVICE_NAME` (default `lro-api` / `lro-worker`). The standard `OTEL_*`
//! variables the SDK reads (`OTEL_EXPORTER_OTLP_HEADERS`, `…_TIMEOUT`, `OTEL_BSP_*`,
//! `OTEL_TRACES_SAMPLER`, `OTEL_RESOURCE_ATTRIBUTES`) apply; `OTEL_SDK_DISABLED=true` or
//! `OTEL_TRACES_EXPORTER=none` turns it off, and a setting that could never work (gRPC, https)
//! turns it off with one line on stderr.
//!
//! Only `lro*` spans at info and above are exported (the api's `submit` and `cancel` request
//! spans, the worker's `job` span, and their events), so the exporter's own HTTP client is never
//! traced. [`continue_trace`] makes such a span the child of the caller's W3C trace
//! ([`TraceContext`]) and answers the span's own position, which is what travels on (AMQP
//! headers), so one trace runs caller → api → worker.
//!
//! What it does not do: install anything when the variable is unset (no layer, no exporter, and
//! [`continue_trace`] answers `None` after one atomic load); break the service when the collector
//! is away (a failed export is logged once, then at most every [`WARN_EVERY`]); speak gRPC or TLS
//! (no such client is built in).

use std::str::FromStr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState, TracerProvider as _,
};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter};
use opentelemetry_sdk::{Resource, runtime};
use tracing::Subscriber;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::Layer;
use tracing_subscriber::registry::LookupSpan;

use crate::trace::TraceContext;

/// The fewest time between two warnings of failed exports.
pub const WARN_EVERY: Duration = Duration::from_secs(300);

/// Longest wait, on the way out, for the last spans to be sent.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(5);

/// Set once the exporting layer is installed: read on every request and job span.
static EXPORTING: AtomicBool = AtomicBool::new(false);

/// The process's tracer provider, if it exports; [`Telemetry::shutdown`] flushes it on exit.
#[must_use = "call shutdown on the way out, or the last spans are lost"]
pub struct Telemetry(Option<SdkTracerProvider>);

impl Telemetry {
    /// Nothing to flush (export off).
    pub(crate) fn off() -> Self {
        Self(None)
    }

    pub(crate) fn on(provider: SdkTracerProvider) -> Self {
        Self(Some(provider))
    }

    /// Sends the spans still queued and stops the exporter, waiting at most [`SHUTDOWN_WAIT`]
    /// (a collector that does not answer must not hold up the exit). Call it on the runtime
    /// that [`crate::logging::init`] ran on, before the runtime ends.
    pub async fn shutdown(self) {
        let Some(provider) = self.0 else { return };
        let (tx, rx) = tokio::sync::oneshot::channel();
        // The SDK's shutdown blocks its thread until the batch task (on this runtime) is done.
        std::thread::spawn(move || {
            let _ = tx.send(provider.shutdown());
        });
        match tokio::time::timeout(SHUTDOWN_WAIT, rx).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => tracing::warn!(error = %e, "otlp: shutdown"),
            Ok(Err(_)) => tracing::warn!("otlp: shutdown thread failed"),
            Err(_) => tracing::warn!(wait = ?SHUTDOWN_WAIT, "otlp: last spans not sent in time"),
        }
    }
}

/// Whether the process's environment asks for export: see [`wanted_by`].
pub fn wanted() -> bool {
    wanted_by(env)
}

/// Whether `OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is set, as `var`
/// reads them, and neither `OTEL_SDK_DISABLED=true` nor `OTEL_TRACES_EXPORTER=none` says no.
fn wanted_by(var: impl Fn(&str) -> Option<String>) -> bool {
    let is = |name: &str, value: &str| var(name).is_some_and(|v| v.eq_ignore_ascii_case(value));
    (var("OTEL_EXPORTER_OTLP_ENDPOINT").is_some()
        || var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_some())
        && !is("OTEL_SDK_DISABLED", "true")
        && !is("OTEL_TRACES_EXPORTER", "none")
}

/// Why the settings `var` reads ask for what is not built in (so nothing could ever be sent):
/// a protocol other than `http/protobuf`, or an `https` endpoint (no TLS client).
fn unsupported(var: impl Fn(&str) -> Option<String>) -> Option<String> {
    let protocol = var("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        .or_else(|| var("OTEL_EXPORTER_OTLP_PROTOCOL"))
        .filter(|p| p != "http/protobuf");
    if let Some(p) = protocol {
        return Some(format!(
            "protocol {p:?} is not built in, only http/protobuf"
        ));
    }
    let endpoint = var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        .or_else(|| var("OTEL_EXPORTER_OTLP_ENDPOINT"))
        .filter(|e| e.trim().to_ascii_lowercase().starts_with("https:"));
    endpoint.map(|e| format!("{e:?}: https is not built in (no TLS); use an http endpoint"))
}

/// A variable of the process's environment, unset when empty.
fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// The exporting layer and its provider, for [`crate::logging::init`]; `None` (with one line on
/// stderr) when the exporter cannot be built, so a bad setting never stops the process. Needs a
/// tokio runtime (the batch task is spawned on it).
pub(crate) fn layer<S>(
    default_service: &str,
) -> Option<(Box<dyn Layer<S> + Send + Sync>, SdkTracerProvider)>
where
    S: Subscriber + for<'a> LookupSpan<'a> + Send + Sync,
{
    if tokio::runtime::Handle::try_current().is_err() {
        eprintln!("{default_service}: otlp export off: no async runtime yet");
        return None;
    }
    if let Some(why) = unsupported(env) {
        eprintln!("{default_service}: otlp export off: {why}");
        return None;
    }
    let exporter = match opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .build()
    {
        Ok(e) => e,
        Err(e) => {
            eprintln!("{default_service}: otlp export off: {e}");
            return None;
        }
    };
    let processor = BatchSpanProcessor::builder(Quiet::new(exporter), runtime::Tokio).build();
    let service = env("OTEL_SERVICE_NAME").unwrap_or_else(|| default_service.to_owned());
    let provider = SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_resource(Resource::builder().with_service_name(service).build())
        .build();
    let tracer = provider.tracer("lro");
    let ours = tracing_subscriber::filter::filter_fn(|meta| {
        meta.target().starts_with("lro") && *meta.level() <= tracing::Level::INFO
    });
    let layer = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_filter(ours)
        .boxed();
    EXPORTING.store(true, Ordering::Relaxed);
    Some((layer, provider))
}

/// Makes `span` (not yet entered) continue `parent`, the caller's trace, and answers the span's
/// own position in it (the caller's `tracestate` kept): what goes downstream. With no `parent`
/// the span starts a trace of its own. `None` when nothing is exported (then callers pass the
/// caller's trace on unchanged, as without OTLP).
pub fn continue_trace(span: &tracing::Span, parent: Option<&TraceContext>) -> Option<TraceContext> {
    if !EXPORTING.load(Ordering::Relaxed) {
        return None;
    }
    if let Some(parent) = parent {
        // Refused only when the span is filtered out or already started: then it is not ours.
        let _ = span.set_parent(remote(parent));
    }
    let cx = span.context();
    let own = cx.span().span_context().clone();
    if !own.is_valid() {
        return None;
    }
    let span_id = own.span_id().to_bytes();
    parent
        .and_then(|p| p.child(span_id))
        .or_else(|| TraceContext::new(own.trace_id().to_bytes(), span_id, own.is_sampled()))
}

/// The id `span` logs as its own once it continues `parent`: the exported span's id, or (export
/// off) a fresh random one.
pub fn span_id_in(span: &tracing::Span, parent: &TraceContext) -> [u8; 8] {
    continue_trace(span, Some(parent)).map_or_else(crate::trace::new_span_id, |own| own.ids().1)
}

/// `parent` as OpenTelemetry's remote span context.
fn remote(parent: &TraceContext) -> opentelemetry::Context {
    let (trace_id, span_id) = parent.ids();
    let state = parent
        .state()
        .and_then(|s| TraceState::from_str(s).ok())
        .unwrap_or_default();
    let context = SpanContext::new(
        TraceId::from_bytes(trace_id),
        SpanId::from_bytes(span_id),
        TraceFlags::new(parent.flags()),
        true,
        state,
    );
    opentelemetry::Context::new().with_remote_span_context(context)
}

/// The OTLP exporter, its failures logged rarely: the first at once, then at most one line
/// every [`WARN_EVERY`] with how many failed since, and one line when exports work again.
#[derive(Debug)]
struct Quiet<E> {
    inner: E,
    failures: Mutex<Failures>,
}

#[derive(Debug, Default)]
struct Failures {
    since_warned: u64,
    warned_at: Option<Instant>,
}

impl<E> Quiet<E> {
    fn new(inner: E) -> Self {
        Self {
            inner,
            failures: Mutex::default(),
        }
    }

    fn note(&self, result: &OTelSdkResult) {
        let mut f = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        match result {
            Ok(()) if f.warned_at.is_some() => {
                tracing::info!(failed = f.since_warned, "otlp export works again");
                *f = Failures::default();
            }
            Ok(()) => {}
            Err(e) => {
                f.since_warned += 1;
                if f.warned_at.is_none_or(|at| at.elapsed() >= WARN_EVERY) {
                    tracing::warn!(error = %e, failed = f.since_warned, "otlp export failed; spans dropped");
                    f.warned_at = Some(Instant::now());
                    f.since_warned = 0;
                }
            }
        }
    }
}

impl<E: SpanExporter> SpanExporter for Quiet<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let result = self.inner.export(batch).await;
        self.note(&result);
        result
    }

    fn shutdown_with_timeout(&mut self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&mut self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(set: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let set: Vec<(String, String)> = set
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| set.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    }

    #[test]
    fn an_endpoint_turns_export_on_unless_something_says_no() {
        assert!(!wanted_by(vars(&[])));
        assert!(!wanted_by(vars(&[("OTEL_SERVICE_NAME", "x")])));
        let on = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318");
        assert!(wanted_by(vars(&[on])));
        let traces = (
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "http://c:4318/v1/traces",
        );
        assert!(wanted_by(vars(&[traces])));
        assert!(!wanted_by(vars(&[on, ("OTEL_SDK_DISABLED", "TRUE")])));
        assert!(!wanted_by(vars(&[on, ("OTEL_TRACES_EXPORTER", "none")])));
        assert!(wanted_by(vars(&[on, ("OTEL_SDK_DISABLED", "false")])));
    }

    #[test]
    fn what_is_not_built_in_is_named() {
        let on = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318");
        assert_eq!(unsupported(vars(&[on])), None);
        let proto = ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf");
        assert_eq!(unsupported(vars(&[on, proto])), None);
        let grpc = ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc");
        assert!(unsupported(vars(&[on, grpc])).unwrap().contains("grpc"));
        let tls = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "HTTPS://c/v1/traces");
        assert!(unsupported(vars(&[on, tls])).unwrap().contains("https"));
    }

    #[test]
    fn without_export_nothing_is_made_up() {
        let parent = TraceContext::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
        let span = tracing::info_span!("job");
        assert_eq!(continue_trace(&span, parent.as_ref()), None);
        assert_ne!(span_id_in(&span, &parent.unwrap()), [0; 8]);
    }
}
