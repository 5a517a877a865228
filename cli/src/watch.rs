//! `lro watch`: the operations of a parent, re-listed every second until Ctrl-C. On a terminal
//! the screen is redrawn in place; otherwise each refresh is printed after the last (a blank
//! line between), so a pipe or a log sees plain repeated tables.

use std::io::{IsTerminal, Write};
use std::time::{Duration, SystemTime};

use serde_json::Value;

use crate::Exit;
use crate::api::{Client, Error};
use crate::output::{self, Format};

const REFRESH: Duration = Duration::from_secs(1);
/// At most this many pages per refresh (of 1000): a live view, not an export.
const PAGES: usize = 5;

pub async fn watch(
    client: &Client,
    format: Format,
    parent: Option<&str>,
    filter: Option<&str>,
) -> Result<Exit, Error> {
    let terminal = std::io::stdout().is_terminal();
    // Listening from the start (not from the first wait for a refresh): a Ctrl-C at any moment
    // ends the watch cleanly, with status 0.
    let mut ctrl_c = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .map_err(|e| Error::Local(format!("cannot listen for Ctrl-C: {e}")))?;
    loop {
        let ops = snapshot(client, parent, filter).await?;
        let mut frame = String::new();
        if terminal {
            // Home and clear, then the table.
            frame += "\x1b[H\x1b[2J";
            frame += &format!(
                "lro watch {} (every {}s; Ctrl-C to stop)\n",
                parent.unwrap_or("operations"),
                REFRESH.as_secs()
            );
        }
        match format {
            Format::Table => frame += &format!("{}\n", output::list(&ops, SystemTime::now())),
            Format::Json => ops.iter().for_each(|op| frame += &format!("{op}\n")),
            Format::Name => ops
                .iter()
                .for_each(|op| frame += &format!("{}\n", output::name(op))),
        }
        if !terminal {
            frame += "\n";
        }
        // Nobody reading any more (a closed pipe) ends the watch as Ctrl-C does.
        let mut stdout = std::io::stdout();
        if stdout
            .write_all(frame.as_bytes())
            .and_then(|()| stdout.flush())
            .is_err()
        {
            return Ok(Exit::Succeeded);
        }
        tokio::select! {
            _ = ctrl_c.recv() => return Ok(Exit::Succeeded),
            () = tokio::time::sleep(REFRESH) => {}
        }
    }
}

async fn snapshot(
    client: &Client,
    parent: Option<&str>,
    filter: Option<&str>,
) -> Result<Vec<Value>, Error> {
    let mut ops = Vec::new();
    let mut token: Option<String> = None;
    for _ in 0..PAGES {
        let page = client
            .list(parent, filter, Some(1000), token.as_deref())
            .await?;
        ops.extend(page.operations);
        token = page.next_page_token;
        if token.is_none() {
            break;
        }
    }
    Ok(ops)
}
