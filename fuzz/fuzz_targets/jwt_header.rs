//! Bearer tokens through `lro_api::fuzzing::bearer`: the api's real authenticator (header,
//! signature, `exp`/`nbf` with its leeway, the claims lro reads), set up for HS256.
//!
//! First byte even: the rest is the token as sent. Odd: the rest is a header and a claims object
//! separated by a NUL, base64url-encoded and signed with the right key, so the fuzzer reaches
//! the claims checks too. Whatever is accepted carries a valid signature for HS256 and an `exp`
//! that has not passed.
#![no_main]

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey};
use libfuzzer_sys::fuzz_target;
use lro_api::fuzzing::{self, BEARER_SECRET};
use serde_json::Value;

/// The authenticator's leeway, plus slack for a slow run.
const LEEWAY_SECS: f64 = lro_api::auth::LEEWAY_SECS as f64 + 60.0;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let token = if mode % 2 == 0 {
        let Ok(token) = std::str::from_utf8(rest) else {
            return;
        };
        token.to_owned()
    } else {
        let (header, claims) = match rest.iter().position(|&b| b == 0) {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, &b"{}"[..]),
        };
        let message = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(claims)
        );
        format!("{message}.{}", sign(&message))
    };
    let Ok(claims) = fuzzing::bearer(&token) else {
        return;
    };
    let (message, signature) = token
        .rsplit_once('.')
        .expect("an accepted token has three parts");
    assert_eq!(
        signature,
        sign(message),
        "{token:?} accepted with a wrong signature"
    );
    let header = jsonwebtoken::decode_header(&token).expect("an accepted token has a header");
    assert_eq!(header.alg, Algorithm::HS256, "{token:?}");
    // A float is allowed (and rounded) by jsonwebtoken.
    let exp = claims.get("exp").and_then(Value::as_f64);
    let now = jsonwebtoken::get_current_timestamp() as f64;
    assert!(
        exp.is_some_and(|exp| exp + LEEWAY_SECS >= now),
        "{token:?} accepted with exp {exp:?} at {now}"
    );
});

fn sign(message: &str) -> String {
    let key = EncodingKey::from_secret(BEARER_SECRET).expect("a non-empty secret");
    jsonwebtoken::crypto::sign(message.as_bytes(), &key, Algorithm::HS256).expect("HS256 signs")
}
