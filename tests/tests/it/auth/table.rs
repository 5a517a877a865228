//! Every row of the contract's authentication error table, over REST and gRPC.

use super::*;

#[tokio::test]
async fn every_row_of_the_auth_error_table_over_rest_and_grpc() {
    let creds = Creds::new();
    let env = creds.env(|_| {}).await;
    let grpc = Grpc::connect(&env).await;
    let admin = hs256(&claims("alice", "lro.admin"));
    let op = env
        .api
        .bearer(&admin)
        .submit("projects/p1", "sleep", json!({"duration": "60s"}))
        .await;
    let name = name_of(&op);

    let mut no_exp = claims("alice", READ);
    no_exp.as_object_mut().expect("object").remove("exp");
    let mut expired = claims("alice", READ);
    expired["exp"] = json!(now() - 3600);
    let mut early = claims("alice", READ);
    early["nbf"] = json!(now() + 3600);
    let mut wrong_iss = claims("alice", READ);
    wrong_iss["iss"] = json!("https://elsewhere.test");
    let mut wrong_aud = claims("alice", READ);
    wrong_aud["aud"] = json!("someone-else");
    let mut tenant = claims("alice", "lro.admin");
    tenant["lro_parents"] = json!(["projects/p2"]);
    let good = claims("alice", READ);
    let bearer = |t: String| Some(("authorization", format!("Bearer {t}")));
    let cases: Vec<(&str, Cred, u16, &str)> = vec![
        ("no credentials", None, 401, "CREDENTIALS_MISSING"),
        (
            "expired",
            bearer(hs256(&expired)),
            401,
            "ACCESS_TOKEN_EXPIRED",
        ),
        (
            "bad signature",
            bearer(hs256_with(&good, b"another-secret-another-secret!!!")),
            401,
            "ACCESS_TOKEN_INVALID",
        ),
        (
            "malformed",
            bearer("not.a.jwt".into()),
            401,
            "ACCESS_TOKEN_INVALID",
        ),
        (
            "not bearer",
            Some(("authorization", "Basic YWxpY2U6eA==".into())),
            401,
            "ACCESS_TOKEN_INVALID",
        ),
        (
            "no exp",
            bearer(hs256(&no_exp)),
            401,
            "ACCESS_TOKEN_INVALID",
        ),
        (
            "before nbf",
            bearer(hs256(&early)),
            401,
            "ACCESS_TOKEN_INVALID",
        ),
        (
            "wrong iss",
            bearer(hs256(&wrong_iss)),
            401,
            "ACCESS_TOKEN_INVALID",
        ),
        (
            "wrong aud",
            bearer(hs256(&wrong_aud)),
            401,
            "ACCESS_TOKEN_INVALID",
        ),
        (
            "unknown kid",
            bearer(signed(&good, "ec-private.pem", Algorithm::ES256, "nope")),
            401,
            "ACCESS_TOKEN_INVALID",
        ),
        (
            "key not in the JWKS",
            bearer(signed(
                &good,
                "ec-other-private.pem",
                Algorithm::ES256,
                "ec-1",
            )),
            401,
            "ACCESS_TOKEN_INVALID",
        ),
        (
            "unknown API key",
            Some(("x-goog-api-key", "no-such-key".into())),
            401,
            "ACCESS_TOKEN_INVALID",
        ),
        (
            "scope missing",
            bearer(hs256(&good)),
            403,
            "ACCESS_TOKEN_SCOPE_INSUFFICIENT",
        ),
        (
            "outside its parents",
            bearer(hs256(&tenant)),
            403,
            "IAM_PERMISSION_DENIED",
        ),
    ];
    for (what, cred, http, reason) in cases {
        // A cancel: every row applies to it (the read-only token lacks its scope).
        let api = match &cred {
            Some((k, v)) => env.api.with_header(k, v),
            None => env.api.clone(),
        };
        let reply = api.cancel(&name).await;
        refused(&reply, http, reason);
        let req = with_creds(
            CancelOperationRequest { name: name.clone() },
            cred.as_ref().map(|(k, v)| (*k, v.as_str())),
        );
        let status = grpc
            .ops
            .clone()
            .cancel_operation(req)
            .await
            .expect_err(what);
        let code = if http == 401 {
            tonic::Code::Unauthenticated
        } else {
            tonic::Code::PermissionDenied
        };
        assert_eq!(grpc_refusal(&status), (code, reason.to_owned()), "{what}");
        println!("{what}: REST {http} {reason}; gRPC {code:?} {reason}");
    }
    // None of it cancelled anything.
    let now = env.api.bearer(&admin).get(&name).await.ok();
    assert_eq!(state_of(&now), "QUEUED", "{now}");
    assert!(now["metadata"].get("cancelRequested").is_none(), "{now}");
}
