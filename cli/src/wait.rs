//! Waiting: short `:wait` long-polls (so progress can be shown between them) until the operation
//! is done or the caller's timeout runs out; `lro wait`, `submit --wait` and the batch cancel all
//! wait here. Progress goes to stderr — a bar on a terminal, otherwise one line per change — so
//! that stdout holds only the operation.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;

use crate::api::{Client, Error};
use crate::output::{self, Format};
use crate::{Exit, outcome};

/// The longest one `:wait` call is asked to block: progress is shown at least this often.
const POLL: Duration = Duration::from_secs(1);

/// `lro wait`: waits, prints the operation, and answers how it ended.
pub async fn wait(
    client: &Client,
    format: Format,
    name: &str,
    timeout: Option<Duration>,
) -> Result<Exit, Error> {
    let op = until_done(client, name, timeout).await?;
    output::operation(format, &op);
    Ok(outcome(&op))
}

/// `lro cancel --filter F --yes`: starts the batch, waits for it, prints its counts.
pub async fn batch_cancel(
    client: &Client,
    format: Format,
    parent: Option<&str>,
    filter: &str,
) -> Result<Exit, Error> {
    let batch = client.batch_cancel(parent, filter).await?;
    let op = if batch["done"] == true {
        batch
    } else {
        until_done(client, output::name(&batch), None).await?
    };
    match (format, counts(&op)) {
        (Format::Table, Some(counts)) => {
            let mut table = output::table();
            table.add_row(["batch", output::name(&op)]);
            for (key, n) in counts {
                table.add_row([key.to_owned(), n.to_string()]);
            }
            output::line(table);
        }
        _ => output::operation(format, &op),
    }
    Ok(outcome(&op))
}

/// A finished batch's counts, in the contract's order; `None` before it has a response.
fn counts(op: &Value) -> Option<[(&'static str, u64); 4]> {
    let r = op.get("response")?;
    // A Struct response is an Any of a well-known type: its fields sit under "value".
    let fields = if r["value"].is_object() {
        &r["value"]
    } else {
        r
    };
    Some(
        ["matched", "cancelled", "alreadyDone", "notCancellable"]
            .map(|key| (key, fields[key].as_u64().unwrap_or(0))),
    )
}

/// The operation once done, or as it is when `timeout` runs out (never, without one).
pub async fn until_done(
    client: &Client,
    name: &str,
    timeout: Option<Duration>,
) -> Result<Value, Error> {
    let deadline = timeout.map(|t| Instant::now() + t);
    let mut progress = Progress::new(name);
    let result = loop {
        let slice = deadline.map_or(POLL, |d| {
            d.saturating_duration_since(Instant::now()).min(POLL)
        });
        let op = match client.wait(name, slice).await {
            Ok(op) => op,
            Err(e) => break Err(e),
        };
        progress.show(&op);
        if op["done"] == true || deadline.is_some_and(|d| Instant::now() >= d) {
            break Ok(op);
        }
    };
    progress.finish();
    result
}

/// Where progress goes: a bar on a terminal, lines otherwise.
enum Progress {
    Bar(ProgressBar),
    Lines { name: String, last: String },
}

impl Progress {
    fn new(name: &str) -> Self {
        let name = crate::api::trim_name(name).to_owned();
        if !std::io::stderr().is_terminal() {
            return Self::Lines {
                name,
                last: String::new(),
            };
        }
        let bar = ProgressBar::new(100);
        if let Ok(style) = ProgressStyle::with_template("{prefix} [{bar:30}] {pos:>3}% {msg}") {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_prefix(name);
        bar.enable_steady_tick(Duration::from_millis(200));
        Self::Bar(bar)
    }

    fn show(&mut self, op: &Value) {
        let m = &op["metadata"];
        let state = output::state(op);
        match self {
            Self::Bar(bar) => {
                let percent = m["progressPercent"].as_u64().unwrap_or(0);
                bar.set_position(percent.min(100));
                let message = m["progressMessage"].as_str().unwrap_or_default();
                bar.set_message(format!("{state} {message}"));
            }
            Self::Lines { name, last } => {
                let line = format!("{name} {state} {}", output::progress(m));
                let line = line.trim_end().to_owned();
                if *last != line {
                    eprintln!("{line}");
                    *last = line;
                }
            }
        }
    }

    fn finish(self) {
        if let Self::Bar(bar) = self {
            bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn batch_counts_are_read_from_the_struct_response() {
        let op = json!({"name": "operations/b", "done": true, "response": {
            "@type": "type.googleapis.com/google.protobuf.Struct",
            "value": {"matched": 3, "cancelled": 2, "alreadyDone": 1, "notCancellable": 0}}});
        let read = counts(&op).expect("counts");
        assert_eq!(read[0], ("matched", 3));
        assert_eq!(read[2], ("alreadyDone", 1));
        assert_eq!(counts(&json!({"name": "operations/b"})), None);
    }
}
