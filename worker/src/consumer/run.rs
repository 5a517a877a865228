//! The job runner: one attempt of a job, from calling its handler to the outcome its result and
//! its token's reason call for. The job's future is polled in its delivery's task (one task per
//! running job, not two: a task's header and the wake-up between two tasks are paid per job),
//! under `catch_unwind`, so that a panic fails the operation rather than the worker; a job that
//! ignores its token is aborted by dropping its future.
//!
//! It writes nothing to Redis: recording the outcome is [`super::outcome`]'s.

use std::any::Any;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

use futures_util::FutureExt;

use lro_common::name::OperationName;
use lro_common::operation::{Progress, Terminal};
use lro_common::status::{Code, Status};
use lro_common::wire::{self, JobMessage};

use super::Shared;
use super::delivery::dead_letter;
use super::outcome::{Outcome, decide};
use crate::context::take_pending;
use crate::job::{JobContext, JobError, JobResult};
use crate::registry::{CancelReason, Stop};

/// What running one attempt takes (the rest of the record is not kept while it runs).
pub(super) struct JobSpec<'a> {
    pub(super) name: &'a OperationName,
    pub(super) kind: &'a str,
    pub(super) timeout_ms: Option<u64>,
    pub(super) attempt: u32,
}

/// Runs the job to its end. Once its token has fired (cancel, deadline, shutdown, lease lost) the
/// job gets `stop_grace` to return; after that it is aborted (at its next await: the async part of
/// a job is dropped; a thread of `spawn_blocking` work runs on until it next checks its token) and
/// the outcome is recorded as a forced stop. Returns the outcome, whether it was forced, and the
/// progress the job reported last if it is not written yet (coalesced: the outcome writes it).
///
/// The job's future is made before the first await, so neither its input nor its context is
/// held beside it for the job's life.
pub(super) fn run_job<'a>(
    shared: &'a Shared,
    spec: JobSpec<'a>,
    input: serde_json::Value,
    stop: &'a Stop,
) -> impl Future<Output = (Outcome, bool, Option<Progress>)> + 'a {
    // Polled here, not spawned: a panicking job fails its operation instead of the worker (the
    // future is not used again once it panicked), and dropping it aborts it.
    let job = shared.kinds.get(spec.kind).map(|kind| {
        let ctx = JobContext::new(
            spec.name.clone(),
            spec.attempt,
            stop.clone(),
            shared.store.clone(),
            shared.publisher.clone(),
        );
        AssertUnwindSafe((kind.handler)(input, ctx)).catch_unwind()
    });
    async move {
        let Some(mut job) = job else {
            let why = format!("no worker runs jobs of kind {:?}", spec.kind);
            let message = wire::encode(&JobMessage::V1 {
                name: spec.name.clone(),
            });
            Box::pin(dead_letter(shared, &message, &why)).await;
            let status = Status::new(Code::Unimplemented, why);
            return (Outcome::Terminal(Terminal::Failed(status)), false, None);
        };
        // The timers are boxed: most jobs never need them, and unboxed each would hold its space
        // (~0.1 KiB) in this future for the job's whole life.
        let deadline = async {
            match spec.timeout_ms {
                Some(ms) => Box::pin(tokio::time::sleep(Duration::from_millis(ms))).await,
                None => std::future::pending().await,
            }
        };
        let joined = tokio::select! {
            joined = &mut job => Some(joined),
            () = deadline => {
                stop.fire(CancelReason::Deadline);
                None
            }
            () = stop.token().cancelled() => None,
        };
        let (joined, forced) = match joined {
            Some(joined) => (joined, false),
            None => match Box::pin(tokio::time::timeout(shared.stop_grace, &mut job)).await {
                Ok(joined) => (joined, false),
                Err(_) => {
                    drop(job);
                    tracing::warn!(grace = ?shared.stop_grace, "job ignored its token: aborted");
                    (Ok(Err(JobError::Cancelled)), true)
                }
            },
        };
        let result: JobResult = joined.unwrap_or_else(|panic| {
            let why = panic_message(panic.as_ref());
            tracing::error!(panic = why, "job panicked");
            Err(JobError::new(
                Code::Internal,
                format!("job panicked: {why}"),
            ))
        });
        let pending = take_pending(stop);
        (
            decide(result, stop.reason(), spec.timeout_ms),
            forced,
            pending,
        )
    }
}

/// What a panic said: its message when it was given one (as `panic!` does), else a placeholder.
fn panic_message(panic: &(dyn Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}
