//! The OpenAPI document of the REST surface (`api/openapi.json`, served at `GET /v1/openapi.json`)
//! kept true: the api serves it as it is, it describes every route of `api/src/route.rs` and
//! nothing the api does not route, its references resolve, and Schemathesis — generating
//! requests from it against a real api and worker, `tests/schemathesis/run.sh` — finds no 5xx
//! and no answer that breaks it.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::Value;

use crate::harness::Env;

/// Where the document describes each variant of `route::Route`: its method and paths. A variant
/// missing here fails the test (describe the new route in `api/openapi.json`, then list it here).
/// `Kinds` is listed ahead of the route itself, which another branch is adding.
const ROUTES: &[(&str, &str, &[&str])] = &[
    (
        "Submit",
        "post",
        &["/v1/jobs", "/v1/projects/{project}/jobs"],
    ),
    (
        "BatchSubmit",
        "post",
        &[
            "/v1/jobs:batchSubmit",
            "/v1/projects/{project}/jobs:batchSubmit",
        ],
    ),
    (
        "List",
        "get",
        &["/v1/operations", "/v1/projects/{project}/operations"],
    ),
    (
        "Get",
        "get",
        &[
            "/v1/operations/{operation}",
            "/v1/projects/{project}/operations/{operation}",
        ],
    ),
    (
        "Delete",
        "delete",
        &[
            "/v1/operations/{operation}",
            "/v1/projects/{project}/operations/{operation}",
        ],
    ),
    (
        "Cancel",
        "post",
        &[
            "/v1/operations/{operation}:cancel",
            "/v1/projects/{project}/operations/{operation}:cancel",
        ],
    ),
    (
        "Wait",
        "post",
        &[
            "/v1/operations/{operation}:wait",
            "/v1/projects/{project}/operations/{operation}:wait",
        ],
    ),
    (
        "BatchCancel",
        "post",
        &[
            "/v1/operations:batchCancel",
            "/v1/projects/{project}/operations:batchCancel",
        ],
    ),
    ("OpenApi", "get", &["/v1/openapi.json"]),
    ("Kinds", "get", &["/v1/kinds"]),
];

/// The variant names of `enum Route` in `api/src/route.rs`.
fn route_variants() -> BTreeSet<String> {
    let source = include_str!("../../../api/src/route.rs");
    let body = source
        .split_once("pub enum Route {")
        .and_then(|(_, rest)| rest.split_once("\n}"))
        .map(|(body, _)| body)
        .expect("route.rs declares `pub enum Route { … }`");
    body.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("//") && !l.starts_with('#'))
        .map(|l| {
            l.split(|c: char| !c.is_ascii_alphanumeric())
                .next()
                .unwrap_or_default()
                .to_owned()
        })
        .collect()
}

#[tokio::test]
async fn the_api_serves_the_document_and_it_describes_every_route() {
    let env = Env::start().await;
    let res = reqwest::get(format!("{}/v1/openapi.json", env.api.base))
        .await
        .expect("api answers");
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "application/json");
    let served = res.text().await.expect("body");
    assert_eq!(
        served,
        lro_api::OPENAPI_JSON,
        "the served document is not the file"
    );
    let doc: Value = serde_json::from_str(&served).expect("the document is JSON");
    assert!(
        doc["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1.")),
        "not OpenAPI 3.1: {}",
        doc["openapi"]
    );

    // route.rs → document: every route is described.
    let variants = route_variants();
    assert!(
        variants.contains("Submit") && variants.contains("OpenApi"),
        "{variants:?}"
    );
    let mut described = BTreeSet::new();
    for variant in &variants {
        let (_, method, paths) =
            ROUTES
                .iter()
                .find(|(v, _, _)| v == variant)
                .unwrap_or_else(|| {
                    panic!("Route::{variant} is not in ROUTES: describe it in api/openapi.json")
                });
        for path in *paths {
            assert!(
                doc["paths"][path][method].is_object(),
                "Route::{variant}: {} {path} is not in the document",
                method.to_uppercase()
            );
            described.insert((method.to_string(), path.to_string()));
        }
    }

    // Document → api: everything described is routed (answered by its handler, not by the
    // no-such-method 404), except routes route.rs does not have yet.
    let methods = [
        "get", "put", "post", "delete", "patch", "head", "options", "trace",
    ];
    let http = reqwest::Client::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in methods.iter().filter(|m| item.get(**m).is_some()) {
            let key = (method.to_string(), path.clone());
            if !described.contains(&key) {
                let pending = ROUTES.iter().any(|(v, m, ps)| {
                    m == method && ps.contains(&path.as_str()) && !variants.contains(*v)
                });
                assert!(
                    pending,
                    "{method} {path} is in the document but not in ROUTES"
                );
                continue;
            }
            let url = path.replace("{project}", "p").replace("{operation}", "x");
            let verb = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let res = http
                .request(verb, format!("{}{url}", env.api.base))
                .send()
                .await
                .expect("api answers");
            let status = res.status().as_u16();
            let body: Value = res.json().await.expect("a JSON answer");
            let reason = &body["error"]["details"][0]["reason"];
            assert_ne!(reason, "NO_SUCH_METHOD", "{method} {url}: {status} {body}");
        }
    }

    // Every `$ref` resolves, and every link names an operation of the document.
    let mut refs = Vec::new();
    let mut links = Vec::new();
    walk(&doc, &mut refs, &mut links);
    for r in &refs {
        let pointer = r.strip_prefix('#').expect("local $ref");
        assert!(doc.pointer(pointer).is_some(), "$ref {r} does not resolve");
    }
    let mut ids = BTreeSet::new();
    for item in doc["paths"].as_object().expect("paths").values() {
        for method in methods {
            if let Some(id) = item[method]["operationId"].as_str() {
                assert!(ids.insert(id.to_owned()), "operationId {id} twice");
            }
        }
    }
    assert!(!links.is_empty(), "the document has no links");
    for id in &links {
        assert!(
            ids.contains(id),
            "a link names operationId {id}, which is not in the document"
        );
    }
}

