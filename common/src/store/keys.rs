//! Every Redis key (and the one pub/sub channel) of a namespace, named in one place.
//!
//! | key | type | holds |
//! |---|---|---|
//! | `{ns}:op:{B}:{parent}:{id}` | hash | `v` (version, starts at 1) and `r` (the encoded record) |
//! | `{ns}:index:{B}:{parent}` | sorted set | the ids of bucket B's live operations under that parent, score 0 (ordered by id, and ids are UUIDv7, so by creation time) |
//! | `{ns}:req:{B}:{parent}:{requestId}` | string | the name created for that request id |
//! | `{ns}:kinds` | hash | job kinds registered by workers |
//! | `{ns}:owned:{B}:{worker}` | set | names of bucket B's operations RUNNING on that worker (kept by the scripts that write the records) |
//! | `{ns}:watch:cancels:{B}` | sorted set | names of bucket B's running operations with a cancel on record, scored by when a reaper makes sure their worker's inbox has it |
//! | `{ns}:watch:unpublished:{B}` | sorted set | names of bucket B's operations being queued, scored by when to re-publish them if their publish was never confirmed |
//! | `{ns}:watch:retention:{B}` | sorted set | names of bucket B's operations with a retention, scored by when to see whether they may be deleted |
//! | `{ns}:reaper:{B}` | string | present (with an expiry of one reaper tick) while one reaper has claimed bucket B's sweep |
//! | `{ns}:workers:{W}` | sorted set | every live worker, scored by when its heartbeat expires |
//! | `{ns}:inbox:{W}:{worker}` | set | names of operations with a cancel on record that worker runs, drained by its heartbeat |
//! | `{ns}:reaping:{W}:{worker}` | string | present while one reaper loses that dead worker's attempts |
//!
//! `{B}` is the hash tag of a [`Bucket`] (`{bd}`, `{ae}`, …), and `{parent}` is `-` for the root.
//! An operation's bucket follows from its id; a request id's from the parent and the request id,
//! and the api mints the id of the operation it creates in that bucket. So the record, its index
//! entry, its request-id entry and its watch-list entries share one slot, and every script
//! touches one slot; a bucket's reaper claim is in its slot too, so a bucket stays sweepable
//! whichever other master is down. `{W}` is the namespace's workers tag (`{ns:workers}`): the
//! heartbeat list, the inboxes and the reaping claims share one slot, so a heartbeat extends its
//! entry and drains its inbox in one script. The kinds hash and the done channel are in slots of
//! their own and only ever touched alone. This module only names keys; it reads and writes nothing.

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
            Watch::Cancels => "cancels",
            Watch::Unpublished => "unpublished",
            Watch::Retention => "retention",
        };
        format!("{}:watch:{list}:{{{}}}", self.ns, bucket.tag())
    }

    /// The reapers' claim on `bucket`'s sweep.
    pub fn reaper(&self, bucket: Bucket) -> String {
        format!("{}:reaper:{{{}}}", self.ns, bucket.tag())
    }

    /// The names of `bucket`'s operations RUNNING on `worker`.
    pub fn owned(&self, bucket: Bucket, worker: &str) -> String {
        format!("{}:owned:{{{}}}:{worker}", self.ns, bucket.tag())
    }

    /// Every live worker, scored by when its heartbeat expires.
    pub fn workers(&self) -> String {
        format!("{}:workers:{}", self.ns, self.workers_tag())
    }

    /// `worker`'s cancel inbox.
    pub fn inbox(&self, worker: &str) -> String {
        format!("{}:inbox:{}:{worker}", self.ns, self.workers_tag())
    }

    /// A reaper's claim on losing dead `worker`'s attempts.
    pub fn reaping(&self, worker: &str) -> String {
        format!("{}:reaping:{}:{worker}", self.ns, self.workers_tag())
    }

    fn workers_tag(&self) -> String {
        format!("{{{}:workers}}", self.ns)
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
                assert_eq!(key_slot(&keys.owned(bucket, "w-1")), slot);
                for list in [Watch::Cancels, Watch::Unpublished, Watch::Retention] {
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
        assert_eq!(keys.watch(Watch::Cancels, b), "ns:watch:cancels:{bd}");
        assert_eq!(keys.owned(b, "w-1"), "ns:owned:{bd}:w-1");
        assert_eq!(keys.workers(), "ns:workers:{ns:workers}");
        assert_eq!(keys.inbox("w-1"), "ns:inbox:{ns:workers}:w-1");
    }

    #[test]
    fn a_heartbeat_and_its_inbox_share_a_slot() {
        let keys = Keys::new("ns");
        let slot = key_slot(&keys.workers());
        assert_eq!(key_slot(&keys.inbox("w-1")), slot);
        assert_eq!(key_slot(&keys.reaping("w-1")), slot);
    }
}
