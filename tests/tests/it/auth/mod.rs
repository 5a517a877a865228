//! Authentication and authorization as a caller meets them, over REST and gRPC: every row of the
//! contract's error table (`table.rs`), scopes per method and tenants (`scopes.rs`), API keys,
//! JWKS keys, the rate limit and who cancelled (`credentials.rs`; the audit log and the loopback
//! refusal are in `audit.rs`). This module holds the credentials every test uses (`Creds`,
//! `claims`, `hs256`, tokens signed with the keys in `tests/keys`).

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

mod credentials;
mod scopes;
mod table;
