//! How operations are printed: `-o json` (the api's proto3 JSON, one operation per line, exactly
//! as it came), `-o name` (names, one per line) and `-o table` (comfy-table: key/value rows for
//! one operation, a row per operation for a list).
//!
//! It reads the operation JSON only to render it; it never changes what `-o json` prints.

use std::time::SystemTime;

use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{ContentArrangement, Table};
use serde_json::Value;

/// The output form, `-o`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
    Name,
}

/// Prints one operation.
pub fn operation(format: Format, op: &Value) {
    match format {
        Format::Json => line(op),
        Format::Name => line(name(op)),
        Format::Table => line(details(op)),
    }
}

/// Prints a list of operations.
pub fn operations(format: Format, ops: &[Value]) {
    match format {
        Format::Json => ops.iter().for_each(line),
        Format::Name => ops.iter().for_each(|op| line(name(op))),
        Format::Table => line(list(ops, SystemTime::now())),
    }
}

/// One line (or table) on stdout. A reader that went away (`lro list -o name | head -1`) is
/// its choice, not an error: the rest is dropped instead of panicking as `println!` would.
pub fn line(text: impl std::fmt::Display) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout(), "{text}");
}

/// A table with a row per operation: name, kind, state, progress, worker, age.
pub fn list(ops: &[Value], now: SystemTime) -> Table {
    let mut table = table();
    table.set_header(["NAME", "KIND", "STATE", "PROGRESS", "WORKER", "AGE"]);
    for op in ops {
        let m = &op["metadata"];
        table.add_row([
            name(op).to_owned(),
            text(&m["kind"]),
            state(op),
            progress(m),
            text(&m["worker"]),
            m["createTime"]
                .as_str()
                .and_then(|t| humantime::parse_rfc3339_weak(t).ok())
                .and_then(|t| now.duration_since(t).ok())
                .map(|d| age(d.as_secs()))
                .unwrap_or_default(),
        ]);
    }
    table
}

/// The operation's name.
pub fn name(op: &Value) -> &str {
    op["name"].as_str().unwrap_or_default()
}

/// `metadata.state`, or what `done` and `error` say when the metadata has none.
pub fn state(op: &Value) -> String {
    match op["metadata"]["state"].as_str() {
        Some(s) => s.to_owned(),
        None if op["done"] != true => "RUNNING".to_owned(),
        None if op.get("error").is_some() => "FAILED".to_owned(),
        None => "SUCCEEDED".to_owned(),
    }
}

/// `40% gate open`, or empty before any progress.
pub fn progress(metadata: &Value) -> String {
    let percent = metadata["progressPercent"].as_i64();
    let message = metadata["progressMessage"].as_str().unwrap_or_default();
    match percent {
        Some(p) if message.is_empty() => format!("{p}%"),
        Some(p) => format!("{p}% {message}"),
        None if message.is_empty() => String::new(),
        None => message.to_owned(),
    }
}

/// Key/value rows for one operation.
fn details(op: &Value) -> Table {
    let m = &op["metadata"];
    let mut table = table();
    let mut row = |k: &str, v: String| {
        if !v.is_empty() {
            table.add_row([k.to_owned(), v]);
        }
    };
    row("name", name(op).to_owned());
    row("kind", text(&m["kind"]));
    row("state", state(op));
    row("done", (op["done"] == true).to_string());
    row("progress", progress(m));
    row("worker", text(&m["worker"]));
    row("attempt", text(&m["attempt"]));
    for (key, field) in [
        ("created", "createTime"),
        ("started", "startTime"),
        ("ended", "endTime"),
        ("updated", "updateTime"),
        ("timeout", "timeout"),
        ("request id", "requestId"),
        ("cancel requested", "cancelTime"),
        ("cancel requested by", "cancelRequestedBy"),
    ] {
        row(key, text(&m[field]));
    }
    if let Some(e) = op.get("error") {
        row(
            "error",
            format!("{}: {}", text(&e["code"]), text(&e["message"])),
        );
    }
    if let Some(r) = op.get("response") {
        row("response", r.to_string());
    }
    table
}

pub(crate) fn table() -> Table {
    let mut table = Table::new();
    table
        .load_style(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic);
    table
}

/// A JSON scalar as text; absent is empty.
fn text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `42s`, `5m03s`, `2h05m`, `3d04h`.
fn age(secs: u64) -> String {
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m{:02}s", secs / 60, secs % 60),
        3600..86400 => format!("{}h{:02}m", secs / 3600, secs % 3600 / 60),
        _ => format!("{}d{:02}h", secs / 86400, secs % 86400 / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ages_and_progress_read_short() {
        assert_eq!(age(7), "7s");
        assert_eq!(age(303), "5m03s");
        assert_eq!(age(7500), "2h05m");
        assert_eq!(
            progress(&json!({"progressPercent": 40, "progressMessage": "x"})),
            "40% x"
        );
        assert_eq!(progress(&json!({})), "");
    }
}
