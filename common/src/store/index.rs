//! Reading a parent's operations in id order: its index is one sorted set per [`Bucket`], and a
//! page merges them.
//!
//! Ids are UUIDv7, so id order is creation order, within a bucket and across them; the merge is
//! exact: an id is answered only once every bucket that could still hold a smaller one has been
//! read past it. Each round reads every bucket not yet exhausted (in one pipeline on a standalone
//! Redis), a few more ids each than an even share of the page, doubling when a round was not
//! enough. This module decides no filter and no page token: the api's list and the batch cancel
//! walk these pages.

use super::bucket::{BUCKETS, Bucket};
use super::{Store, StoreError};
use crate::name::Parent;
use crate::operation::Operation;
use crate::wire;

impl Store {
    /// Up to `count` ids under `parent`, in id order, strictly after `after` (if given).
    pub async fn index_page(
        &self,
        parent: &Parent,
        after: Option<&str>,
        count: usize,
    ) -> Result<Vec<String>, StoreError> {
        if count == 0 {
            return Ok(Vec::new());
        }
        let buckets: Vec<Bucket> = Bucket::all().collect();
        // Per bucket: the last id read (the next read starts after it), and whether it is exhausted.
        let mut cursor: Vec<Option<String>> = vec![after.map(str::to_owned); buckets.len()];
        let mut exhausted = vec![false; buckets.len()];
        let mut known: Vec<String> = Vec::new();
        let mut per = (count / usize::from(BUCKETS) * 2 + 8).min(count);
        loop {
            let reading: Vec<usize> = (0..buckets.len()).filter(|&i| !exhausted[i]).collect();
            let cmds = reading
                .iter()
                .map(|&i| {
                    let min = cursor[i]
                        .as_deref()
                        .map_or_else(|| "-".to_owned(), |a| format!("({a}"));
                    let mut cmd = redis::cmd("ZRANGE");
                    cmd.arg(self.keys.index(parent, buckets[i]))
                        .arg(min)
                        .arg("+")
                        .arg("BYLEX")
                        .arg("LIMIT")
                        .arg(0)
                        .arg(per);
                    cmd
                })
                .collect();
            let pages: Vec<Vec<String>> = self.each(cmds).await?;
            for (&i, ids) in reading.iter().zip(pages) {
                exhausted[i] = ids.len() < per;
                if let Some(last) = ids.last() {
                    cursor[i] = Some(last.clone());
                }
                known.extend(ids);
            }
            known.sort_unstable();
            // Every id up to the smallest cursor of a bucket not yet exhausted is known.
            let bound = (0..buckets.len())
                .filter(|&i| !exhausted[i])
                .filter_map(|i| cursor[i].as_deref())
                .min();
            let settled = match bound {
                None => known.len(),
                Some(b) => known.partition_point(|id| id.as_str() <= b),
            };
            if settled >= count || bound.is_none() {
                known.truncate(settled.min(count));
                return Ok(known);
            }
            per = (per * 2).min(count);
        }
    }

    /// How many operations `parent` holds (the sum of its bucket indexes' sizes).
    pub async fn index_len(&self, parent: &Parent) -> Result<u64, StoreError> {
        let cmds = Bucket::all()
            .map(|b| {
                let mut cmd = redis::cmd("ZCARD");
                cmd.arg(self.keys.index(parent, b));
                cmd
            })
            .collect();
        let sizes: Vec<u64> = self.each(cmds).await?;
        Ok(sizes.iter().sum())
    }

    /// Reads many operations in one round trip; ids whose record is gone are skipped.
    pub async fn get_many(
        &self,
        parent: &Parent,
        ids: &[String],
    ) -> Result<Vec<Operation>, StoreError> {
        let mut cmds = Vec::with_capacity(ids.len());
        for id in ids {
            let name = parent.operation(id).map_err(|_| StoreError::BadIndex {
                parent: parent.to_string(),
                id: id.clone(),
            })?;
            let mut cmd = redis::cmd("HGET");
            cmd.arg(self.keys.op(&name)).arg("r");
            cmds.push(cmd);
        }
        let raw: Vec<Option<Vec<u8>>> = self.each(cmds).await?;
        raw.into_iter()
            .flatten()
            .map(|r| wire::decode_record(&r).map_err(StoreError::from))
            .collect()
    }
}
