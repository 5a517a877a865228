//! Logging set-up both binaries share (`LRO_LOG_FORMAT`): human-readable text, or one JSON object
//! a line for log routers. A JSON line carries the fields of the span it was written in (`span`:
//! a job's `operation`, `attempt`, `trace_id`, …), so every line of a job can be found by its trace
//! id; the audit log is the target `lro::audit`. Colours only on a terminal. `RUST_LOG` filters
//! (default `info`).

/// `LRO_LOG_FORMAT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Installs the process's tracing subscriber; call once, first thing in `main`.
pub fn init(format: LogFormat) {
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let fmt = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()));
    match format {
        LogFormat::Json => fmt
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .init(),
        LogFormat::Text => fmt.init(),
    }
}
