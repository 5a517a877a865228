//! Who is calling, and what they may do — one layer for both transports.
//!
//! A transport only extracts the raw [`Credentials`] (REST: `Authorization`, `x-goog-api-key`,
//! `?key=`; gRPC: the same metadata) and hands them to [`Auth::authenticate`]; the service then
//! asks the [`Principal`] whether it may call a [`Method`] on a parent ([`Principal::authorize`])
//! before it touches Redis, so a principal outside its parents learns nothing (AIP-211: 403
//! whether or not the operation exists).
//!
//! This module is the policy: scopes, methods, principals and their parents. How credentials are
//! verified is [`verify`]. With no credential settings at all, authentication is off and every
//! caller is the anonymous principal with every scope.
//! Rate limiting is not here (see [`crate::limit`]); neither is the audit log (the service writes
//! it, since it knows the outcome).

mod verify;

use std::sync::Arc;

use lro_common::name::Parent;
use lro_common::status::Code;

pub use verify::{Auth, AuthConfig, Credentials, LEEWAY_SECS};

use crate::error::ApiError;

/// A permission, as named in tokens' `scope` and API keys' `scopes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Read,
    Cancel,
    Delete,
    Submit,
}

impl Scope {
    pub fn name(self) -> &'static str {
        match self {
            Self::Read => "lro.operations.read",
            Self::Cancel => "lro.operations.cancel",
            Self::Delete => "lro.operations.delete",
            Self::Submit => "lro.jobs.submit",
        }
    }

    fn bit(self) -> u8 {
        1 << self as u8
    }
}

/// `lro.admin`: every scope.
const ADMIN: &str = "lro.admin";
const ALL_SCOPES: u8 = 0b1111;

pub(crate) fn scope_bits<'a>(names: impl IntoIterator<Item = &'a str>) -> u8 {
    let mut bits = 0;
    for name in names {
        bits |= match name {
            ADMIN => ALL_SCOPES,
            "lro.operations.read" => Scope::Read.bit(),
            "lro.operations.cancel" => Scope::Cancel.bit(),
            "lro.operations.delete" => Scope::Delete.bit(),
            "lro.jobs.submit" => Scope::Submit.bit(),
            // Scopes of other services mean nothing here.
            _ => 0,
        };
    }
    bits
}

/// A method of the api, for authorization and the audit log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Submit,
    BatchSubmit,
    Get,
    List,
    Wait,
    Cancel,
    BatchCancel,
    Delete,
    ListKinds,
}

impl Method {
    pub fn scope(self) -> Scope {
        match self {
            Self::Get | Self::List | Self::Wait | Self::ListKinds => Scope::Read,
            Self::Cancel | Self::BatchCancel => Scope::Cancel,
            Self::Delete => Scope::Delete,
            Self::Submit | Self::BatchSubmit => Scope::Submit,
        }
    }

    /// The fully qualified RPC name (as in `ErrorInfo.metadata` and the audit log).
    pub fn rpc(self) -> &'static str {
        match self {
            Self::Submit => "lro.v1.Jobs.SubmitJob",
            Self::BatchSubmit => "lro.v1.Jobs.BatchSubmitJobs",
            Self::ListKinds => "lro.v1.Jobs.ListKinds",
            Self::BatchCancel => "lro.v1.Jobs.BatchCancelOperations",
            Self::Get => "google.longrunning.Operations.GetOperation",
            Self::List => "google.longrunning.Operations.ListOperations",
            Self::Wait => "google.longrunning.Operations.WaitOperation",
            Self::Cancel => "google.longrunning.Operations.CancelOperation",
            Self::Delete => "google.longrunning.Operations.DeleteOperation",
        }
    }
}

/// Who is calling: a token's `sub`, an API key's `name`, or the anonymous caller when
/// authentication is off. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Principal(Arc<PrincipalInner>);

#[derive(Debug)]
struct PrincipalInner {
    /// `None` for the anonymous caller.
    name: Option<String>,
    scopes: u8,
    /// `None`: every parent.
    parents: Option<Vec<String>>,
}

