//! REST request bodies, read as the handlers read them. First byte: 0 submit, 1 cancel, 2 wait
//! (the rest is the body), 3 the rest as a duration string alone.
//!
//! A body is refused only with 400. A cancel or wait body that names an operation names the one
//! in the path. Every duration accepted is within proto's range, round-trips through its JSON
//! form, and is the value the decimal says (checked against an f64 reading of it); every
//! well-formed duration within range is accepted.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use lro_api::fuzzing::{self, BodyKind};
use lro_common::name::OperationName;
use lro_common::time::{duration_json, parse_duration};
use serde_json::Value;

/// proto's largest Duration, in seconds.
const MAX_SECS: u64 = 315_576_000_000;
const PATH_NAME: &str = "projects/p/operations/x";

fuzz_target!(|data: &[u8]| {
    let Some((&mode, bytes)) = data.split_first() else {
        return;
    };
    let kind = match mode % 4 {
        0 => BodyKind::Submit,
        1 => BodyKind::Cancel,
        2 => BodyKind::Wait,
        _ => {
            if let Ok(s) = std::str::from_utf8(bytes) {
                check_duration(s, parse_duration(s).ok());
            }
            return;
        }
    };
    let path_name = OperationName::parse(PATH_NAME).expect("a valid name");
    let read = match fuzzing::body(kind, bytes, &path_name) {
        Ok(read) => read,
        Err(e) => {
            assert_eq!(e.code.http_status(), 400, "{e:?}");
            return;
        }
    };
    // Accepted, so it is a JSON object (or, for cancel and wait, an empty body).
    let json: Option<Value> = serde_json::from_slice(bytes).ok();
    match &json {
        Some(Value::Object(fields)) => {
            if let Some(Value::String(n)) = fields.get("name") {
                assert!(n.is_empty() || n == PATH_NAME, "body name {n:?} accepted");
            }
            if let Some(Value::String(t)) = fields.get("timeout") {
                check_duration(t, read.timeout);
            }
        }
        Some(other) => panic!("{kind:?} body {other} accepted"),
        None => {
            assert!(kind != BodyKind::Submit, "submit accepted without a body");
            assert!(
                bytes.iter().all(u8::is_ascii_whitespace),
                "{bytes:?} accepted"
            );
        }
    }
});

/// `parsed` is what `parse_duration(s)` answered.
fn check_duration(s: &str, parsed: Option<Duration>) {
    let expected = reference(s);
    match (parsed, expected) {
        (Some(d), Some(secs)) => {
            assert!(
                d <= Duration::from_secs(MAX_SECS),
                "{s:?} → {d:?}, out of range"
            );
            let tolerance = 2e-9 + secs * 1e-12;
            let got = d.as_secs_f64();
            assert!(
                (got - secs).abs() <= tolerance,
                "{s:?} → {d:?}, not {secs} s"
            );
            assert_eq!(
                parse_duration(&duration_json(d)).ok(),
                Some(d),
                "{s:?} → {d:?}"
            );
        }
        (Some(d), None) => panic!("{s:?} accepted as {d:?} but is not a duration"),
        // Refusals near the upper bound are judged by the exact arithmetic alone.
        (None, Some(secs)) if secs < MAX_SECS as f64 - 1.0 => {
            panic!("{s:?} ({secs} s) refused")
        }
        (None, _) => {}
    }
}

/// What the grammar says `s` is, in seconds (as an f64), if it is well-formed: a decimal with at
/// most 9 fraction digits and one of the suffixes `ms`, `s`, `m`, `h`.
fn reference(s: &str) -> Option<f64> {
    let (number, unit) = [("ms", 1e-3), ("s", 1.0), ("m", 60.0), ("h", 3600.0)]
        .into_iter()
        .find_map(|(suffix, unit)| s.strip_suffix(suffix).map(|n| (n, unit)))?;
    let (whole, frac) = match number.split_once('.') {
        Some((w, f)) if !f.is_empty() => (w, f),
        Some(_) => return None,
        None => (number, ""),
    };
    let digits = |t: &str| t.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || !digits(whole) || !digits(frac) || frac.len() > 9 {
        return None;
    }
    Some(number.parse::<f64>().ok()? * unit)
}
