//! What a job author writes against: a kind is an async function from its JSON input and a
//! [`JobContext`] to a JSON output or a [`JobError`].
//!
//! ```no_run
//! use lro_worker::{JobContext, JobError, Kinds};
//! let kinds = Kinds::builtin().kind("echo", |input, ctx: JobContext| async move {
//!     ctx.progress(50, "halfway").await;
//!     if ctx.is_cancelled() {
//!         return Err(JobError::Cancelled);
//!     }
//!     Ok(input)
//! });
//! ```

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use lro_common::kinds::KindInfo;
use lro_common::name::OperationName;
use lro_common::operation::Progress;
use lro_common::status::{Code, Status};
use lro_common::store::Store;
use lro_common::time::now_millis;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::registry::{CancelReason, Stop};

/// How a job ends when it does not produce output.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum JobError {
    /// The job stopped because its token fired. The worker decides what that means from the
    /// reason: CANCELLED for a user cancel, DEADLINE_EXCEEDED for a timeout, a hand-back on
    /// shutdown.
    #[error("cancelled")]
    Cancelled,
    /// The job failed with this status.
    #[error("failed: {}", .0.message)]
    Failed(Status),
    /// The job failed with this status, but another attempt may succeed (a dependency was
    /// unavailable, …): it runs again after a backoff, up to the most attempts an operation gets,
    /// then fails with this status. A user cancel is never retried.
    #[error("failed, retryable: {}", .0.message)]
    Retry(Status),
}

impl JobError {
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Self::Failed(Status::new(code, message))
    }

    /// A retryable failure (see [`JobError::Retry`]).
    pub fn retry(code: Code, message: impl Into<String>) -> Self {
        Self::Retry(Status::new(code, message))
    }

    pub fn invalid_input(kind: &str, err: impl std::fmt::Display) -> Self {
        Self::new(
            Code::InvalidArgument,
            format!("bad input for kind {kind}: {err}"),
        )
    }
}

pub type JobResult = Result<Value, JobError>;
type BoxJob = Pin<Box<dyn Future<Output = JobResult> + Send>>;
type Handler = Arc<dyn Fn(Value, JobContext) -> BoxJob + Send + Sync>;

/// What a running job can see and do.
#[derive(Clone)]
pub struct JobContext {
    name: OperationName,
    attempt: u32,
    stop: Stop,
    store: std::sync::Arc<Store>,
}

impl JobContext {
    pub(crate) fn new(
        name: OperationName,
        attempt: u32,
        stop: Stop,
        store: std::sync::Arc<Store>,
    ) -> Self {
        Self {
            name,
            attempt,
            stop,
            store,
        }
    }

    pub fn name(&self) -> &OperationName {
        &self.name
    }

    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// Resolves when the job should stop (cancel, deadline or shutdown).
    pub async fn cancelled(&self) {
        self.stop.token().cancelled().await;
    }

    pub fn is_cancelled(&self) -> bool {
        self.stop.token().is_cancelled()
    }

    /// The token itself, for work off the async threads (`spawn_blocking`).
    pub fn token(&self) -> CancellationToken {
        self.stop.token().clone()
    }

    /// Why the token fired, once it has.
    pub fn cancel_reason(&self) -> Option<CancelReason> {
        self.stop.reason()
    }

    /// Records progress on the operation. Best effort: a failed write is logged, not returned,
    /// and a stale attempt's progress is refused by the store.
    pub async fn progress(&self, percent: u32, message: impl Into<String>) {
        let progress = Progress {
            percent,
            message: message.into(),
        };
        // Boxed: a job's future is as large as its largest step, and holds that space for the
        // job's whole life; unboxed, this Redis call would add ~2 KiB to every job that reports.
        let result = Box::pin(self.store.update(&self.name, |op| {
            op.report_progress(self.attempt, progress.clone(), now_millis())
        }))
        .await;
        if let Err(e) = result {
            tracing::debug!(error = %e, "progress not recorded");
        }
    }
}

#[derive(Clone)]
pub(crate) struct Kind {
    pub(crate) cancellable: bool,
    pub(crate) handler: Handler,
}

/// The job kinds a worker runs.
#[derive(Clone, Default)]
pub struct Kinds {
    map: HashMap<String, Kind>,
}

impl Kinds {
    /// No kinds at all.
    pub fn new() -> Self {
        Self::default()
    }

    /// The built-in kinds (`sleep`, `noop`, `fail`, `spin`, `uninterruptible`).
    pub fn builtin() -> Self {
        crate::builtin::register(Self::new())
    }

    /// Adds a cancellable kind.
    pub fn kind<F, Fut>(self, name: &str, f: F) -> Self
    where
        F: Fn(Value, JobContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = JobResult> + Send + 'static,
    {
        self.add(name, true, f)
    }

    /// Adds a kind that cannot be cancelled: `:cancel` answers UNIMPLEMENTED for its operations.
    /// Its token still fires on deadline and shutdown.
    pub fn uncancellable<F, Fut>(self, name: &str, f: F) -> Self
    where
        F: Fn(Value, JobContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = JobResult> + Send + 'static,
    {
        self.add(name, false, f)
    }

    fn add<F, Fut>(mut self, name: &str, cancellable: bool, f: F) -> Self
    where
        F: Fn(Value, JobContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = JobResult> + Send + 'static,
    {
        let handler: Handler = Arc::new(move |input, ctx| Box::pin(f(input, ctx)));
        self.map.insert(
            name.to_owned(),
            Kind {
                cancellable,
                handler,
            },
        );
        self
    }

    pub(crate) fn get(&self, name: &str) -> Option<&Kind> {
        self.map.get(name)
    }

    /// What the api needs to know about these kinds.
    pub fn infos(&self) -> Vec<KindInfo> {
        self.map
            .iter()
            .map(|(name, k)| KindInfo {
                name: name.clone(),
                cancellable: k.cancellable,
            })
            .collect()
    }
}
