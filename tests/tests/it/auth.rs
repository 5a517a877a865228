//! Authentication and authorization as a caller meets them, over REST and gRPC: every row of the
//! contract's error table, scopes per method, tenants (`lro_parents`), API keys, JWKS keys, the
//! rate limit and who cancelled (the audit log and the loopback refusal are in `audit.rs`); and
//! the credentials other tests use (`Creds`, `claims`, `hs256`).

use std::path::PathBuf;
use std::time::Duration;

use crate::grpc::Grpc;
use crate::harness::{Env, name_of, state_of};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use lro_api::pb::google::longrunning::{
    CancelOperationRequest, DeleteOperationRequest, GetOperationRequest, ListOperationsRequest,
};
use lro_api::pb::google::rpc;
use lro_api::pb::lro::v1::SubmitJobRequest;
use lro_api::{AuthConfig, RateLimit};
use prost::Message;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const SECRET: &[u8] = b"test-secret-of-at-least-32-bytes!!";
const ISSUER: &str = "https://issuer.test";
const AUDIENCE: &str = "lro-test";
const KEYS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/keys");
pub const READ: &str = "lro.operations.read";

/// Credential files in a directory of their own, and tokens minted for them.
pub struct Creds {
    pub dir: PathBuf,
}

impl Creds {
    pub fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("lro-auth-{}", uuid::Uuid::now_v7().simple()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        // The secret file ends in a newline, which the contract says is ignored.
        std::fs::write(dir.join("secret"), [SECRET, b"\n"].concat()).expect("secret");
        let keys = json!({"keys": [
            {"name": "ci-reader", "sha256": sha256("key-reader"), "scopes": [READ]},
            {"name": "ci-admin", "sha256": sha256("key-admin"), "scopes": ["lro.admin"],
             "parents": ["projects/k1"]},
        ]});
        std::fs::write(dir.join("keys.json"), keys.to_string()).expect("keys");
        Self { dir }
    }

    fn config(&self) -> AuthConfig {
        AuthConfig {
            hs256_secret_file: Some(self.dir.join("secret")),
            jwks_file: Some(format!("{KEYS}/jwks.json").into()),
            issuer: Some(ISSUER.into()),
            audience: Some(AUDIENCE.into()),
            api_keys_file: Some(self.dir.join("keys.json")),
        }
    }

    pub async fn env(&self, configure: impl FnOnce(&mut lro_api::ApiConfig)) -> Env {
        let auth = self.config();
        Env::start_with(|c| {
            c.auth = auth;
            configure(c);
        })
        .await
    }
}

impl Drop for Creds {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn sha256(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

pub fn now() -> i64 {
    i64::try_from(jsonwebtoken::get_current_timestamp()).expect("time")
}

/// Valid claims for `sub` with these scopes; tests change what they test.
pub fn claims(sub: &str, scope: &str) -> Value {
    json!({"sub": sub, "scope": scope, "iss": ISSUER, "aud": AUDIENCE, "exp": now() + 600})
}

pub fn hs256(claims: &Value) -> String {
    hs256_with(claims, SECRET)
}

fn hs256_with(claims: &Value, secret: &[u8]) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret).expect("key"),
    )
    .expect("token")
}

/// A token signed with one of the test keys in `tests/keys` (PEM file, JWS algorithm, kid).
fn signed(claims: &Value, pem: &str, alg: Algorithm, kid: &str) -> String {
    let pem = std::fs::read(format!("{KEYS}/{pem}")).expect("key file");
    let key = match alg {
        Algorithm::RS256 => EncodingKey::from_rsa_pem(&pem),
        _ => EncodingKey::from_ec_pem(&pem),
    }
    .expect("key");
    let mut header = Header::new(alg);
    header.kid = Some(kid.into());
    jsonwebtoken::encode(&header, claims, &key).expect("token")
}

/// A credential to send: a header (or gRPC metadata) name and value, or none.
type Cred = Option<(&'static str, String)>;

/// Asserts an error with this HTTP status and `ErrorInfo.reason`.
#[track_caller]
pub fn refused(reply: &crate::harness::Reply, http: u16, reason: &str) {
    let status = match http {
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        429 => "RESOURCE_EXHAUSTED",
        _ => unreachable!("not an auth status"),
    };
    reply.error(http, status);
    assert_eq!(
        reply.body["error"]["details"][0]["reason"], reason,
        "{reply:?}"
    );
    if http == 401 {
        let challenge = reply.challenge.as_deref().unwrap_or_default();
        assert!(challenge.starts_with("Bearer"), "{reply:?}");
    }
}

/// A gRPC request carrying this credential metadata (or none).
fn with_creds<T>(msg: T, creds: Option<(&'static str, &str)>) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    if let Some((key, value)) = creds {
        req.metadata_mut()
            .insert(key, value.parse().expect("metadata"));
    }
    req
}

/// The code and `ErrorInfo.reason` of a gRPC error.
fn grpc_refusal(status: &tonic::Status) -> (tonic::Code, String) {
    let details = rpc::Status::decode(status.details()).expect("details decode");
    let info = details.details.first().expect("ErrorInfo");
    assert_eq!(info.type_url, "type.googleapis.com/google.rpc.ErrorInfo");
    let info = rpc::ErrorInfo::decode(info.value.as_slice()).expect("ErrorInfo decodes");
    (status.code(), info.reason)
}

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
