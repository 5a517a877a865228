//! Authentication: who sent a request's credentials. JWTs (HS256 with a shared secret; RS256 /
//! ES256 against a JWKS, by `kid`, each key verifying only its own algorithm) or API keys, stored
//! as SHA-256 hashes and compared in constant time. A verified token is cached until its `exp`,
//! so a hot client pays for the signature once. The key files are read once, at start.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{Context, bail};
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use lro_common::status::Code;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{Principal, scope_bits};
use crate::error::ApiError;

/// Clock skew tolerated on `exp` and `nbf`, in seconds.
pub const LEEWAY_SECS: u64 = 30;
/// Most verified tokens kept in the cache; past it, expired ones are dropped (or all, if none is).
const CACHE_MAX: usize = 10_000;

/// Where the credentials come from (the contract's `LRO_AUTH_*` / `LRO_API_KEYS_FILE`).
#[derive(Debug, Clone, Default)]
pub struct AuthConfig {
    pub hs256_secret_file: Option<PathBuf>,
    pub jwks_file: Option<PathBuf>,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    pub api_keys_file: Option<PathBuf>,
}

impl AuthConfig {
    /// Whether any credential setting is given (authentication is on).
    pub fn is_on(&self) -> bool {
        self.hs256_secret_file.is_some() || self.jwks_file.is_some() || self.api_keys_file.is_some()
    }
}

/// The raw credentials of one request, as the transport found them.
#[derive(Debug, Clone, Copy, Default)]
pub struct Credentials<'a> {
    /// The `Authorization` header (or gRPC `authorization` metadata), as sent.
    pub authorization: Option<&'a [u8]>,
    /// `x-goog-api-key`, or the `key` query parameter.
    pub api_key: Option<&'a str>,
}

/// The authenticator: off, or the loaded keys. Cheap to clone.
#[derive(Clone, Default)]
pub struct Auth(Option<Arc<Verifier>>);

struct Verifier {
    hs256: Option<DecodingKey>,
    /// JWKS keys by `kid`, each with the one algorithm it may verify.
    jwks: HashMap<String, (DecodingKey, Algorithm)>,
    issuer: Option<String>,
    audience: Option<String>,
    api_keys: Vec<ApiKey>,
    cache: Mutex<HashMap<String, Cached>>,
}

struct ApiKey {
    sha256: [u8; 32],
    principal: Principal,
}

struct Cached {
    principal: Principal,
    exp: u64,
}

impl Auth {
    /// Authentication off: every caller is [`Principal::anonymous`].
    pub fn off() -> Self {
        Self(None)
    }

    /// Reads the configured files. Off when nothing is configured.
    pub fn load(config: &AuthConfig) -> anyhow::Result<Self> {
        if !config.is_on() {
            if config.issuer.is_some() || config.audience.is_some() {
                bail!(
                    "LRO_AUTH_ISSUER / LRO_AUTH_AUDIENCE need LRO_AUTH_HS256_SECRET_FILE or LRO_AUTH_JWKS_FILE"
                );
            }
            return Ok(Self::off());
        }
        let hs256 = match &config.hs256_secret_file {
            Some(path) => {
                let mut secret = read(path, "LRO_AUTH_HS256_SECRET_FILE")?;
                if secret.last() == Some(&b'\n') {
                    secret.pop();
                }
                if secret.is_empty() {
                    bail!("LRO_AUTH_HS256_SECRET_FILE {} is empty", path.display());
                }
                Some(DecodingKey::from_secret(&secret).context("HS256 secret")?)
            }
            None => None,
        };
        let jwks = match &config.jwks_file {
            Some(path) => load_jwks(path)?,
            None => HashMap::new(),
        };
        let api_keys = match &config.api_keys_file {
            Some(path) => load_api_keys(path)?,
            None => Vec::new(),
        };
        Ok(Self(Some(Arc::new(Verifier {
            hs256,
            jwks,
            issuer: config.issuer.clone(),
            audience: config.audience.clone(),
            api_keys,
            cache: Mutex::new(HashMap::new()),
        }))))
    }

    pub fn is_on(&self) -> bool {
        self.0.is_some()
    }

    /// HS256 tokens signed with `secret`, nothing else (what the fuzz target drives).
    pub(crate) fn hs256(secret: &[u8]) -> anyhow::Result<Self> {
        Ok(Self(Some(Arc::new(Verifier {
            hs256: Some(DecodingKey::from_secret(secret).context("HS256 secret")?),
            jwks: HashMap::new(),
            issuer: None,
            audience: None,
            api_keys: Vec::new(),
            cache: Mutex::new(HashMap::new()),
        }))))
    }

