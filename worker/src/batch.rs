//! The built-in `batch-cancel` kind: walks the operations directly under the batch's own parent
//! (never nested parents, never the batch itself) in id order, cancels each one its filter
//! matches exactly as `:cancel` does ([`lro_common::cancel::request`], recording the batch's
//! principal), reports progress once per page, and stops between operations when its own token
//! fires.
//!
//! **Counting across attempts.** A worker that dies mid-batch loses nothing: the batch runs
//! again as the next attempt and walks the parent again from the start, counting afresh. An
//! operation the earlier attempt cancelled now reads CANCELLING or CANCELLED (and may no longer
//! match a filter such as `done=false`); it is recognised by its cancel record — requested by the
//! batch's principal, no earlier than the batch was created — and counted as `cancelled`, not
//! `alreadyDone`. So every walk counts each operation once, and `cancelled + alreadyDone +
//! notCancellable = matched`. The price: an operation the same principal cancelled by other
//! means while the batch was under way is counted as this batch's too.
//!
//! It does not decide who may cancel: the api authorized the principal for this parent before it
//! created the batch, and only the api can create one (a submit of `batch-cancel` is refused).

use lro_common::cancel;
use lro_common::filter::Filter;
use lro_common::kinds::{BATCH_CANCEL, BatchCancelCounts, BatchCancelInput};
use lro_common::operation::{CancelEffect, Operation, Refused};
use lro_common::status::Code;
use lro_common::store::StoreError;
use lro_common::time::{Millis, now_millis};

use crate::job::{JobContext, JobError};

/// Operations read from the index at a time; progress is reported after each page.
const PAGE: usize = 100;

pub(crate) async fn run(
    input: BatchCancelInput,
    ctx: JobContext,
) -> Result<BatchCancelCounts, JobError> {
    if input.filter.trim().is_empty() {
        return Err(JobError::invalid_input(BATCH_CANCEL, "filter is empty"));
    }
    let filter =
        Filter::parse(&input.filter).map_err(|e| JobError::invalid_input(BATCH_CANCEL, e))?;
    let (store, me) = (ctx.store(), ctx.name());
    let parent = me.parent();
    let by = input.principal.as_deref();
    let since = store.get(me).await.map_err(unavailable)?.created;
    // Everything under the parent but the batch itself: what "looked at" counts towards.
    let total = store
        .index_len(parent)
        .await
        .map_err(unavailable)?
        .saturating_sub(1)
        .max(1);
    let mut counts = BatchCancelCounts::default();
    let mut looked_at: u64 = 0;
    let mut after: Option<String> = None;
    loop {
        let ids = store
            .index_page(parent, after.as_deref(), PAGE)
            .await
            .map_err(unavailable)?;
        for op in store.get_many(parent, &ids).await.map_err(unavailable)? {
            if ctx.is_cancelled() {
                return Err(JobError::Cancelled);
            }
            if op.name == *me {
                continue;
            }
            looked_at += 1;
            if cancelled_by_this_batch(&op, by, since) {
                counts.matched += 1;
                counts.cancelled += 1;
                continue;
            }
            if !filter.matches(&op) {
                continue;
            }
            let effect =
                cancel::request(store, ctx.broker(), &op.name, now_millis(), by, None).await;
            match effect {
                Ok(CancelEffect::AlreadyDone) => counts.already_done += 1,
                Ok(CancelEffect::CancelledWhileQueued | CancelEffect::Requested { .. }) => {
                    counts.cancelled += 1;
                }
                Err(StoreError::Refused(Refused::NotCancellable(_))) => {
                    counts.not_cancellable += 1;
                }
                // Deleted since the page was read: not there to reach.
                Err(StoreError::NotFound) => continue,
                Err(e) => return Err(unavailable(e)),
            }
            counts.matched += 1;
        }
        match ids.last() {
            Some(last) if ids.len() == PAGE => after = Some(last.clone()),
            _ => break,
        }
        let percent = u32::try_from((looked_at * 100 / total).min(99)).unwrap_or(99);
        ctx.progress(percent, summary(looked_at, &counts)).await;
    }
    ctx.progress(100, summary(looked_at, &counts)).await;
    Ok(counts)
}

/// Whether `op` carries the cancel this batch (or an earlier attempt of it) made: requested by
/// the batch's principal since the batch was created.
fn cancelled_by_this_batch(op: &Operation, by: Option<&str>, since: Millis) -> bool {
    op.cancel_requested.is_some_and(|at| at >= since) && op.cancel_requested_by.as_deref() == by
}

fn summary(looked_at: u64, c: &BatchCancelCounts) -> String {
    format!(
        "looked at {looked_at}: {} matched, {} cancelled, {} already done, {} not cancellable",
        c.matched, c.cancelled, c.already_done, c.not_cancellable
    )
}

/// Redis failed under the batch: it runs again (as the next attempt), which counts correctly.
fn unavailable(e: StoreError) -> JobError {
    JobError::retry(Code::Unavailable, format!("batch cancel: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use lro_common::name::Parent;
    use lro_common::operation::NewOperation;
    use serde_json::json;

    fn op() -> Operation {
        let name = Parent::root().operation("x").expect("name");
        let spec = NewOperation {
            name,
            kind: "sleep".into(),
            input: json!({}),
            cancellable: true,
            request_id: None,
            timeout_ms: None,
            retention_ms: None,
        };
        Operation::new(spec, 1_000)
    }

    #[test]
    fn recognises_only_its_own_principals_cancels_since_the_batch_began() {
        let untouched = op();
        assert!(!cancelled_by_this_batch(&untouched, Some("alice"), 2_000));
        let mut ours = op();
        ours.request_cancel(2_500, Some("alice")).expect("cancel");
        assert!(cancelled_by_this_batch(&ours, Some("alice"), 2_000));
        assert!(!cancelled_by_this_batch(&ours, Some("bob"), 2_000));
        assert!(!cancelled_by_this_batch(&ours, Some("alice"), 3_000));
        let mut anonymous = op();
        anonymous.request_cancel(2_500, None).expect("cancel");
        assert!(cancelled_by_this_batch(&anonymous, None, 2_000));
        assert!(!cancelled_by_this_batch(&anonymous, Some("alice"), 2_000));
    }
}
