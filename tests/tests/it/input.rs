//! Bad input of every sort: a 4xx in the AIP-193 envelope, never a 5xx, and nothing changes.

use serde_json::{Value, json};

use crate::harness::{Env, name_of};

#[tokio::test]
async fn bad_requests_are_refused_in_the_envelope_and_create_nothing() {
    let env = Env::start().await;
    let api = &env.api;
    let real = name_of(&api.submit("projects/p", "sleep", json!({})).await);
    let before = api.get(&real).await.ok();

    // Bodies of `POST /v1/jobs` that are not a valid submission.
    let raw_bodies: Vec<Vec<u8>> = vec![
        b"{\"kind\": ".to_vec(),
        b"[1,2]".to_vec(),
        b"null".to_vec(),
        Vec::new(),
        format!(
            "{{\"kind\":\"noop\",\"input\":{{\"pad\":\"{}\"}}}}",
            "x".repeat(2 << 20)
        )
        .into_bytes(),
    ];
    let json_bodies = [
        json!({ "kind": "nope" }),
        json!({ "input": {} }),
        json!({ "kind": 5 }),
        json!({ "kind": "noop", "extra": 1 }),
        json!({ "kind": "noop", "input": [1] }),
        json!({ "kind": "noop", "timeout": "-5s" }),
        json!({ "kind": "noop", "timeout": "soon" }),
        json!({ "kind": "noop", "timeout": "0s" }),
        json!({ "kind": "noop", "requestId": "" }),
        json!({ "kind": "noop", "requestId": "a b" }),
        json!({ "kind": "noop", "requestId": "r".repeat(129) }),
    ];
    let mut cases: Vec<(&str, String, Option<Vec<u8>>, u16)> = Vec::new();
    for b in raw_bodies
        .into_iter()
        .chain(json_bodies.iter().map(to_bytes))
    {
        cases.push(("POST", "/v1/jobs".into(), Some(b), 400));
    }
    cases.push(("POST", "/v1/jobs".into(), None, 400));

    let noop = to_bytes(&json!({ "kind": "noop" }));
    let long = "p".repeat(600);
    // Parents and names that do not fit the resource-name rules.
    for parent in [
        "projects/%2E%2E",
        "projects/..",
        "projects/.",
        "projects/a%20b",
        "projects/a%2Fb",
        "projects//x",
        &format!("projects/{long}"),
    ] {
        cases.push((
            "POST",
            format!("/v1/{parent}/jobs"),
            Some(noop.clone()),
            400,
        ));
    }
    for name in [
        "operations/%2E%2E",
        "operations/.",
        "operations/a%2Fb",
        "operations/a%00b",
        "operations/%ZZ",
        "projects/%2E%2E/operations/x",
    ] {
        cases.push(("GET", format!("/v1/{name}"), None, 400));
        cases.push(("DELETE", format!("/v1/{name}"), None, 400));
        cases.push(("POST", format!("/v1/{name}:cancel"), None, 400));
        cases.push(("POST", format!("/v1/{name}:wait"), None, 400));
    }
    for bad in [
        b"{oops".to_vec(),
        to_bytes(&json!({ "name": "operations/other" })),
        to_bytes(&json!({ "why": 1 })),
    ] {
        cases.push(("POST", format!("/v1/{real}:cancel"), Some(bad), 400));
    }
    cases.push((
        "POST",
        format!("/v1/{real}:wait"),
        Some(to_bytes(&json!({ "timeout": 5 }))),
        400,
    ));

    // Routes and methods that do not exist. A parent that is not collection/id pairs matches no
    // route either.
    for (method, path) in [
        ("POST", format!("/v1/{real}:explode")),
        ("PUT", format!("/v1/{real}")),
        ("PATCH", "/v1/jobs".into()),
        ("GET", "/v1/jobs".into()),
        ("POST", "/v1/projects/jobs".into()),
        ("GET", "/v1/projects/p/operations/x/y".into()),
        ("GET", "/v2/operations".into()),
        // `GET /` is the dashboard; other methods on it, and other files, are no routes.
        ("POST", "/".into()),
        ("GET", "/index.html".into()),
    ] {
        cases.push((method, path, None, 404));
    }

    for (method, path, payload, http) in cases {
        let reply = match payload {
            // Too big for a blocking write to a server that refuses it early: a real client.
            Some(big) if big.len() > 1 << 20 => api.raw(method, &path, Some(big)).await,
            payload => api.verbatim(method, &path, payload.as_deref()).await,
        };
        let shown: String = path.chars().take(80).collect();
        assert!(reply.status < 500, "{method} {shown}: {reply:?}");
        assert_eq!(reply.status, http, "{method} {shown}: {reply:?}");
        reply.error(
            http,
            if http == 400 {
                "INVALID_ARGUMENT"
            } else {
                "NOT_FOUND"
            },
        );
    }

    // Nothing was created or changed anywhere.
    assert_eq!(api.get(&real).await.ok(), before);
    let listed = api.list("projects/p/operations", "").await.ok();
    assert_eq!(
        listed["operations"].as_array().map(Vec::len),
        Some(1),
        "{listed}"
    );
    assert_eq!(api.list("operations", "").await.ok(), json!({}));
}

fn to_bytes(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).expect("json")
}
