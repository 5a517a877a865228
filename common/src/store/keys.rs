//! Every Redis key (and the one pub/sub channel) of a namespace, named in one place.
//!
//! | key | type | holds |
//! |---|---|---|
//! | `{ns}:op:{B}:{parent}:{id}` | hash | `v` (version, starts at 1) and `r` (the encoded record) |
//! | `{ns}:index:{B}:{parent}` | sorted set | the ids of bucket B's live operations under that parent, score 0 (ordered by id, and ids are UUIDv7, so by creation time) |
//! | `{ns}:req:{B}:{parent}:{requestId}` | string | the name created for that request id |
//! | `{ns}:kinds` | hash | job kinds registered by workers |
//! | `{ns}:watch:leases:{B}` | sorted set | names of bucket B's operations a worker started, scored by when their lease ends |
//! | `{ns}:watch:unpublished:{B}` | sorted set | names of bucket B's operations being queued, scored by when to re-publish them if their publish was never confirmed |
//! | `{ns}:watch:retention:{B}` | sorted set | names of bucket B's operations with a retention, scored by when to see whether they may be deleted |
//! | `{ns}:reaper:{B}` | string | present (with an expiry of one reaper tick) while one reaper has claimed bucket B's sweep |
//!
//! `{B}` is the hash tag of a [`Bucket`] (`{bd}`, `{ae}`, …), and `{parent}` is `-` for the root.
//! An operation's bucket follows from its id; a request id's from the parent and the request id,
//! and the api mints the id of the operation it creates in that bucket. So the record, its index
//! entry, its request-id entry and its watch-list entries share one slot, and every script
//! touches one slot; a bucket's reaper claim is in its slot too, so a bucket stays sweepable
//! whichever other master is down. The kinds hash and the done channel are in slots of their own
//! and only ever touched alone. This module only names keys; it reads and writes nothing.

use super::bucket::Bucket;
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
            "{}:op:{{{}}}:{}:{}",
            self.ns,
            Bucket::of_id(name.id()).tag(),
            Self::parent(name.parent()),
            name.id()
        )
    }

    /// The index of `parent`'s operations in `bucket`.
    pub fn index(&self, parent: &Parent, bucket: Bucket) -> String {
        format!(
            "{}:index:{{{}}}:{}",
            self.ns,
            bucket.tag(),
            Self::parent(parent)
        )
    }

    pub fn request(&self, parent: &Parent, request_id: &str) -> String {
        format!(
            "{}:req:{{{}}}:{}:{request_id}",
            self.ns,
            Bucket::of_request(parent, request_id).tag(),
            Self::parent(parent)
        )
    }

    pub fn kinds(&self) -> String {
        format!("{}:kinds", self.ns)
    }

    /// Watch list `list` of `bucket`.
    pub fn watch(&self, list: Watch, bucket: Bucket) -> String {
        let list = match list {
            Watch::Leases => "leases",
            Watch::Unpublished => "unpublished",
            Watch::Retention => "retention",
        };
        format!("{}:watch:{list}:{{{}}}", self.ns, bucket.tag())
    }

    /// The reapers' claim on `bucket`'s sweep.
    pub fn reaper(&self, bucket: Bucket) -> String {
        format!("{}:reaper:{{{}}}", self.ns, bucket.tag())
    }

    /// Pub/sub channel carrying the name of every operation that became done or was deleted.
    pub fn done_channel(&self) -> String {
        format!("{}:done", self.ns)
    }

    fn parent(parent: &Parent) -> &str {
        if parent.is_root() {
            "-"
        } else {
            parent.as_str()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The slot Redis Cluster hashes a key to: its first `{…}` tag's, if it has a non-empty one.
    fn key_slot(key: &str) -> u16 {
        let tag = key
            .find('{')
            .and_then(|open| {
                let rest = &key[open + 1..];
                rest.find('}')
                    .filter(|&n| n > 0)
                    .map(|close| &rest[..close])
            })
            .unwrap_or(key);
        super::super::bucket::slot(tag)
    }

    #[test]
    fn a_record_and_everything_its_scripts_touch_share_a_slot() {
        let keys = Keys::new("ns");
        for parent in [
            Parent::root(),
            Parent::parse("projects/p1").expect("parent"),
        ] {
            for request in ["a", "b", "request-7"] {
                let bucket = Bucket::of_request(&parent, request);
                let name = parent.operation(&bucket.new_id()).expect("name");
                let slot = key_slot(&keys.op(&name));
                assert_eq!(key_slot(&keys.index(&parent, bucket)), slot);
                assert_eq!(key_slot(&keys.request(&parent, request)), slot);
                assert_eq!(key_slot(&keys.reaper(bucket)), slot);
                for list in [Watch::Leases, Watch::Unpublished, Watch::Retention] {
                    assert_eq!(key_slot(&keys.watch(list, bucket)), slot);
                }
            }
        }
    }

    #[test]
    fn keys_read_as_documented() {
        let keys = Keys::new("ns");
        let name = Parent::root().operation("x").expect("name");
        let tag = Bucket::of_id("x").tag();
        assert_eq!(keys.op(&name), format!("ns:op:{{{tag}}}:-:x"));
        let b = Bucket::new(0).expect("bucket");
        let p = Parent::parse("projects/p").expect("parent");
        assert_eq!(keys.index(&p, b), "ns:index:{bd}:projects/p");
        assert_eq!(keys.watch(Watch::Leases, b), "ns:watch:leases:{bd}");
    }
}
