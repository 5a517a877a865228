//! What a credential may do: scopes per method over both transports, and tenants (`lro_parents`).

use super::*;

#[tokio::test]
async fn a_read_only_token_reads_but_changes_nothing() {
    let creds = Creds::new();
    let env = creds.env(|_| {}).await;
    let submitter = env.api.bearer(&hs256(&claims("sam", "lro.jobs.submit")));
    let reader = env.api.bearer(&hs256(&claims("rita", READ)));
    let op = submitter
        .submit("", "sleep", json!({"duration": "60s"}))
        .await;
    let name = name_of(&op);
    // The submitter cannot read what it submitted: submitting is all its scope allows.
    refused(
        &submitter.get(&name).await,
        403,
        "ACCESS_TOKEN_SCOPE_INSUFFICIENT",
    );
    assert_eq!(reader.get(&name).await.ok()["name"], name);
    assert_eq!(reader.wait(&name, "0.01s").await.ok()["name"], name);
    let listed = reader.list("operations", "").await.ok();
    assert_eq!(listed["operations"][0]["name"], name, "{listed}");
    refused(
        &reader.cancel(&name).await,
        403,
        "ACCESS_TOKEN_SCOPE_INSUFFICIENT",
    );
    refused(
        &reader.delete(&name).await,
        403,
        "ACCESS_TOKEN_SCOPE_INSUFFICIENT",
    );
    refused(
        &reader.submit_with("", json!({"kind": "noop"})).await,
        403,
        "ACCESS_TOKEN_SCOPE_INSUFFICIENT",
    );
    // Listing kinds is a read too.
    let kinds = reader.call("GET", "/v1/kinds", None).await.ok();
    assert!(
        kinds["kinds"].as_array().is_some_and(|k| !k.is_empty()),
        "{kinds}"
    );
    refused(
        &submitter.call("GET", "/v1/kinds", None).await,
        403,
        "ACCESS_TOKEN_SCOPE_INSUFFICIENT",
    );
    refused(
        &env.api.call("GET", "/v1/kinds", None).await,
        401,
        "CREDENTIALS_MISSING",
    );
    let after = reader.get(&name).await.ok();
    assert_eq!(state_of(&after), "QUEUED", "{after}");
    let all = reader.list("operations", "").await.ok();
    assert_eq!(all["operations"].as_array().map(Vec::len), Some(1), "{all}");
}

