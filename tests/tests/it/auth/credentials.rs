//! The kinds of credential and what the api does with them: API keys, RS256/ES256 tokens by key
//! id, a verified token's reuse, the rate limit per principal, and who asked for a cancel.

use super::*;

#[tokio::test]
async fn api_keys_work_from_the_header_and_the_query() {
    let creds = Creds::new();
    let env = creds.env(|_| {}).await;
    let admin = env.api.with_header("x-goog-api-key", "key-admin");
    let op = admin.submit("projects/k1", "noop", json!({})).await;
    let name = name_of(&op);
    let by_query = env.api.get(&format!("{name}?key=key-reader")).await.ok();
    assert_eq!(by_query["name"], name);
    let reader = env.api.with_header("x-goog-api-key", "key-reader");
    assert_eq!(reader.get(&name).await.ok()["name"], name);
    refused(
        &reader.delete(&name).await,
        403,
        "ACCESS_TOKEN_SCOPE_INSUFFICIENT",
    );
    // The admin key is limited to its parent.
    refused(
        &admin
            .submit_with("projects/k2", json!({"kind": "noop"}))
            .await,
        403,
        "IAM_PERMISSION_DENIED",
    );
    refused(
        &env.api.get(&format!("{name}?key=wrong")).await,
        401,
        "ACCESS_TOKEN_INVALID",
    );
    // The key's name is who cancelled.
    let running = admin
        .submit("projects/k1", "sleep", json!({"duration": "60s"}))
        .await;
    let running = name_of(&running);
    admin.cancel(&running).await.ok();
    let done = admin.get(&running).await.ok();
    assert_eq!(done["metadata"]["cancelRequestedBy"], "ci-admin", "{done}");
    // Over gRPC.
    let grpc = Grpc::connect(&env).await;
    let req = with_creds(
        GetOperationRequest { name: name.clone() },
        Some(("x-goog-api-key", "key-reader")),
    );
    let got = grpc.ops.clone().get_operation(req).await.expect("reads");
    assert_eq!(got.into_inner().name, name);
    let req = with_creds(
        DeleteOperationRequest { name: name.clone() },
        Some(("x-goog-api-key", "key-reader")),
    );
    let e = grpc
        .ops
        .clone()
        .delete_operation(req)
        .await
        .expect_err("no scope");
    assert_eq!(e.code(), tonic::Code::PermissionDenied);
}

#[tokio::test]
async fn rs256_and_es256_tokens_are_verified_by_key_id() {
    let creds = Creds::new();
    let env = creds.env(|_| {}).await;
    let c = claims("kim", "lro.admin");
    let rsa = env
        .api
        .bearer(&signed(&c, "rsa-private.pem", Algorithm::RS256, "rsa-1"));
    let ec = env
        .api
        .bearer(&signed(&c, "ec-private.pem", Algorithm::ES256, "ec-1"));
    let name = name_of(&rsa.submit("", "noop", json!({})).await);
    assert_eq!(ec.get(&name).await.ok()["name"], name);
    // A key verifies only its own algorithm: the RSA key id on an ES256 token is refused.
    let mixed = env
        .api
        .bearer(&signed(&c, "ec-private.pem", Algorithm::ES256, "rsa-1"));
    refused(&mixed.get(&name).await, 401, "ACCESS_TOKEN_INVALID");
    // An `exp` with a fraction (as some issuers write it) is read too.
    let mut fractional = claims("kim", READ);
    fractional["exp"] = json!(now() as f64 + 600.5);
    let r = env.api.bearer(&hs256(&fractional)).get(&name).await;
    assert_eq!(r.ok()["name"], name);
    // `scp` as an array is read as well as `scope`.
    let mut scp = claims("kim", "");
    scp["scp"] = json!([READ]);
    let reader = env.api.bearer(&hs256(&scp));
    assert_eq!(reader.get(&name).await.ok()["name"], name);
    refused(
        &reader.delete(&name).await,
        403,
        "ACCESS_TOKEN_SCOPE_INSUFFICIENT",
    );
}