impl Principal {
    /// The caller when authentication is off: every scope, every parent.
    pub fn anonymous() -> Self {
        Self(Arc::new(PrincipalInner {
            name: None,
            scopes: ALL_SCOPES,
            parents: None,
        }))
    }

    pub(crate) fn new(name: String, scopes: u8, parents: Option<Vec<String>>) -> Self {
        Self(Arc::new(PrincipalInner {
            name: Some(name),
            scopes,
            parents,
        }))
    }

    /// The principal's name; `None` when authentication is off.
    pub fn name(&self) -> Option<&str> {
        self.0.name.as_deref()
    }

    /// The name as the audit log and rate limiter see it.
    pub fn label(&self) -> &str {
        self.name().unwrap_or("anonymous")
    }

    /// Whether this principal may call `method` on operations under `parent`: the scope first,
    /// then the parent — both before anything is read, so a refusal says nothing about what
    /// exists.
    /// `parent` is `None` for methods that reach no operation (`ListKinds`).
    pub fn authorize(&self, method: Method, parent: Option<&Parent>) -> Result<(), ApiError> {
        let scope = method.scope();
        if self.0.scopes & scope.bit() == 0 {
            return Err(ApiError::new(
                Code::PermissionDenied,
                "ACCESS_TOKEN_SCOPE_INSUFFICIENT",
                format!(
                    "request had insufficient authentication scopes: {} needs {}",
                    method.rpc(),
                    scope.name()
                ),
            )
            .with("method", method.rpc())
            .with("scope", scope.name()));
        }
        if let Some(parent) = parent
            && !self.covers(parent)
        {
            let target = if parent.is_root() {
                "the top level"
            } else {
                parent.as_str()
            };
            return Err(ApiError::new(
                Code::PermissionDenied,
                "IAM_PERMISSION_DENIED",
                format!(
                    "permission {} denied on {target} (or it may not exist)",
                    method.rpc()
                ),
            )
            .with("method", method.rpc())
            .with("parent", parent.as_str()));
        }
        Ok(())
    }

    /// Whether `parent` is one of the principal's parents or nested under one, segment by
    /// segment (`""` stands for the top level only).
    fn covers(&self, parent: &Parent) -> bool {
        let Some(allowed) = &self.0.parents else {
            return true;
        };
        let p = parent.as_str();
        allowed.iter().any(|a| {
            if a.is_empty() {
                p.is_empty()
            } else {
                p == a || (p.starts_with(a.as_str()) && p.as_bytes().get(a.len()) == Some(&b'/'))
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(parents: &[&str]) -> Principal {
        Principal::new(
            "p".into(),
            ALL_SCOPES,
            Some(parents.iter().map(|s| (*s).to_owned()).collect()),
        )
    }

    fn parent(s: &str) -> Parent {
        Parent::parse(s).expect("parent")
    }

    #[test]
    fn parents_are_matched_segment_by_segment() {
        let p = principal(&["projects/p1"]);
        assert!(p.covers(&parent("projects/p1")));
        assert!(p.covers(&parent("projects/p1/locations/l")));
        assert!(!p.covers(&parent("projects/p10")));
        assert!(!p.covers(&parent("")));
        let root = principal(&[""]);
        assert!(root.covers(&parent("")));
        assert!(!root.covers(&parent("projects/p1")));
        assert!(Principal::anonymous().covers(&parent("projects/x")));
    }

    #[test]
    fn scopes_per_method() {
        let read = Principal::new("r".into(), scope_bits(["lro.operations.read"]), None);
        for m in [Method::Get, Method::List, Method::Wait, Method::ListKinds] {
            assert!(read.authorize(m, Some(&Parent::root())).is_ok(), "{m:?}");
        }
        for m in [
            Method::Cancel,
            Method::BatchCancel,
            Method::Delete,
            Method::Submit,
        ] {
            let e = read.authorize(m, None).expect_err("refused");
            assert_eq!(e.reason, "ACCESS_TOKEN_SCOPE_INSUFFICIENT");
        }
        assert_eq!(scope_bits(["lro.admin"]), ALL_SCOPES);
        assert_eq!(scope_bits(["https://example.com/other"]), 0);
    }
}
