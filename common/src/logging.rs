//! Logging set-up both binaries share (`LRO_LOG_FORMAT`): human-readable text, or one JSON object
//! a line for log routers. A JSON line carries the fields of the span it was written in (`span`:
//! a job's `operation`, `attempt`, `trace_id`, …), so every line of a job can be found by its trace
//! id; the audit log is the target `lro::audit`. Colours only on a terminal. `RUST_LOG` filters
//! (default `info`). With `OTEL_EXPORTER_OTLP_ENDPOINT` set, spans are exported too
//! ([`crate::otel`]; `RUST_LOG` filters the log lines only); without it no such layer exists.

use tracing::Subscriber;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer};

use crate::otel::{self, Telemetry};

/// `LRO_LOG_FORMAT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Installs the process's tracing subscriber, and OTLP export as `service` when the variables
/// ask for it; call once, first thing in `main`, on the tokio runtime (the exporter's batch task
/// runs there). Hand the answer's [`Telemetry::shutdown`] the way out.
pub fn init(format: LogFormat, service: &str) -> Telemetry {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let registry = tracing_subscriber::registry();
    if otel::wanted() {
        // Per-layer filters: `RUST_LOG=warn` quietens the log, not the export.
        let registry = registry.with(lines(format).with_filter(filter));
        if let Some((layer, provider)) = otel::layer(service) {
            registry.with(layer).init();
            return Telemetry::on(provider);
        }
        registry.init();
    } else {
        registry.with(filter).with(lines(format)).init();
    }
    Telemetry::off()
}

/// The layer that writes log lines on stdout.
fn lines<S>(format: LogFormat) -> Box<dyn Layer<S> + Send + Sync>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()));
    match format {
        LogFormat::Json => fmt
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .boxed(),
        LogFormat::Text => fmt.boxed(),
    }
}
