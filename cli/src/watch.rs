//! `lro watch`: the operations of a parent, re-listed every second until Ctrl-C. On a terminal
//! the screen is redrawn in place; otherwise each refresh is printed after the last (a blank
//! line between), so a pipe or a log sees plain repeated tables.

use std::io::IsTerminal;
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
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        let ops = snapshot(client, parent, filter).await?;
        if terminal {
            // Home and clear, then the table.
            print!("\x1b[H\x1b[2J");
            println!(
                "lro watch {} (every {}s; Ctrl-C to stop)",
                parent.unwrap_or(""),
                REFRESH.as_secs()
            );
        }
        match format {
            Format::Table => println!("{}", output::list(&ops, SystemTime::now())),
            other => output::operations(other, &ops),
        }
        if !terminal {
            println!();
        }
        tokio::select! {
            _ = &mut ctrl_c => return Ok(Exit::Succeeded),
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
