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

/// A duration in whole milliseconds, saturating at [`Millis::MAX`].
pub fn millis(d: Duration) -> Millis {
    Millis::try_from(d.as_millis()).unwrap_or(Millis::MAX)
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
#[error("{0:?} is not a non-negative duration like \"10s\", \"1.5s\", \"250ms\", \"2m\" or \"1h\"")]
pub struct DurationError(pub String);

/// Parses a duration: the `google.protobuf.Duration` JSON form (`"1.5s"`), and for people typing
/// them by hand the same decimal number with `ms`, `m` or `h`. Negative durations are refused:
/// every duration the API takes (timeouts, sleeps) must be non-negative.
pub fn parse_duration(s: &str) -> Result<Duration, DurationError> {
    const NANOS: u128 = 1_000_000_000;
    let err = || DurationError(s.to_owned());
    let (number, unit_nanos) = [
        ("ms", NANOS / 1000),
        ("s", NANOS),
        ("m", 60 * NANOS),
        ("h", 3600 * NANOS),
    ]
    .into_iter()
    .find_map(|(suffix, unit)| s.strip_suffix(suffix).map(|n| (n, unit)))
    .ok_or_else(err)?;
    let (whole, frac) = number.split_once('.').unwrap_or((number, ""));
    let digits = |t: &str| t.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty()
        || !digits(whole)
        || !digits(frac)
        || frac.len() > 9
        || number.ends_with('.')
    {
        return Err(err());
    }
    let whole: u128 = whole.parse().map_err(|_| err())?;
    let frac: u128 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<9}").parse().map_err(|_| err())?
    };
    // `number` in units of 1e-9, times the unit, is nanoseconds.
    // Checked throughout: 30 or more digits overflow u128 (and, unchecked, wrapped around to a
    // small duration in release builds).
    let nanos = whole
        .checked_mul(NANOS)
        .and_then(|n| n.checked_add(frac))
        .and_then(|n| n.checked_mul(unit_nanos))
        .ok_or_else(err)?
        / NANOS;
    // 315,576,000,000 s is proto's upper bound for Duration.
    if nanos > 315_576_000_000 * NANOS {
        return Err(err());
    }
    let secs = u64::try_from(nanos / NANOS).map_err(|_| err())?;
    let sub = u32::try_from(nanos % NANOS).map_err(|_| err())?;
    Ok(Duration::new(secs, sub))
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
        for (s, d) in [
            ("1.5s", Duration::from_millis(1500)),
            ("250ms", Duration::from_millis(250)),
            ("0.5ms", Duration::from_micros(500)),
            ("2m", Duration::from_secs(120)),
            ("1.5h", Duration::from_secs(5400)),
            ("0s", Duration::ZERO),
        ] {
            assert_eq!(parse_duration(s).unwrap(), d, "{s}");
        }
        for bad in [
            "",
            "s",
            "5",
            "-1s",
            "1.s",
            ".5s",
            "1.0000000001s",
            "abc",
            "5x",
            "ms",
            "1.5.5s",
            "1 s",
            "315576000001s",
            "99999999999999999999999999h",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn huge_numbers_are_refused_not_wrapped() {
        // Found by the `bodies` fuzz target: `whole * 1e9` overflowed u128, a panic in debug
        // builds; in release builds this one wrapped around to 0.231788544 s and was accepted.
        for bad in [
            "340282366920938463463374607432s",
            "8333333333333333333333333333880s",
            "340282366920938463463374607431768211455ms",
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
