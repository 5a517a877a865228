//! Every Redis key (and the one pub/sub channel) of a namespace, named in one place.
//!
//! | key | type | holds |
//! |---|---|---|
//! | `{ns}:op:{parent}:{id}` | hash | `v` (version, starts at 1) and `r` (the encoded record) |
//! | `{ns}:index:{parent}` | sorted set | every live operation's id under that parent, score 0 (ordered by id, and ids are UUIDv7, so by creation time) |
//! | `{ns}:req:{parent}:{requestId}` | string | the name created for that request id |
//! | `{ns}:kinds` | hash | job kinds registered by workers |
//! | `{ns}:watch:leases` | sorted set | names of operations a worker started, scored by when their lease ends |
//! | `{ns}:watch:unpublished` | sorted set | names of operations being queued, scored by when to re-publish them if their publish was never confirmed |
//! | `{ns}:watch:retention` | sorted set | names of operations with a retention, scored by when to see whether they may be deleted |
//!
//! `{…}` is a Redis Cluster hash tag: one parent's record, index and request-id keys share a slot
//! (the root parent's tag is `-`). The kinds hash and the watch lists carry no tag, so they are in
//! slots of their own, and the scripts that write a record together with watch-list entries touch
//! more than one slot: fine on one Redis, not on a cluster (issue 11). This module only names keys; it
//! reads and writes nothing.

use super::watch::Watch;
use crate::name::{OperationName, Parent};

/// Key names for one namespace.
#[derive(Debug, Clone)]
pub struct Keys {
    ns: String,
}

impl Keys {
    pub fn new(namespace: &str) -> Self {
        Self {
            ns: namespace.to_owned(),
        }
    }

    pub fn op(&self, name: &OperationName) -> String {
        format!(
            "{}:op:{{{}}}:{}",
            self.ns,
            Self::tag(name.parent()),
            name.id()
        )
    }

    pub fn index(&self, parent: &Parent) -> String {
        format!("{}:index:{{{}}}", self.ns, Self::tag(parent))
    }

    pub fn request(&self, parent: &Parent, request_id: &str) -> String {
        format!("{}:req:{{{}}}:{request_id}", self.ns, Self::tag(parent))
    }

    pub fn kinds(&self) -> String {
        format!("{}:kinds", self.ns)
    }

    pub fn watch(&self, list: Watch) -> String {
        match list {
            Watch::Leases => format!("{}:watch:leases", self.ns),
            Watch::Unpublished => format!("{}:watch:unpublished", self.ns),
            Watch::Retention => format!("{}:watch:retention", self.ns),
        }
    }

    /// Pub/sub channel carrying the name of every operation that became done or was deleted.
    pub fn done_channel(&self) -> String {
        format!("{}:done", self.ns)
    }

    fn tag(parent: &Parent) -> &str {
        if parent.is_root() {
            "-"
        } else {
            parent.as_str()
        }
    }
}
