//! W3C Trace Context (`traceparent`, `tracestate`): the caller's trace, lifted from a submit's or
//! cancel's request, carried on the AMQP message to the worker and written on its log lines.
//!
//! Pure: parse and format, no I/O. A header that does not parse is ignored, never an error (the
//! spec's rule: a bad `traceparent` means "no trace", and the request goes on). It does not
//! export spans: with OTLP export on, [`crate::otel`] turns these ids into the OpenTelemetry
//! parent of the api's request span and of the worker's job span (and the span's own ids back
//! into what travels on); with it off, the ids only travel and are logged.

use std::fmt::Write as _;

/// The longest `tracestate` passed on; a longer one is dropped (the spec allows 512 characters).
const MAX_STATE_LEN: usize = 512;

/// One position in a trace: the trace id, the id of the span that is the parent of ours, the
/// trace flags, and the vendors' `tracestate` passed through unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    trace_id: [u8; 16],
    parent_id: [u8; 8],
    flags: u8,
    state: Option<String>,
}

impl TraceContext {
    /// Parses a `traceparent` header value: `00-<32 hex>-<16 hex>-<2 hex>`, lowercase. A later
    /// version may append fields after a `-` (they are ignored, as the spec asks); version `ff`,
    /// uppercase hex, wrong lengths and all-zero ids are refused.
    pub fn parse(traceparent: &str) -> Option<Self> {
        let s = traceparent.trim_matches([' ', '\t']).as_bytes();
        if s.len() < 55 {
            return None;
        }
        let version = hex_byte(&s[0..2])?;
        if version == 0xff || s[2] != b'-' || s[35] != b'-' || s[52] != b'-' {
            return None;
        }
        // Version 00 is exactly 55 characters; a future one may go on after a dash.
        if (version == 0 && s.len() != 55) || (s.len() > 55 && s[55] != b'-') {
            return None;
        }
        let mut trace_id = [0; 16];
        for (i, b) in trace_id.iter_mut().enumerate() {
            *b = hex_byte(&s[3 + 2 * i..5 + 2 * i])?;
        }
        let mut parent_id = [0; 8];
        for (i, b) in parent_id.iter_mut().enumerate() {
            *b = hex_byte(&s[36 + 2 * i..38 + 2 * i])?;
        }
        let flags = hex_byte(&s[53..55])?;
        if trace_id == [0; 16] || parent_id == [0; 8] {
            return None;
        }
        Some(Self {
            trace_id,
            parent_id,
            flags,
            state: None,
        })
    }

    /// The position of a span of our own, `span_id` in trace `trace_id` (OTLP export's ids);
    /// `None` for an all-zero id.
    pub fn new(trace_id: [u8; 16], span_id: [u8; 8], sampled: bool) -> Option<Self> {
        (trace_id != [0; 16] && span_id != [0; 8]).then_some(Self {
            trace_id,
            parent_id: span_id,
            flags: u8::from(sampled),
            state: None,
        })
    }

    /// Parses `traceparent` and attaches `tracestate` (kept only if it is printable ASCII of at
    /// most 512 characters; it is never interpreted).
    pub fn from_headers(traceparent: Option<&str>, tracestate: Option<&str>) -> Option<Self> {
        let mut context = Self::parse(traceparent?)?;
        context.state = tracestate
            .map(|s| s.trim_matches([' ', '\t']))
            .filter(|s| {
                !s.is_empty()
                    && s.len() <= MAX_STATE_LEN
                    && s.bytes().all(|b| b == b' ' || b.is_ascii_graphic())
            })
            .map(str::to_owned);
        Some(context)
    }

    /// The `traceparent` header value (version 00).
    pub fn traceparent(&self) -> String {
        format!(
            "00-{}-{}-{:02x}",
            self.trace_id(),
            self.parent_id(),
            self.flags
        )
    }

    /// The trace id, 32 lowercase hex digits.
    pub fn trace_id(&self) -> String {
        hex(&self.trace_id)
    }

    /// The parent span's id, 16 lowercase hex digits.
    pub fn parent_id(&self) -> String {
        hex(&self.parent_id)
    }

    /// The trace id and the parent span's id as bytes (for OTLP export).
    pub fn ids(&self) -> ([u8; 16], [u8; 8]) {
        (self.trace_id, self.parent_id)
    }

    /// The trace flags, all eight bits (bit 0: sampled).
    pub fn flags(&self) -> u8 {
        self.flags
    }

    /// Whether the caller sampled the trace (flag bit 0).
    pub fn sampled(&self) -> bool {
        self.flags & 1 == 1
    }

    /// The `tracestate` value passed through, if there was one.
    pub fn state(&self) -> Option<&str> {
        self.state.as_deref()
    }