    /// Who sent these credentials; a bearer token wins over an API key when both are sent.
    pub fn authenticate(&self, creds: Credentials<'_>) -> Result<Principal, ApiError> {
        let Some(v) = &self.0 else {
            return Ok(Principal::anonymous());
        };
        if let Some(header) = creds.authorization {
            let token = bearer_token(header).ok_or_else(|| {
                invalid("the Authorization header must be \"Bearer <token>\"".to_owned())
            })?;
            return v.verify_token(token);
        }
        match creds.api_key {
            Some(key) if !key.is_empty() => v.verify_api_key(key),
            _ => Err(ApiError::new(
                Code::Unauthenticated,
                "CREDENTIALS_MISSING",
                "request is missing required authentication credential: expected an OAuth 2 \
                 access token (Authorization: Bearer) or an API key",
            )),
        }
    }
}

impl Verifier {
    fn verify_token(&self, token: &str) -> Result<Principal, ApiError> {
        let now = jsonwebtoken::get_current_timestamp();
        if let Some(hit) = self.lock_cache().get(token)
            && now < hit.exp
        {
            return Ok(hit.principal.clone());
        }
        let (principal, exp) = self.verify_uncached(token)?;
        let mut cache = self.lock_cache();
        if cache.len() >= CACHE_MAX {
            cache.retain(|_, c| now < c.exp);
            if cache.len() >= CACHE_MAX {
                cache.clear();
            }
        }
        cache.insert(
            token.to_owned(),
            Cached {
                principal: principal.clone(),
                exp,
            },
        );
        Ok(principal)
    }

    fn lock_cache(&self) -> std::sync::MutexGuard<'_, HashMap<String, Cached>> {
        // A panic while holding it cannot leave the map half-changed in a way that matters.
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn verify_uncached(&self, token: &str) -> Result<(Principal, u64), ApiError> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| invalid(format!("malformed access token: {e}")))?;
        // Each key verifies only its own algorithm: an RSA public key is never taken as an
        // HMAC secret.
        let (key, alg) = match header.alg {
            Algorithm::HS256 => (
                self.hs256
                    .as_ref()
                    .ok_or_else(|| invalid("HS256 tokens are not accepted here".to_owned()))?,
                Algorithm::HS256,
            ),
            Algorithm::RS256 | Algorithm::ES256 => {
                let kid = header
                    .kid
                    .as_deref()
                    .ok_or_else(|| invalid("access token has no key id (kid)".to_owned()))?;
                match self.jwks.get(kid) {
                    Some((key, alg)) if *alg == header.alg => (key, *alg),
                    Some(_) => {
                        return Err(invalid(format!(
                            "key {kid:?} does not verify {:?} tokens",
                            header.alg
                        )));
                    }
                    None => return Err(invalid(format!("unknown signing key {kid:?}"))),
                }
            }
            other => return Err(invalid(format!("unsupported algorithm {other:?}"))),
        };
        let mut validation = Validation::new(alg);
        validation.leeway = LEEWAY_SECS;
        validation.validate_nbf = true;
        let mut required = vec!["exp", "sub"];
        match &self.issuer {
            Some(iss) => {
                validation.set_issuer(&[iss]);
                required.push("iss");
            }
            None => validation.iss = None,
        }
        match &self.audience {
            Some(aud) => {
                validation.set_audience(&[aud]);
                required.push("aud");
            }
            None => validation.validate_aud = false,
        }
        validation.set_required_spec_claims(&required);
        let data = jsonwebtoken::decode::<Claims>(token, key, &validation).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind;
            match e.kind() {
                ErrorKind::ExpiredSignature => ApiError::new(
                    Code::Unauthenticated,
                    "ACCESS_TOKEN_EXPIRED",
                    "access token has expired",
                ),
                ErrorKind::ImmatureSignature => {
                    invalid("access token is not valid yet (nbf)".to_owned())
                }
                ErrorKind::InvalidSignature => invalid("access token signature is invalid".into()),
                ErrorKind::InvalidIssuer => invalid("access token has the wrong issuer".into()),
                ErrorKind::InvalidAudience => invalid("access token has the wrong audience".into()),
                ErrorKind::MissingRequiredClaim(c) => {
                    invalid(format!("access token has no {c:?} claim"))
                }
                _ => invalid(format!("invalid access token: {e}")),
            }
        })?;
        let c = data.claims;
        if c.sub.is_empty() {
            return Err(invalid(
                "access token has an empty \"sub\" claim".to_owned(),
            ));
        }
        let mut scopes = scope_bits(c.scope.split_whitespace());
        scopes |= match &c.scp {
            Some(Scp::List(list)) => scope_bits(list.iter().map(String::as_str)),
            Some(Scp::Text(text)) => scope_bits(text.split_whitespace()),
            None => 0,
        };
        // Saturating: `exp` is in range, `jsonwebtoken` has checked it.
        let exp = c.exp as u64;
        Ok((Principal::new(c.sub, scopes, c.lro_parents), exp))
    }

    fn verify_api_key(&self, key: &str) -> Result<Principal, ApiError> {
        let digest: [u8; 32] = Sha256::digest(key.as_bytes()).into();
        // Every entry is compared, in constant time, so timing says nothing about which matched.
        let mut found = None;
        for k in &self.api_keys {
            if bool::from(k.sha256.ct_eq(&digest)) {
                found = Some(k.principal.clone());
            }
        }
        found.ok_or_else(|| invalid("API key not valid".to_owned()))
    }
}

