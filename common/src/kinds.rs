//! What the api knows about job kinds: their names and whether they can be cancelled.
//!
//! The built-in kinds are part of the contract, so they are known even before any worker starts.
//! Workers built on the library register their own kinds in Redis at start-up (see
//! [`crate::store::Store::register_kinds`]); the api accepts the union.

use serde::{Deserialize, Serialize};

/// A job kind as the api sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KindInfo {
    pub name: String,
    pub cancellable: bool,
}

/// The kinds every `lro-worker` runs (see the contract's "Built-in job kinds").
pub fn builtin() -> Vec<KindInfo> {
    [
        ("sleep", true),
        ("noop", true),
        ("fail", true),
        ("spin", true),
        ("uninterruptible", false),
    ]
    .into_iter()
    .map(|(name, cancellable)| KindInfo {
        name: name.to_owned(),
        cancellable,
    })
    .collect()
}
