//! The list filter (a subset of AIP-160), shared by the api's list and batch cancel and by the
//! worker that runs a batch cancel, so that both read a filter the same way.
//!
//! Grammar: terms joined by ` AND `, each `field = value` with `field` one of `done`,
//! `metadata.state`, `metadata.kind`; values may be quoted. Pure: no I/O. Turning a refusal into
//! an api error is the api's business.

use crate::operation::{Operation, State};

/// A parsed filter; every present field must match. The empty filter matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    pub done: Option<bool>,
    pub state: Option<State>,
    pub kind: Option<String>,
}

/// Why a filter was refused (lowercase, for the caller's message).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct FilterError(pub String);

impl Filter {
    pub fn parse(s: &str) -> Result<Self, FilterError> {
        let bad = |msg: String| FilterError(msg);
        let mut f = Filter::default();
        if s.trim().is_empty() {
            return Ok(f);
        }
        for term in s.split(" AND ") {
            let (field, value) = term
                .split_once('=')
                .ok_or_else(|| bad(format!("filter term {term:?} is not field=value")))?;
            let field = field.trim();
            let value = unquote(value.trim())
                .ok_or_else(|| bad(format!("filter value in {term:?} is badly quoted")))?;
            match field {
                "done" if f.done.is_none() => {
                    f.done = Some(match value {
                        "true" => true,
                        "false" => false,
                        _ => return Err(bad(format!("done must be true or false, not {value:?}"))),
                    });
                }
                "metadata.state" if f.state.is_none() => {
                    f.state = Some(State::parse(value).ok_or_else(|| {
                        bad(format!(
                            "unknown state {value:?}; states are {}",
                            State::ALL.map(State::name).join(", ")
                        ))
                    })?);
                }
                "metadata.kind" if f.kind.is_none() => f.kind = Some(value.to_owned()),
                "done" | "metadata.state" | "metadata.kind" => {
                    return Err(bad(format!("field {field} appears twice in the filter")));
                }
                _ => {
                    return Err(bad(format!(
                        "cannot filter on {field:?}: use done, metadata.state or metadata.kind"
                    )));
                }
            }
        }
        Ok(f)
    }

    pub fn matches(&self, op: &Operation) -> bool {
        self.done.is_none_or(|d| op.is_done() == d)
            && self.state.is_none_or(|s| op.state() == s)
            && self.kind.as_ref().is_none_or(|k| &op.kind == k)
    }
}

fn unquote(v: &str) -> Option<&str> {
    match v.strip_prefix('"') {
        Some(rest) => rest.strip_suffix('"').filter(|inner| !inner.contains('"')),
        None if v.contains('"') || v.is_empty() => None,
        None => Some(v),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_filter_subset() {
        assert_eq!(Filter::parse("").unwrap(), Filter::default());
        let f =
            Filter::parse(r#"done = false AND metadata.state=RUNNING AND metadata.kind="sleep""#)
                .unwrap();
        assert_eq!(f.done, Some(false));
        assert_eq!(f.state, Some(State::Running));
        assert_eq!(f.kind.as_deref(), Some("sleep"));
        assert_eq!(
            Filter::parse(r#"metadata.state="CANCELLED""#)
                .unwrap()
                .state,
            Some(State::Cancelled)
        );
        for bad in [
            "done",
            "done=maybe",
            "name=x",
            "metadata.state=running",
            "done=true AND done=false",
            r#"metadata.kind="sleep"#,
            "done=true and done=false",
        ] {
            assert!(Filter::parse(bad).is_err(), "{bad}");
        }
    }
}
