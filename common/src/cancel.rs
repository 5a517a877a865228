//! One cancel, as `:cancel` makes it and as a batch cancel makes it for each operation it
//! reaches: the request recorded in Redis first (with a backstop entry on [`Watch::Cancels`]),
//! then, for a running operation, the name in the worker's inbox — which its next heartbeat
//! drains, so a cancel reaches the job within a heartbeat even when every message is lost — and
//! the cancel message to the one worker that runs it, which is what makes it fast.
//!
//! It does not decide who may cancel (the api's business) nor count anything (the batch's).

use crate::broker::Broker;
use crate::name::OperationName;
use std::time::Duration;

use crate::operation::{CancelEffect, State};
use crate::store::{Store, StoreError, Watch, WatchEffect};
use crate::time::{Millis, millis};
use crate::trace::TraceContext;

/// How long after a cancel a reaper makes sure the worker's inbox has it.
const INBOX_BACKSTOP: Duration = Duration::from_secs(2);

/// Applies [`crate::operation::Operation::request_cancel`] atomically, recording `by`, then tells
/// the worker of a running operation: its inbox, and its cancel message (carrying the caller's
/// `trace`). A lost or failed message delays the cancel (the worker finds it in its inbox on its
/// next heartbeat) but never loses it, so a failed publish is logged and the cancel still counts
/// as made. A kind that cannot be cancelled is `StoreError::Refused(Refused::NotCancellable)`, an
/// unknown operation `StoreError::NotFound`.
pub async fn request(
    store: &Store,
    broker: &Broker,
    name: &OperationName,
    now: Millis,
    by: Option<&str>,
    trace: Option<&TraceContext>,
) -> Result<CancelEffect, StoreError> {
    // The backstop entry is armed with the record: a reaper writes the inbox if this process
    // dies before it does.
    let backstop = now + millis(INBOX_BACKSTOP);
    let (_, effect) = store
        .update_watching(
            name,
            |op| op.request_cancel(now, by),
            |after| {
                (after.state() == State::Cancelling)
                    .then_some(WatchEffect::Arm(Watch::Cancels, backstop))
            },
        )
        .await?;
    if let CancelEffect::Requested { worker, attempt } = &effect {
        // Both at once: the message is what makes a cancel fast, the inbox what makes it sure.
        let (inbox, message) = tokio::join!(
            store.send_to_inbox(worker, name),
            broker.publish_cancel(worker, name, *attempt, trace)
        );
        if let Err(e) = inbox {
            tracing::warn!(operation = %name, error = %e, "cancel recorded; inbox left to the reaper");
        }
        if let Err(e) = message {
            tracing::warn!(operation = %name, error = %e, "cancel recorded but not delivered");
        }
    }
    Ok(effect)
}
