//! One cancel, as `:cancel` makes it and as a batch cancel makes it for each operation it
//! reaches: the request recorded in Redis first, then, for a running operation, the cancel
//! message to the one worker that runs it.
//!
//! It does not decide who may cancel (the api's business) nor count anything (the batch's).

use crate::broker::Broker;
use crate::name::OperationName;
use crate::operation::CancelEffect;
use crate::store::{Store, StoreError};
use crate::time::Millis;
use crate::trace::TraceContext;

/// Applies [`crate::operation::Operation::request_cancel`] atomically, recording `by`, then tells
/// the worker of a running operation (its message carrying the caller's `trace`). A lost or failed message delays the cancel (the worker
/// re-reads Redis on its next renewal) but never loses it, so a failed publish is logged and the
/// cancel still counts as made. A kind that cannot be cancelled is
/// `StoreError::Refused(Refused::NotCancellable)`, an unknown operation `StoreError::NotFound`.
pub async fn request(
    store: &Store,
    broker: &Broker,
    name: &OperationName,
    now: Millis,
    by: Option<&str>,
    trace: Option<&TraceContext>,
) -> Result<CancelEffect, StoreError> {
    let (_, effect) = store.update(name, |op| op.request_cancel(now, by)).await?;
    if let CancelEffect::Requested { worker, attempt } = &effect
        && let Err(e) = broker.publish_cancel(worker, name, *attempt, trace).await
    {
        tracing::warn!(operation = %name, error = %e, "cancel recorded but not delivered");
    }
    Ok(effect)
}