fn invalid(message: String) -> ApiError {
    ApiError::new(Code::Unauthenticated, "ACCESS_TOKEN_INVALID", message)
}

/// The token of `Bearer <token>` (the scheme is case-insensitive).
fn bearer_token(header: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(header).ok()?.trim();
    let (scheme, token) = text.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// The claims lro reads; `exp`, `nbf`, `iss` and `aud` are checked by `jsonwebtoken`.
#[derive(Deserialize)]
struct Claims {
    sub: String,
    /// Seconds since the epoch; some issuers write a fraction.
    exp: f64,
    #[serde(default)]
    scope: String,
    #[serde(default)]
    scp: Option<Scp>,
    #[serde(default)]
    lro_parents: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Scp {
    List(Vec<String>),
    Text(String),
}

fn read(path: &Path, what: &str) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {what} {}", path.display()))
}

fn load_jwks(path: &Path) -> anyhow::Result<HashMap<String, (DecodingKey, Algorithm)>> {
    let raw = read(path, "LRO_AUTH_JWKS_FILE")?;
    let set: JwkSet = serde_json::from_slice(&raw)
        .with_context(|| format!("LRO_AUTH_JWKS_FILE {} is not a JWKS", path.display()))?;
    let mut keys = HashMap::new();
    for jwk in &set.keys {
        let Some(kid) = jwk.common.key_id.clone() else {
            bail!("a key in {} has no \"kid\"", path.display());
        };
        let alg = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => Algorithm::RS256,
            AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => {
                Algorithm::ES256
            }
            _ => bail!("key {kid:?} in {}: only RSA and P-256 keys", path.display()),
        };
        let key = DecodingKey::from_jwk(jwk).with_context(|| format!("key {kid:?}"))?;
        keys.insert(kid, (key, alg));
    }
    Ok(keys)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ApiKeysFile {
    keys: Vec<ApiKeyEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ApiKeyEntry {
    name: String,
    sha256: String,
    #[serde(default)]
    scopes: Vec<String>,
    #[serde(default)]
    parents: Option<Vec<String>>,
}

fn load_api_keys(path: &Path) -> anyhow::Result<Vec<ApiKey>> {
    let raw = read(path, "LRO_API_KEYS_FILE")?;
    let file: ApiKeysFile = serde_json::from_slice(&raw)
        .with_context(|| format!("LRO_API_KEYS_FILE {}", path.display()))?;
    file.keys
        .into_iter()
        .map(|k| {
            let mut sha256 = [0; 32];
            hex::decode_to_slice(k.sha256.trim(), &mut sha256)
                .with_context(|| format!("API key {:?}: sha256 must be 64 hex digits", k.name))?;
            if k.name.is_empty() {
                bail!("an API key in {} has an empty name", path.display());
            }
            let scopes = scope_bits(k.scopes.iter().map(String::as_str));
            Ok(ApiKey {
                sha256,
                principal: Principal::new(k.name, scopes, k.parents),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_header_forms() {
        assert_eq!(bearer_token(b"Bearer abc"), Some("abc"));
        assert_eq!(bearer_token(b"bearer  abc "), Some("abc"));
        assert_eq!(bearer_token(b"Basic abc"), None);
        assert_eq!(bearer_token(b"Bearer"), None);
        assert_eq!(bearer_token(b"Bearer "), None);
        assert_eq!(bearer_token(&[0xff, 0x20, 0x41]), None);
    }
}