#[tokio::test]
async fn a_verified_token_is_reused_until_it_expires() {
    // A token that expires in 2 s works, then is refused as expired (the cache honours `exp`,
    // with the documented leeway).
    let creds = Creds::new();
    let env = creds.env(|_| {}).await;
    let mut c = claims("ed", READ);
    let leeway = i64::try_from(lro_api::auth::LEEWAY_SECS).expect("leeway");
    c["exp"] = json!(now() - leeway + 2);
    let api = env.api.bearer(&hs256(&c));
    let first = api.list("operations", "").await;
    assert_eq!(first.status, 200, "{first:?}");
    let until = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let r = api.list("operations", "").await;
        if r.status == 401 {
            refused(&r, 401, "ACCESS_TOKEN_EXPIRED");
            break;
        }
        assert_eq!(r.status, 200, "{r:?}");
        assert!(std::time::Instant::now() < until, "never expired");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn over_the_rate_limit_is_429_with_retry_info_per_principal() {
    let creds = Creds::new();
    let limit: RateLimit = "1/h,burst=3".parse().expect("limit");
    let env = creds.env(|c| c.rate_limit = Some(limit)).await;
    let alice = env.api.bearer(&hs256(&claims("alice", "lro.admin")));
    let name = name_of(&alice.submit("", "noop", json!({})).await);
    alice.get(&name).await.ok();
    alice.get(&name).await.ok();
    let over = alice.get(&name).await;
    refused(&over, 429, "RATE_LIMIT_EXCEEDED");
    let retry = &over.body["error"]["details"][1];
    assert_eq!(
        retry["@type"], "type.googleapis.com/google.rpc.RetryInfo",
        "{over:?}"
    );
    let delay = retry["retryDelay"].as_str().expect("retryDelay");
    let secs: f64 = delay.trim_end_matches('s').parse().expect("seconds");
    assert!(secs > 60.0 && secs <= 3600.0, "{delay}");
    // Another principal has a bucket of its own.
    let bob = env.api.bearer(&hs256(&claims("bob", "lro.admin")));
    assert_eq!(bob.get(&name).await.ok()["name"], name);
    // Over gRPC the same bucket answers RESOURCE_EXHAUSTED.
    let grpc = Grpc::connect(&env).await;
    let token = format!("Bearer {}", hs256(&claims("alice", "lro.admin")));
    let req = with_creds(
        GetOperationRequest { name: name.clone() },
        Some(("authorization", token.as_str())),
    );
    let e = grpc
        .ops
        .clone()
        .get_operation(req)
        .await
        .expect_err("limited");
    assert_eq!(
        grpc_refusal(&e),
        (tonic::Code::ResourceExhausted, "RATE_LIMIT_EXCEEDED".into())
    );
    let details = rpc::Status::decode(e.details()).expect("details");
    assert!(
        details
            .details
            .iter()
            .any(|d| d.type_url == "type.googleapis.com/google.rpc.RetryInfo"),
        "{details:?}"
    );
}

#[tokio::test]
async fn a_cancel_records_who_asked_first() {
    let creds = Creds::new();
    let mut env = creds.env(|_| {}).await;
    let probe = crate::harness::Probe::default();
    env.worker(probe.kinds(), 4).await;
    let alice = env.api.bearer(&hs256(&claims("alice", "lro.admin")));
    let bob = env.api.bearer(&hs256(&claims("bob", "lro.admin")));
    let op = alice.submit("", "gate", json!({})).await;
    let name = name_of(&op);
    probe.started(&name).await;
    bob.cancel(&name).await.ok();
    alice.cancel(&name).await.ok();
    let done = alice.done(&name).await;
    assert_eq!(state_of(&done), "CANCELLED", "{done}");
    assert_eq!(done["metadata"]["cancelRequestedBy"], "bob", "{done}");
    // Over gRPC too.
    let grpc = Grpc::connect(&env).await;
    let queued = alice.submit("", "sleep", json!({"duration": "60s"})).await;
    let queued = name_of(&queued);
    let token = format!("Bearer {}", hs256(&claims("carol", "lro.admin")));
    let req = with_creds(
        CancelOperationRequest {
            name: queued.clone(),
        },
        Some(("authorization", token.as_str())),
    );
    grpc.ops
        .clone()
        .cancel_operation(req)
        .await
        .expect("cancels");
    let done = alice.get(&queued).await.ok();
    assert_eq!(done["metadata"]["cancelRequestedBy"], "carol", "{done}");
}
