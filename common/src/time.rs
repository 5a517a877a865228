//! Time as the system stores it (milliseconds since the Unix epoch) and as proto3 JSON renders it:
//! Timestamps in RFC 3339 with `Z`, Durations as `"1.500s"`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch.
pub type Millis = u64;

/// Now, in milliseconds since the Unix epoch.
pub fn now_millis() -> Millis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as Millis)
        .unwrap_or(0)
}

/// A `google.protobuf.Timestamp` in its JSON form, e.g. `2026-11-24T10:00:00.123Z`.
pub fn timestamp_json(ms: Millis) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(ms);
    if ms.is_multiple_of(1000) {
        humantime::format_rfc3339_seconds(t).to_string()
    } else {
        humantime::format_rfc3339_millis(t).to_string()
    }
}

/// A `google.protobuf.Duration` in its JSON form: `"5s"`, `"1.500s"`.
pub fn duration_json(d: Duration) -> String {
    let (secs, nanos) = (d.as_secs(), d.subsec_nanos());
    if nanos == 0 {
        format!("{secs}s")
    } else if nanos % 1_000_000 == 0 {
        format!("{secs}.{:03}s", nanos / 1_000_000)
    } else if nanos % 1_000 == 0 {
        format!("{secs}.{:06}s", nanos / 1_000)
    } else {
        format!("{secs}.{nanos:09}s")
    }
}

/// Why a duration string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a non-negative duration like \"10s\" or \"1.5s\"")]
pub struct DurationError(pub String);

/// Parses a `google.protobuf.Duration` JSON string. Negative durations are refused: every duration
/// the API takes (timeouts) must be non-negative.
pub fn parse_duration(s: &str) -> Result<Duration, DurationError> {
    let err = || DurationError(s.to_owned());
    let body = s.strip_suffix('s').ok_or_else(err)?;
    let (whole, frac) = match body.split_once('.') {
        Some((w, f)) => (w, f),
        None => (body, ""),
    };
    let digits = |t: &str| t.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || !digits(whole) || !digits(frac) || frac.len() > 9 {
        return Err(err());
    }
    if body.ends_with('.') {
        return Err(err());
    }
    // 315,576,000,000 s is proto's upper bound for Duration.
    let secs: u64 = whole.parse().map_err(|_| err())?;
    if secs > 315_576_000_000 {
        return Err(err());
    }
    let nanos: u32 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<9}").parse().map_err(|_| err())?
    };
    Ok(Duration::new(secs, nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_round_trip() {
        for (s, d) in [
            ("5s", Duration::from_secs(5)),
            ("1.500s", Duration::from_millis(1500)),
            ("0.000001s", Duration::from_micros(1)),
            ("0.000000001s", Duration::from_nanos(1)),
        ] {
            assert_eq!(parse_duration(s).unwrap(), d);
            assert_eq!(duration_json(d), s);
        }
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        for bad in [
            "",
            "s",
            "5",
            "-1s",
            "1.s",
            ".5s",
            "1.0000000001s",
            "abc",
            "5m",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(timestamp_json(0), "1970-01-01T00:00:00Z");
        assert_eq!(timestamp_json(1_500), "1970-01-01T00:00:01.500Z");
    }
}