/// Collects every `$ref` and every link's `operationId`.
fn walk(v: &Value, refs: &mut Vec<String>, links: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            if let Some(Value::String(r)) = m.get("$ref") {
                refs.push(r.clone());
            }
            if let Some(Value::Object(ls)) = m.get("links") {
                for l in ls.values() {
                    if let Some(id) = l["operationId"].as_str() {
                        links.push(id.to_owned());
                    }
                }
            }
            m.values().for_each(|x| walk(x, refs, links));
        }
        Value::Array(a) => a.iter().for_each(|x| walk(x, refs, links)),
        _ => {}
    }
}

#[tokio::test]
async fn schemathesis_finds_no_5xx_and_no_contract_violations() {
    // `:wait` is capped at 0.5 s so that the generated waits (many on operations that never end)
    // keep the run short.
    let env = Env::start_with(|c| c.max_wait = Duration::from_millis(500)).await;
    schemathesis(&env, &[]).await;
}

/// The same with authentication on and an admin token on every request — and Schemathesis's
/// `ignored_auth` check, which sends each request without it and expects a 401.
#[tokio::test]
async fn schemathesis_with_tokens_finds_no_5xx_and_no_contract_violations() {
    let creds = crate::auth::Creds::new();
    let env = creds.env(|c| c.max_wait = Duration::from_millis(500)).await;
    let token = crate::auth::hs256(&crate::auth::claims("schemathesis", "lro.admin"));
    schemathesis(&env, &[&format!("Authorization: Bearer {token}")]).await;
}

/// Runs `tests/schemathesis/run.sh` against `env` with these headers on every request, and the
/// real worker command as a child process; asserts it found nothing and prints its figures.
async fn schemathesis(env: &Env, headers: &[&str]) {
    // The real worker command with the built-in kinds, as a child process (killed when dropped):
    // generated `spin` inputs ask for up to 2^64 - 1 iterations, which run until cancelled, and an
    // in-process worker's blocking threads would outlive the test's runtime. One slot bounds that
    // to one core while the run lasts; the kill ends it.
    let _worker = env.worker_process("schemathesis", 1, &[]);
    let started = std::time::Instant::now();
    let mut args = vec![env.api.base.as_str()];
    for h in headers {
        args.extend(["--header", h]);
    }
    let stdout = crate::harness::run_script("schemathesis/run.sh", args).await;
    // The figures (shown with `--nocapture`): requests made, cases, failures, time.
    for line in stdout.lines().filter(|l| {
        l.starts_with("schemathesis:")
            || l.starts_with("openapi:")
            || l.contains("generated")
            || l.contains("API Links")
            || l.starts_with("===") && l.contains(" in ")
    }) {
        println!("{}", line.trim());
    }
    println!("schemathesis run took {:.1?}", started.elapsed());
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("schemathesis:") && l.contains("requests")),
        "no request count in:\n{stdout}"
    );
}
