//! The verbs that make one call (or one call per name, or per page): submit, get, list, cancel
//! by name, delete. `submit --wait` hands over to [`crate::wait`].

use serde_json::{Map, Value};

use crate::api::{Client, Error};
use crate::output::{self, Format};
use crate::{Exit, wait};

/// What `lro submit` sends.
pub struct Submit {
    pub kind: String,
    pub input: Option<Value>,
    pub parent: Option<String>,
    pub request_id: Option<String>,
    pub timeout: Option<String>,
}

pub async fn submit(
    client: &Client,
    format: Format,
    s: Submit,
    and_wait: bool,
) -> Result<Exit, Error> {
    let mut body = Map::new();
    body.insert("kind".into(), Value::String(s.kind));
    if let Some(input) = s.input {
        body.insert("input".into(), input);
    }
    if let Some(id) = s.request_id {
        body.insert("requestId".into(), Value::String(id));
    }
    if let Some(t) = s.timeout {
        // `2m` or `1.5s` become the proto3 form; anything else goes as given, for the api to judge.
        let t = crate::parse_duration(&t).map_or(t, crate::api::proto_duration);
        body.insert("timeout".into(), Value::String(t));
    }
    let op = client
        .submit(s.parent.as_deref(), &Value::Object(body))
        .await?;
    if and_wait {
        let name = output::name(&op).to_owned();
        return wait::wait(client, format, &name, None).await;
    }
    output::operation(format, &op);
    Ok(Exit::Succeeded)
}

pub async fn get(client: &Client, format: Format, name: &str) -> Result<Exit, Error> {
    output::operation(format, &client.get(name).await?);
    Ok(Exit::Succeeded)
}

pub async fn list(
    client: &Client,
    format: Format,
    parent: Option<&str>,
    filter: Option<&str>,
    page_size: Option<u32>,
    all: bool,
) -> Result<Exit, Error> {
    let mut ops = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = client
            .list(parent, filter, page_size, token.as_deref())
            .await?;
        ops.extend(page.operations);
        token = page.next_page_token;
        if !all || token.is_none() {
            break;
        }
    }
    output::operations(format, &ops);
    if token.is_some() && format == Format::Table {
        eprintln!("(more operations: lro list --all)");
    }
    Ok(Exit::Succeeded)
}

/// Cancels each name in turn; one that fails is reported (one line) and the rest still go.
/// Prints per name what the api answered (`{}` with `-o json`).
pub async fn cancel(client: &Client, format: Format, names: &[String]) -> Exit {
    let mut exit = Exit::Succeeded;
    for name in names {
        match client.cancel(name).await {
            Ok(answer) => acknowledge(format, name, &answer, "cancel requested"),
            Err(e) => {
                eprintln!("lro: {e}");
                exit = Exit::ApiError;
            }
        }
    }
    exit
}

pub async fn delete(client: &Client, format: Format, name: &str) -> Result<Exit, Error> {
    let answer = client.delete(name).await?;
    acknowledge(format, name, &answer, "deleted");
    Ok(Exit::Succeeded)
}

/// For a call that answers `{}`, not an operation: the answer with `-o json`, the name with
/// `-o name`, a sentence otherwise.
fn acknowledge(format: Format, name: &str, answer: &Value, done: &str) {
    let name = crate::api::trim_name(name);
    match format {
        Format::Json => output::line(answer),
        Format::Name => output::line(name),
        Format::Table => output::line(format!("{name}: {done}")),
    }
}
