//! `lro`, the operators' command: the command line (global options before or after the verb),
//! one call into a verb module, and the exit status the contract defines ([`Exit`]).
//!
//! It talks to the api over REST only ([`api`]); it keeps no state between runs and checks
//! nothing the server checks (names, filters, the operation's timeout go as given).

pub mod api;
mod ops;
pub mod output;
mod wait;
mod watch;

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use serde_json::Value;

use crate::api::Client;
use crate::output::Format;

/// Submit, inspect, wait for and cancel lro's long-running operations.
#[derive(Parser, Debug)]
#[command(name = "lro", version, propagate_version = true)]
pub struct Cli {
    /// The api's REST address.
    #[arg(
        long,
        global = true,
        env = "LRO_API",
        default_value = "http://127.0.0.1:8080"
    )]
    pub api: String,
    /// Sent as `Authorization: Bearer <token>`.
    #[arg(long, global = true, env = "LRO_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// How operations are printed: a table, the api's JSON (one per line), or names.
    #[arg(short = 'o', long = "output", global = true, value_enum, default_value_t = Format::Table)]
    pub output: Format,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Submits a job; prints the new operation (with --wait, waits as `lro wait` does).
    Submit {
        /// The job's kind, e.g. sleep, noop, fail.
        kind: String,
        /// The job's input: JSON, or @FILE to read it from a file.
        #[arg(long, value_parser = parse_input)]
        input: Option<Value>,
        /// Submit under this parent, e.g. projects/p.
        #[arg(long)]
        parent: Option<String>,
        /// Makes the submit idempotent: the same id answers the same operation.
        #[arg(long)]
        request_id: Option<String>,
        /// The operation's own timeout, e.g. 30s (sent as given).
        #[arg(long)]
        timeout: Option<String>,
        /// Waits until the operation is done; the exit status says how it ended.
        #[arg(long)]
        wait: bool,
    },
    /// Prints an operation.
    Get { name: String },
    /// Lists operations of the root or of PARENT.
    List {
        parent: Option<String>,
        /// The list filter, e.g. 'metadata.state=RUNNING'.
        #[arg(long)]
        filter: Option<String>,
        #[arg(long)]
        page_size: Option<u32>,
        /// Follows every page.
        #[arg(long)]
        all: bool,
    },
    /// Cancels each NAME, or (--filter, --yes) every matching operation of a parent.
    ///
    /// By name: prints each name (the api's `{}` with -o json). A batch cancel waits for the
    /// batch operation, showing its progress, and prints its counts.
    Cancel {
        #[arg(required_unless_present = "filter", conflicts_with = "filter")]
        names: Vec<String>,
        /// Batch cancel: every operation of the parent matching this filter.
        #[arg(long, requires = "yes")]
        filter: Option<String>,
        /// The batch's parent (the root's operations when absent).
        #[arg(long, requires = "filter")]
        parent: Option<String>,
        /// Confirms a batch cancel.
        #[arg(long, requires = "filter")]
        yes: bool,
    },
    /// Waits until an operation is done, showing its progress.
    Wait {
        name: String,
        /// Gives up after this long (exit status 4), e.g. 30s, 1.5s, 2m.
        #[arg(long, value_parser = parse_duration)]
        timeout: Option<Duration>,
    },
    /// Deletes an operation's record (it does not cancel the job).
    ///
    /// Prints the name (the api's `{}` with -o json).
    Delete { name: String },
    /// A live table of operations, refreshed every second, until Ctrl-C.
    Watch {
        parent: Option<String>,
        #[arg(long)]
        filter: Option<String>,
    },
    /// Prints a shell completion script.
    Completions { shell: clap_complete::Shell },
}

/// The exit statuses of the contract.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// The operation succeeded, or (for a command that does not wait) the call did.
    Succeeded = 0,
    /// The operation ended with an error other than CANCELLED.
    Failed = 1,
    /// Bad usage (clap exits with it itself).
    Usage = 2,
    /// The operation ended CANCELLED.
    Cancelled = 3,
    /// The operation was not done when the wait ran out.
    NotDone = 4,
    /// The api answered an error, or could not be reached.
    ApiError = 5,
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> Self {
        ExitCode::from(e as u8)
    }
}

/// The whole command: parses the process's arguments and runs them.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(run(cli)).into(),
        Err(e) => {
            eprintln!("lro: INTERNAL: cannot start: {e}");
            Exit::ApiError.into()
        }
    }
}

