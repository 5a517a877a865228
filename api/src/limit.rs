//! Per-principal rate limits (`LRO_RATE_LIMIT`, off by default): a GCRA bucket per principal
//! (governor), checked once per request after authentication. Over the limit the request is
//! refused with RESOURCE_EXHAUSTED and a `google.rpc.RetryInfo` saying when to come back; it
//! has done nothing.
//!
//! The buckets live in this process: with N api replicas a principal gets up to N times the
//! rate. Buckets of principals that went quiet are dropped now and then.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use lro_common::status::Code;

use crate::auth::Principal;
use crate::error::{ApiError, Detail};

/// Checks between two sweeps of idle buckets.
const SWEEP_EVERY: u32 = 4096;

/// `LRO_RATE_LIMIT`: `N/s`, `N/m` or `N/h`, optionally `,burst=B` (the burst defaults to N for
/// `/s` and to 1 second's worth, at least 1, otherwise).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub per: Duration,
    pub count: NonZeroU32,
    pub burst: NonZeroU32,
}

impl std::str::FromStr for RateLimit {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("rate limit {s:?} must look like \"200/s\" or \"200/s,burst=50\"");
        let (rate, burst) = match s.split_once(',') {
            Some((r, b)) => (r.trim(), Some(b.trim())),
            None => (s.trim(), None),
        };
        let (count, unit) = rate.split_once('/').ok_or_else(bad)?;
        let count: NonZeroU32 = count.trim().parse().map_err(|_| bad())?;
        let per = match unit.trim() {
            "s" => Duration::from_secs(1),
            "m" => Duration::from_secs(60),
            "h" => Duration::from_secs(3600),
            _ => return Err(bad()),
        };
        let burst = match burst {
            Some(b) => b
                .strip_prefix("burst=")
                .and_then(|n| n.trim().parse().ok())
                .ok_or_else(bad)?,
            None => {
                let per_sec = u64::from(count.get()) / per.as_secs();
                NonZeroU32::new(u32::try_from(per_sec).unwrap_or(u32::MAX))
                    .unwrap_or(NonZeroU32::MIN)
            }
        };
        Ok(Self { per, count, burst })
    }
}

/// The limiter of one api process; off when no limit is configured. Cheap to clone.
#[derive(Clone, Default)]
pub struct Limiter(Option<Arc<Buckets>>);

struct Buckets {
    limiter: DefaultKeyedRateLimiter<String>,
    checks: AtomicU32,
}

impl Limiter {
    pub fn new(limit: Option<RateLimit>) -> Self {
        Self(limit.map(|l| {
            let quota = Quota::with_period(l.per / l.count.get())
                .unwrap_or_else(|| Quota::per_second(l.count))
                .allow_burst(l.burst);
            Arc::new(Buckets {
                limiter: DefaultKeyedRateLimiter::keyed(quota),
                checks: AtomicU32::new(0),
            })
        }))
    }

    /// Takes one request from `who`'s bucket, or says how long to wait.
    pub fn check(&self, who: &Principal) -> Result<(), ApiError> {
        let Some(b) = &self.0 else {
            return Ok(());
        };
        if b.checks.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            b.limiter.retain_recent();
        }
        let key = who.label();
        // `check_key` wants an owned key; look it up without allocating when possible.
        let outcome = b.limiter.check_key(&key.to_owned());
        outcome.map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            ApiError::new(
                Code::ResourceExhausted,
                "RATE_LIMIT_EXCEEDED",
                format!(
                    "rate limit exceeded for {key:?}; retry in {:.3}s",
                    wait.as_secs_f64()
                ),
            )
            .with("principal", key)
            .with_detail(Detail::RetryInfo { retry_delay: wait })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_limits() {
        let l: RateLimit = "200/s".parse().expect("parses");
        assert_eq!(
            (l.count.get(), l.burst.get(), l.per.as_secs()),
            (200, 200, 1)
        );
        let l: RateLimit = "10/s,burst=3".parse().expect("parses");
        assert_eq!(l.burst.get(), 3);
        let l: RateLimit = "60/m".parse().expect("parses");
        assert_eq!((l.count.get(), l.burst.get()), (60, 1));
        for bad in ["", "0/s", "10", "10/d", "10/s,burst=0", "10/s,b=2", "x/s"] {
            assert!(bad.parse::<RateLimit>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn refuses_past_the_burst_with_a_retry_delay() {
        let limiter = Limiter::new(Some("1/h,burst=2".parse().expect("parses")));
        let who = Principal::anonymous();
        assert!(limiter.check(&who).is_ok());
        assert!(limiter.check(&who).is_ok());
        let e = limiter.check(&who).expect_err("over the limit");
        assert_eq!(e.code, Code::ResourceExhausted);
        assert_eq!(e.reason, "RATE_LIMIT_EXCEEDED");
    }
}
