//! Listing: the filter subset (AIP-160) and opaque page tokens (AIP-158).
//!
//! The filter grammar lives in `lro_common::filter` (the worker running a batch cancel reads it
//! too); here it is refused as INVALID_FILTER. A page token is the base64url of the
//! last id returned plus the parent and filter it was made for; using it with another filter is an
//! error, as AIP-158 asks.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use lro_common::name::{Parent, check_segment};
use serde::{Deserialize, Serialize};

use crate::error::ApiError;

pub const DEFAULT_PAGE_SIZE: usize = 50;
pub const MAX_PAGE_SIZE: usize = 1000;

pub use lro_common::filter::Filter;

/// Reads a filter as list and batch cancel take it; a refusal is INVALID_FILTER.
pub fn parse_filter(s: &str) -> Result<Filter, ApiError> {
    Filter::parse(s).map_err(|e| ApiError::invalid("INVALID_FILTER", e.0))
}

#[derive(Serialize, Deserialize)]
struct TokenBody {
    /// The last id returned.
    a: String,
    /// The parent and filter the token belongs to.
    p: String,
    f: String,
}

/// Makes the token for the page after `after_id`.
pub fn page_token(after_id: &str, parent: &Parent, filter: &str) -> String {
    let body = TokenBody {
        a: after_id.to_owned(),
        p: parent.to_string(),
        f: filter.to_owned(),
    };
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(&body).unwrap_or_default())
}

/// Reads a token back: the id to continue after.
pub fn read_page_token(token: &str, parent: &Parent, filter: &str) -> Result<String, ApiError> {
    let bad = || ApiError::invalid("INVALID_PAGE_TOKEN", "page token is not valid");
    let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| bad())?;
    let body: TokenBody = serde_json::from_slice(&bytes).map_err(|_| bad())?;
    check_segment(&body.a).map_err(|_| bad())?;
    if body.p != parent.as_str() || body.f != filter {
        return Err(ApiError::invalid(
            "INVALID_PAGE_TOKEN",
            "page token was made for another parent or filter",
        ));
    }
    Ok(body.a)
}

/// Reads `pageSize`: absent or 0 → default; above the maximum → the maximum; negative → error.
pub fn page_size(raw: Option<&str>) -> Result<usize, ApiError> {
    let Some(raw) = raw else {
        return Ok(DEFAULT_PAGE_SIZE);
    };
    let n: i64 = raw.parse().map_err(|_| {
        ApiError::invalid(
            "INVALID_PAGE_SIZE",
            format!("pageSize {raw:?} is not an integer"),
        )
    })?;
    page_size_of(n)
}

/// A requested page size: 0 means the default, larger than the maximum means the maximum
/// (AIP-158), negative is an error.
pub fn page_size_of(n: i64) -> Result<usize, ApiError> {
    match n {
        n if n < 0 => Err(ApiError::invalid(
            "INVALID_PAGE_SIZE",
            format!("pageSize must not be negative, got {n}"),
        )),
        0 => Ok(DEFAULT_PAGE_SIZE),
        n => Ok((n as u64).min(MAX_PAGE_SIZE as u64) as usize),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_tokens_round_trip_and_bind_to_their_filter() {
        let p = Parent::parse("projects/p").unwrap();
        let t = page_token("abc", &p, "done=true");
        assert_eq!(read_page_token(&t, &p, "done=true").unwrap(), "abc");
        assert!(read_page_token(&t, &p, "").is_err());
        assert!(read_page_token(&t, &Parent::root(), "done=true").is_err());
        assert!(read_page_token("garbage!", &p, "").is_err());
        assert!(read_page_token("Zm9v", &p, "").is_err());
    }

    #[test]
    fn page_sizes() {
        assert_eq!(page_size(None).unwrap(), DEFAULT_PAGE_SIZE);
        assert_eq!(page_size(Some("0")).unwrap(), DEFAULT_PAGE_SIZE);
        assert_eq!(page_size(Some("7")).unwrap(), 7);
        assert_eq!(page_size(Some("5000")).unwrap(), MAX_PAGE_SIZE);
        assert!(page_size(Some("-1")).is_err());
        assert!(page_size(Some("x")).is_err());
    }
}