/// Runs one parsed command line; an api error is printed here, once, as one line.
pub async fn run(cli: Cli) -> Exit {
    let client = match Client::new(&cli.api, cli.token.clone()) {
        Ok(client) => client,
        Err(e) => {
            eprintln!("lro: {e}");
            return Exit::ApiError;
        }
    };
    let format = cli.output;
    let result = match cli.command {
        Command::Submit {
            kind,
            input,
            parent,
            request_id,
            timeout,
            wait,
        } => {
            let submit = ops::Submit {
                kind,
                input,
                parent,
                request_id,
                timeout,
            };
            ops::submit(&client, format, submit, wait).await
        }
        Command::Get { name } => ops::get(&client, format, &name).await,
        Command::List {
            parent,
            filter,
            page_size,
            all,
        } => {
            ops::list(
                &client,
                format,
                parent.as_deref(),
                filter.as_deref(),
                page_size,
                all,
            )
            .await
        }
        Command::Cancel {
            names,
            filter: Some(filter),
            parent,
            ..
        } if names.is_empty() => {
            wait::batch_cancel(&client, format, parent.as_deref(), &filter).await
        }
        Command::Cancel { names, .. } => Ok(ops::cancel(&client, format, &names).await),
        Command::Wait { name, timeout } => wait::wait(&client, format, &name, timeout).await,
        Command::Delete { name } => ops::delete(&client, format, &name).await,
        Command::Watch { parent, filter } => {
            watch::watch(&client, format, parent.as_deref(), filter.as_deref()).await
        }
        Command::Completions { shell } => {
            use clap::CommandFactory;
            use std::io::Write;
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "lro", &mut script);
            // A closed pipe (`| head`) is the reader's choice, not a failure worth a panic.
            let _ = std::io::stdout().write_all(&script);
            Ok(Exit::Succeeded)
        }
    };
    result.unwrap_or_else(|e| {
        eprintln!("lro: {e}");
        Exit::ApiError
    })
}

/// How an operation ended, as an exit status.
pub fn outcome(op: &Value) -> Exit {
    if op["done"] != true {
        return Exit::NotDone;
    }
    match op.get("error") {
        None => Exit::Succeeded,
        Some(e) if e["code"] == 1 => Exit::Cancelled,
        Some(_) => Exit::Failed,
    }
}

/// `--input`: JSON, or `@FILE` holding JSON.
fn parse_input(arg: &str) -> Result<Value, String> {
    let text = match arg.strip_prefix('@') {
        Some(path) => {
            std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?
        }
        None => arg.to_owned(),
    };
    serde_json::from_str(&text).map_err(|e| format!("not JSON: {e}"))
}

/// `--timeout` of `wait`: `30s`, `2m`, `1h 30m`, or fractional seconds such as `1.5s`.
fn parse_duration(arg: &str) -> Result<Duration, String> {
    if let Ok(d) = humantime::parse_duration(arg) {
        return Ok(d);
    }
    arg.strip_suffix('s')
        .and_then(|s| s.parse::<f64>().ok())
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
        .ok_or_else(|| format!("not a duration: {arg:?} (e.g. 30s, 1.5s, 2m)"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn outcomes_follow_the_contract() {
        assert_eq!(outcome(&json!({"done": false})), Exit::NotDone);
        assert_eq!(
            outcome(&json!({"done": true, "response": {}})),
            Exit::Succeeded
        );
        assert_eq!(
            outcome(&json!({"done": true, "error": {"code": 1}})),
            Exit::Cancelled
        );
        assert_eq!(
            outcome(&json!({"done": true, "error": {"code": 13}})),
            Exit::Failed
        );
    }

    #[test]
    fn durations_parse_in_both_forms() {
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn options_go_before_or_after_the_verb() {
        let a = Cli::try_parse_from(["lro", "-o", "json", "get", "operations/x"]).expect("parses");
        let b = Cli::try_parse_from(["lro", "get", "operations/x", "-o", "json"]).expect("parses");
        assert_eq!(a.output, Format::Json);
        assert_eq!(b.output, Format::Json);
        assert!(Cli::try_parse_from(["lro", "cancel", "--filter", "done=false"]).is_err());
        assert!(Cli::try_parse_from(["lro", "cancel"]).is_err());
    }
}
