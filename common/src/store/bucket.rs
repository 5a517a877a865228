//! Buckets: how one parent's operations are spread over the Redis Cluster's slots.
//!
//! Every namespace has [`BUCKETS`] buckets. An operation's bucket follows from its id alone (the
//! low 32 bits of its UUID, modulo [`BUCKETS`]), so reading one needs no lookup; its record,
//! its parent's index for that bucket, its request-id entry and the watch lists of that bucket all
//! carry the bucket's hash tag, so every script touches one slot. Each bucket's tag is fixed
//! ([`TAGS`]) and hashes into the bucket's own 24th of the slot space — near its middle — so a
//! cluster whose masters split the slots evenly (2, 3, 4, 6 or 8 masters, as
//! `redis-cli --cluster create` does) holds the same number of buckets on each master.
//!
//! A `requestId` is made atomic with its create by choosing the new id inside the request's
//! bucket ([`Bucket::of_request`], [`Bucket::new_id`]): the request-id key and the record then
//! share a slot. This module computes names only; it reads and writes nothing.

use crate::name::Parent;

/// Buckets per namespace: 24 divides evenly among 2, 3, 4, 6 and 8 masters.
pub const BUCKETS: u8 = 24;

/// Redis Cluster's slot count.
const SLOTS: u32 = 16384;

/// Bucket `i`'s hash tag; `slot(TAGS[i])` lies near the middle of the i-th 24th of the slots.
/// Found by a search over short strings (`tests::tags_hash_into_their_own_share` checks it).
const TAGS: [&str; BUCKETS as usize] = [
    "bd", "ae", "7", "ds", "f", "s", "be", "ad", "6", "dr", "g", "r", "bb", "ag", "1", "c8", "d",
    "q", "bc", "br", "0", "c9", "e", "p",
];

/// One of a namespace's [`BUCKETS`] buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Bucket(u8);

impl Bucket {
    /// Every bucket, in order.
    pub fn all() -> impl Iterator<Item = Self> + Clone {
        (0..BUCKETS).map(Self)
    }

    /// The bucket numbered `i`, if there is one.
    pub fn new(i: u8) -> Option<Self> {
        (i < BUCKETS).then_some(Self(i))
    }

    pub fn index(self) -> u8 {
        self.0
    }

    /// The bucket of operation `id`: its UUID's low 32 bits modulo [`BUCKETS`] (an id that is not
    /// a UUID, which the api never mints, by its crc16).
    pub fn of_id(id: &str) -> Self {
        match uuid::Uuid::try_parse(id) {
            Ok(u) => Self((low32(&u) % u32::from(BUCKETS)) as u8),
            Err(_) => Self((crc16(id.as_bytes()) % u16::from(BUCKETS)) as u8),
        }
    }

    /// The bucket of a request id under `parent`, where the operation it creates is put.
    pub fn of_request(parent: &Parent, request_id: &str) -> Self {
        let mut bytes = Vec::with_capacity(parent.as_str().len() + 1 + request_id.len());
        bytes.extend_from_slice(parent.as_str().as_bytes());
        bytes.push(0);
        bytes.extend_from_slice(request_id.as_bytes());
        Self((crc16(&bytes) % u16::from(BUCKETS)) as u8)
    }

    /// A new UUIDv7 id in this bucket: `Uuid::now_v7` with its low 32 random bits moved to the
    /// nearest value in the bucket. Version, variant, timestamp and the process-wide counter above
    /// those bits are kept, so ids stay in creation order.
    pub fn new_id(self) -> String {
        let u = uuid::Uuid::now_v7();
        let mut bytes = *u.as_bytes();
        let low = low32(&u);
        let base = low - low % u32::from(BUCKETS);
        let moved = base
            .checked_add(u32::from(self.0))
            .unwrap_or(base - u32::from(BUCKETS) + u32::from(self.0));
        bytes[12..].copy_from_slice(&moved.to_be_bytes());
        uuid::Uuid::from_bytes(bytes).to_string()
    }

    /// The hash tag every key of this bucket carries (without its braces).
    pub fn tag(self) -> &'static str {
        TAGS[usize::from(self.0)]
    }

    /// The cluster slot every key of this bucket is in.
    pub fn slot(self) -> u16 {
        slot(self.tag())
    }
}

fn low32(u: &uuid::Uuid) -> u32 {
    let b = u.as_bytes();
    u32::from_be_bytes([b[12], b[13], b[14], b[15]])
}

/// CRC-16/XMODEM (polynomial 0x1021, initial value 0), the checksum Redis Cluster hashes keys by.
pub(super) fn crc16(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &b in bytes {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// The cluster slot of a hash tag (or of a whole key without one).
pub(super) fn slot(tag: &str) -> u16 {
    (u32::from(crc16(tag.as_bytes())) % SLOTS) as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc16_matches_redis() {
        assert_eq!(crc16(b"123456789"), 0x31C3);
        // `CLUSTER KEYSLOT foo`, `CLUSTER KEYSLOT bar`
        assert_eq!(slot("foo"), 12182);
        assert_eq!(slot("bar"), 5061);
        assert_eq!(slot(""), 0);
    }

    #[test]
    fn tags_hash_into_their_own_share() {
        for b in Bucket::all() {
            let s = u32::from(slot(b.tag()));
            assert_eq!(
                s * u32::from(BUCKETS) / SLOTS,
                u32::from(b.index()),
                "{b:?}"
            );
            // Near the middle, so that a split of the slots into equal ranges (rounded either
            // way) never cuts a bucket's share at its tag.
            let middle = (2 * u32::from(b.index()) + 1) * SLOTS / (2 * u32::from(BUCKETS));
            assert!(s.abs_diff(middle) < 100, "{b:?} slot {s}");
        }
    }

    #[test]
    fn three_equal_masters_hold_eight_buckets_each() {
        // `redis-cli --cluster create` with 3 masters: 0-5460, 5461-10922, 10923-16383.
        let mut per = [0; 3];
        for b in Bucket::all() {
            let s = slot(b.tag());
            per[usize::from(s > 5460) + usize::from(s > 10922)] += 1;
        }
        assert_eq!(per, [8, 8, 8]);
    }

    #[test]
    fn new_ids_land_in_their_bucket_and_keep_order() {
        let mut last = String::new();
        for round in 0..200u32 {
            let b = Bucket::new((round % u32::from(BUCKETS)) as u8).expect("bucket");
            let id = b.new_id();
            let u = uuid::Uuid::parse_str(&id).expect("uuid");
            assert_eq!(u.get_version_num(), 7);
            assert_eq!(u.get_variant(), uuid::Variant::RFC4122);
            assert_eq!(Bucket::of_id(&id), b);
            assert!(id > last, "{id} after {last}");
            last = id;
        }
    }

    #[test]
    fn a_request_has_one_bucket() {
        let p = Parent::parse("projects/p1").expect("parent");
        let b = Bucket::of_request(&p, "r-1");
        assert_eq!(b, Bucket::of_request(&p, "r-1"));
        assert!(b.index() < BUCKETS);
        let spread: std::collections::HashSet<_> = (0..500)
            .map(|i| Bucket::of_request(&p, &format!("r-{i}")))
            .collect();
        assert_eq!(spread.len(), usize::from(BUCKETS));
    }

    #[test]
    fn ids_spread_over_every_bucket() {
        let mut per = [0u32; BUCKETS as usize];
        for _ in 0..2400 {
            per[usize::from(Bucket::of_id(&uuid::Uuid::now_v7().to_string()).index())] += 1;
        }
        assert!(per.iter().all(|&n| n > 50), "{per:?}");
    }
}
