//! Resource names: `operations/{id}` and `{parent}/operations/{id}`, where `{parent}` is any number
//! of `collection/id` pairs.
//!
//! Names are parsed once, at the boundary, into [`OperationName`] and [`Parent`]; everything inside
//! the system holds the parsed form. This module does no percent-decoding: callers hand it decoded
//! segments (see the api's router).

use std::fmt;
use std::sync::Arc;

/// Longest accepted segment, in bytes.
pub const MAX_SEGMENT_LEN: usize = 128;
/// Longest accepted full name (`…/operations/{id}`), in bytes.
pub const MAX_NAME_LEN: usize = 512;

/// Why a name was refused; the message is shown to users as is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error(
        "name segment {0:?} is not allowed: segments are 1-{MAX_SEGMENT_LEN} characters of A-Z a-z 0-9 - . _ ~ @ and never \".\" or \"..\""
    )]
    BadSegment(String),
    #[error("name is longer than {MAX_NAME_LEN} characters")]
    TooLong,
    #[error(
        "{0:?} is not an operation name: expected operations/{{id}} or {{collection}}/{{id}}/.../operations/{{id}}"
    )]
    Shape(String),
    #[error("{0:?} is not a parent: expected an even number of segments, collection/id pairs")]
    ParentShape(String),
}

/// Checks one decoded path segment against the allowed alphabet.
///
/// The alphabet is RFC 3986's unreserved characters plus `@`: it keeps names printable, free of
/// `/`, `:` (the custom-verb separator) and `{}` (Redis hash tags), and safe in AMQP queue names.
pub fn check_segment(segment: &str) -> Result<(), NameError> {
    let ok = !segment.is_empty()
        && segment.len() <= MAX_SEGMENT_LEN
        && segment != "."
        && segment != ".."
        && segment
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'@'));
    if ok {
        Ok(())
    } else {
        Err(NameError::BadSegment(segment.to_owned()))
    }
}

/// The collection an operation lives in: empty (root) or `collection/id` pairs.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Parent(String);

impl Parent {
    /// The root parent, under which `operations/{id}` live.
    pub fn root() -> Self {
        Self::default()
    }

    /// Parses decoded segments (`["projects", "p"]`); an empty slice is the root.
    pub fn from_segments<S: AsRef<str>>(segments: &[S]) -> Result<Self, NameError> {
        let joined = segments
            .iter()
            .map(AsRef::as_ref)
            .collect::<Vec<_>>()
            .join("/");
        if !segments.len().is_multiple_of(2) {
            return Err(NameError::ParentShape(joined));
        }
        for s in segments {
            check_segment(s.as_ref())?;
        }
        if joined.len() > MAX_NAME_LEN {
            return Err(NameError::TooLong);
        }
        Ok(Self(joined))
    }

    /// Parses `projects/p` (or `""` for the root).
    pub fn parse(s: &str) -> Result<Self, NameError> {
        if s.is_empty() {
            return Ok(Self::root());
        }
        Self::from_segments(&s.split('/').collect::<Vec<_>>())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    /// The name of operation `id` under this parent.
    pub fn operation(&self, id: &str) -> Result<OperationName, NameError> {
        check_segment(id)?;
        let name = if self.is_root() {
            format!("operations/{id}")
        } else {
            format!("{}/operations/{id}", self.0)
        };
        if name.len() > MAX_NAME_LEN {
            return Err(NameError::TooLong);
        }
        Ok(OperationName {
            parent: self.clone(),
            id_start: name.len() - id.len(),
            full: name.into(),
        })
    }
}

impl fmt::Display for Parent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A valid operation name. Construct with [`OperationName::parse`] or [`Parent::operation`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OperationName {
    parent: Parent,
    /// The whole name, shared: a worker keeps a clone per running job in several places, and
    /// each costs a count, not an allocation.
    full: Arc<str>,
    /// Where the id starts in `full`.
    id_start: usize,
}

impl OperationName {
    /// Parses decoded segments ending in `operations/{id}`.
    pub fn from_segments<S: AsRef<str>>(segments: &[S]) -> Result<Self, NameError> {
        let n = segments.len();
        if n < 2 || !n.is_multiple_of(2) || segments[n - 2].as_ref() != "operations" {
            let joined = segments
                .iter()
                .map(AsRef::as_ref)
                .collect::<Vec<_>>()
                .join("/");
            return Err(NameError::Shape(joined));
        }
        Parent::from_segments(&segments[..n - 2])?.operation(segments[n - 1].as_ref())
    }

    /// Parses `operations/{id}` or `{parent}/operations/{id}`.
    pub fn parse(s: &str) -> Result<Self, NameError> {
        if s.len() > MAX_NAME_LEN {
            return Err(NameError::TooLong);
        }
        Self::from_segments(&s.split('/').collect::<Vec<_>>())
    }

    pub fn parent(&self) -> &Parent {
        &self.parent
    }

    pub fn id(&self) -> &str {
        &self.full[self.id_start..]
    }

    pub fn as_str(&self) -> &str {
        &self.full
    }
}

impl fmt::Display for OperationName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.full)
    }
}

impl serde::Serialize for OperationName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.full)
    }
}

impl<'de> serde::Deserialize<'de> for OperationName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_root_and_nested_names() {
        let n = OperationName::parse("operations/abc").unwrap();
        assert!(n.parent().is_root());
        assert_eq!(n.id(), "abc");
        let n = OperationName::parse("enterprises/e1/devices/d1/operations/x-1").unwrap();
        assert_eq!(n.parent().as_str(), "enterprises/e1/devices/d1");
        assert_eq!(n.as_str(), "enterprises/e1/devices/d1/operations/x-1");
    }

    #[test]
    fn refuses_bad_shapes_and_segments() {
        for bad in [
            "",
            "operations",
            "operations/",
            "ops/abc",
            "projects/operations/abc",
            "projects/p/operations/..",
            "projects/./operations/a",
            "operations/a b",
            "operations/a:b",
            "operations/a{b}",
            "projects//operations/a",
        ] {
            assert!(
                OperationName::parse(bad).is_err(),
                "{bad:?} should be refused"
            );
        }
        let long = format!("operations/{}", "a".repeat(MAX_SEGMENT_LEN + 1));
        assert!(OperationName::parse(&long).is_err());
        let deep = format!("{}operations/a", "c/i/".repeat(200));
        assert_eq!(OperationName::parse(&deep), Err(NameError::TooLong));
    }

    #[test]
    fn parents_are_pairs() {
        assert!(Parent::parse("").unwrap().is_root());
        assert_eq!(Parent::parse("projects/p").unwrap().as_str(), "projects/p");
        assert!(Parent::parse("projects").is_err());
        assert!(Parent::parse("projects/..").is_err());
    }
}