#[tokio::test]
async fn tenants_reach_only_their_own_parents() {
    let creds = Creds::new();
    let env = creds.env(|_| {}).await;
    let admin = env.api.bearer(&hs256(&claims("root", "lro.admin")));
    let foreign = name_of(&admin.submit("projects/p2", "noop", json!({})).await);
    let missing = "projects/p2/operations/0190c6a5-0000-7000-8000-000000000000";
    let mut c = claims("tina", "lro.admin");
    c["lro_parents"] = json!(["projects/p1"]);
    let tina = env.api.bearer(&hs256(&c));

    let own = name_of(&tina.submit("projects/p1", "noop", json!({})).await);
    let nested = name_of(
        &tina
            .submit("projects/p1/locations/l", "noop", json!({}))
            .await,
    );
    assert_eq!(tina.get(&own).await.ok()["name"], own);
    assert_eq!(tina.get(&nested).await.ok()["name"], nested);
    let listed = tina.list("projects/p1/operations", "").await.ok();
    assert_eq!(listed["operations"][0]["name"], own, "{listed}");
    // Foreign names are refused alike whether they exist or not: nothing is learned.
    for name in [foreign.as_str(), missing] {
        refused(&tina.get(name).await, 403, "IAM_PERMISSION_DENIED");
        refused(&tina.cancel(name).await, 403, "IAM_PERMISSION_DENIED");
        refused(&tina.delete(name).await, 403, "IAM_PERMISSION_DENIED");
        refused(
            &tina.wait(name, "0.01s").await,
            403,
            "IAM_PERMISSION_DENIED",
        );
    }
    let a = tina.get(&foreign).await.body;
    let b = tina.get(missing).await.body;
    assert_eq!(
        a["error"]["details"][0]["reason"],
        b["error"]["details"][0]["reason"]
    );
    for collection in [
        "projects/p2/operations",
        "operations",
        "projects/p10/operations",
    ] {
        refused(
            &tina.list(collection, "").await,
            403,
            "IAM_PERMISSION_DENIED",
        );
    }
    refused(
        &tina
            .submit_with("projects/p10", json!({"kind": "noop"}))
            .await,
        403,
        "IAM_PERMISSION_DENIED",
    );
    // The foreign operation is untouched.
    assert_eq!(admin.get(&foreign).await.ok()["name"], foreign);

    // `""` is the top level's own operations, and only those.
    let mut c = claims("rory", "lro.admin");
    c["lro_parents"] = json!([""]);
    let rory = env.api.bearer(&hs256(&c));
    let top = name_of(&rory.submit("", "noop", json!({})).await);
    assert_eq!(rory.get(&top).await.ok()["name"], top);
    rory.list("operations", "").await.ok();
    refused(&rory.get(&own).await, 403, "IAM_PERMISSION_DENIED");
    refused(
        &rory.list("projects/p1/operations", "").await,
        403,
        "IAM_PERMISSION_DENIED",
    );

    // The same over gRPC.
    let grpc = Grpc::connect(&env).await;
    let auth = format!(
        "Bearer {}",
        hs256(&{
            let mut c = claims("tina", "lro.admin");
            c["lro_parents"] = json!(["projects/p1"]);
            c
        })
    );
    let cred = Some(("authorization", auth.as_str()));
    for name in [foreign.as_str(), missing] {
        let req = with_creds(GetOperationRequest { name: name.into() }, cred);
        let e = grpc
            .ops
            .clone()
            .get_operation(req)
            .await
            .expect_err("refused");
        assert_eq!(
            grpc_refusal(&e),
            (
                tonic::Code::PermissionDenied,
                "IAM_PERMISSION_DENIED".into()
            )
        );
    }
    let req = with_creds(
        ListOperationsRequest {
            name: "projects/p2/operations".into(),
            ..Default::default()
        },
        cred,
    );
    let e = grpc
        .ops
        .clone()
        .list_operations(req)
        .await
        .expect_err("refused");
    assert_eq!(e.code(), tonic::Code::PermissionDenied);
    let req = with_creds(GetOperationRequest { name: own.clone() }, cred);
    let got = grpc.ops.clone().get_operation(req).await.expect("own");
    assert_eq!(got.into_inner().name, own);
}

#[tokio::test]
async fn grpc_submit_needs_its_scope() {
    let creds = Creds::new();
    let env = creds.env(|_| {}).await;
    let grpc = Grpc::connect(&env).await;
    let submit = || SubmitJobRequest {
        kind: "noop".into(),
        ..Default::default()
    };
    let e = grpc
        .jobs
        .clone()
        .submit_job(with_creds(submit(), None))
        .await
        .expect_err("no credentials");
    assert_eq!(
        grpc_refusal(&e),
        (tonic::Code::Unauthenticated, "CREDENTIALS_MISSING".into())
    );
    let reader = format!("Bearer {}", hs256(&claims("rita", READ)));
    let e = grpc
        .jobs
        .clone()
        .submit_job(with_creds(
            submit(),
            Some(("authorization", reader.as_str())),
        ))
        .await
        .expect_err("no scope");
    assert_eq!(e.code(), tonic::Code::PermissionDenied);
    let submitter = format!("Bearer {}", hs256(&claims("sam", "lro.jobs.submit")));
    let op = grpc
        .jobs
        .clone()
        .submit_job(with_creds(
            submit(),
            Some(("authorization", submitter.as_str())),
        ))
        .await
        .expect("submitted")
        .into_inner();
    let admin = env.api.bearer(&hs256(&claims("root", "lro.admin")));
    assert_eq!(admin.get(&op.name).await.ok()["name"], op.name);
}