    /// The same trace continued by a span of our own, `span_id` (zero is not an id, so a zero
    /// `span_id` answers `None`): what a process passes downstream for the work it does.
    pub fn child(&self, span_id: [u8; 8]) -> Option<Self> {
        (span_id != [0; 8]).then(|| Self {
            parent_id: span_id,
            ..self.clone()
        })
    }
}

/// A fresh span id (random, never zero) for [`TraceContext::child`].
pub fn new_span_id() -> [u8; 8] {
    loop {
        let bytes = *uuid::Uuid::new_v4().as_bytes();
        let mut id = [0; 8];
        id.copy_from_slice(&bytes[8..]);
        if id != [0; 8] {
            return id;
        }
    }
}

/// 16 lowercase hex digits of a span id.
pub fn span_id_hex(id: [u8; 8]) -> String {
    hex(&id)
}

fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// Two lowercase hex digits; uppercase is refused, as the spec asks.
fn hex_byte(pair: &[u8]) -> Option<u8> {
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    Some(digit(pair[0])? << 4 | digit(pair[1])?)
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_valid_traceparent_round_trips() {
        let t = TraceContext::parse(VALID).unwrap();
        assert_eq!(t.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(t.parent_id(), "00f067aa0ba902b7");
        assert!(t.sampled());
        assert_eq!(t.traceparent(), VALID);
        let unsampled = TraceContext::parse(&VALID.replace("-01", "-00")).unwrap();
        assert!(!unsampled.sampled());
        // Optional whitespace around a header value is not part of it.
        assert_eq!(TraceContext::parse(&format!(" {VALID}\t")), Some(t));
    }

    #[test]
    fn uppercase_is_refused() {
        assert_eq!(TraceContext::parse(&VALID.to_uppercase()), None);
        assert_eq!(TraceContext::parse(&VALID.replace("4bf9", "4BF9")), None);
        assert_eq!(TraceContext::parse(&VALID.replace("-01", "-0A")), None);
    }

    #[test]
    fn wrong_lengths_and_separators_are_refused() {
        for bad in [
            "",
            "00",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e47366-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b77-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-011",
            "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",
            "0-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            // Version 00 has exactly four fields.
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
        ] {
            assert_eq!(TraceContext::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn zero_ids_are_refused() {
        assert_eq!(
            TraceContext::parse("00-00000000000000000000000000000000-00f067aa0ba902b7-01"),
            None
        );
        assert_eq!(
            TraceContext::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01"),
            None
        );
    }

    #[test]
    fn version_ff_is_refused() {
        assert_eq!(TraceContext::parse(&VALID.replacen("00", "ff", 1)), None);
    }

    #[test]
    fn future_versions_are_read_as_far_as_version_00_goes() {
        let later = "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let t = TraceContext::parse(later).unwrap();
        assert_eq!(t.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        // Passed on as the version we know.
        assert_eq!(t.traceparent(), VALID);
        let extra = format!("{later}-what-comes-next");
        assert_eq!(TraceContext::parse(&extra), Some(t));
        // A longer value must go on with a dash.
        assert_eq!(TraceContext::parse(&format!("{later}x")), None);
    }

    #[test]
    fn tracestate_is_passed_through_when_sane() {
        let t = TraceContext::from_headers(Some(VALID), Some("congo=t61rcWkgMzE,rojo=00f0"));
        assert_eq!(t.unwrap().state(), Some("congo=t61rcWkgMzE,rojo=00f0"));
        let long = "a".repeat(MAX_STATE_LEN + 1);
        let t = TraceContext::from_headers(Some(VALID), Some(&long)).unwrap();
        assert_eq!(t.state(), None);
        assert_eq!(TraceContext::from_headers(None, Some("a=b")), None);
        assert_eq!(
            TraceContext::from_headers(Some("garbage"), Some("a=b")),
            None
        );
    }

    #[test]
    fn a_child_keeps_the_trace_and_takes_the_new_span_as_parent() {
        let t = TraceContext::parse(VALID).unwrap();
        let id = new_span_id();
        assert_ne!(id, [0; 8]);
        let child = t.child(id).unwrap();
        assert_eq!(child.trace_id(), t.trace_id());
        assert_eq!(child.parent_id(), span_id_hex(id));
        assert_eq!(t.child([0; 8]), None);
    }

    #[test]
    fn a_span_of_our_own_is_a_position_in_its_trace() {
        let t = TraceContext::parse(VALID).unwrap();
        let (trace_id, parent_id) = t.ids();
        let own = TraceContext::new(trace_id, parent_id, true).unwrap();
        assert_eq!(own.traceparent(), VALID);
        assert_eq!(own.flags(), 1);
        assert_eq!(TraceContext::new([0; 16], parent_id, true), None);
        assert_eq!(TraceContext::new(trace_id, [0; 8], false), None);
    }
}
