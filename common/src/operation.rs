//! The operation state machine: pure, no I/O.
//!
//! ```text
//!   QUEUED ──start──▶ RUNNING ──finish──▶ SUCCEEDED | FAILED | CANCELLED
//!     │  ▲               │ request_cancel (sets the cancel fact: CANCELLING)
//!     │  └──hand_back────┤
//!     │  └──lose─────────┤ (its worker died or was cut off: queued again, or done once attempts
//!     │  │                  are spent or a cancel was requested)
//!     │  └──retry────────┘ (a retryable failure: queued again after a backoff, or done)
//!     └──request_cancel──▶ CANCELLED
//! ```
//!
//! Every transition either applies or is [`Refused`]; nothing here can fail otherwise. The store
//! applies a transition to the record it read and writes it back with a compare-and-set on the
//! record's version, so the rules below hold under any interleaving of api and worker processes:
//!
//! - a done operation never changes again (the first terminal writer wins);
//! - only the current attempt may report progress, finish or hand back (a stale one is refused);
//! - a cancel of a queued operation finishes it at once, so no worker ever starts it;
//! - a job that completes after a cancel was requested stays SUCCEEDED;
//! - a running attempt holds the operation: no other attempt may start until it is lost
//!   ([`Operation::lose`], when its worker's heartbeat expired or the worker gave it up), which
//!   fences it: its writes are refused from then on.
//!
//! Times are the callers' clocks (milliseconds since the epoch). Whether a worker is alive is not
//! the record's business: the store keeps one heartbeat per worker, and the reaper loses the
//! attempts of a worker whose heartbeat expired.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::name::OperationName;
use crate::status::{Code, Status};
use crate::time::Millis;

/// One operation, as stored in Redis (see [`crate::wire::Record`] for the versioned envelope).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Operation {
    pub name: OperationName,
    pub kind: String,
    /// The job's input, as submitted (a JSON object).
    pub input: Value,
    /// Whether the job's kind accepts cancellation; fixed at submission.
    pub cancellable: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// Longest one attempt may run, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// How long the record is kept once done, in milliseconds (none: forever).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention_ms: Option<u64>,
    pub created: Millis,
    pub updated: Millis,
    /// How many times a worker has started this operation.
    pub attempt: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<Progress>,
    /// When a cancel was first requested, if ever.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancel_requested: Option<Millis>,
    /// Who asked for the first cancel (a token's `sub`, an API key's name), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancel_requested_by: Option<String>,
    /// No attempt may start before this (a retry's backoff).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<Millis>,
    /// Why the previous attempt failed, when it failed retryably.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<Status>,
    /// The attempt that ended it ignored its token past the grace period and was aborted.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stop_forced: bool,
    pub phase: Phase,
}

/// Where the operation is in its life. Terminal results live only in [`Phase::Done`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "snake_case")]
pub enum Phase {
    Queued,
    Running {
        run: Run,
    },
    Done {
        /// The attempt that ended it; none when it was cancelled while queued.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        run: Option<Run>,
        ended: Millis,
        result: Terminal,
    },
}

/// Most attempts an operation gets: once this many have been lost (their worker died or was cut
/// off), it fails with ABORTED instead of running again.
pub const MAX_ATTEMPTS: u32 = 5;

/// The attempt a worker is running (or ran).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Run {
    pub worker: String,
    pub started: Millis,
}

/// How an operation ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", content = "value", rename_all = "snake_case")]
pub enum Terminal {
    Succeeded(Value),
    Failed(Status),
    Cancelled,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    pub percent: u32,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

/// The state users see (`metadata.state`), derived from the phase and the cancel fact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    Queued,
    Running,
    Cancelling,
    Succeeded,
    Failed,
    Cancelled,
}

impl State {
    pub const ALL: [State; 6] = [
        State::Queued,
        State::Running,
        State::Cancelling,
        State::Succeeded,
        State::Failed,
        State::Cancelled,
    ];

    pub fn name(self) -> &'static str {
        match self {
            State::Queued => "QUEUED",
            State::Running => "RUNNING",
            State::Cancelling => "CANCELLING",
            State::Succeeded => "SUCCEEDED",
            State::Failed => "FAILED",
            State::Cancelled => "CANCELLED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.name() == s)
    }
}

/// What a new operation is made of.
#[derive(Debug, Clone)]
pub struct NewOperation {
    pub name: OperationName,
    pub kind: String,
    pub input: Value,
    pub cancellable: bool,
    pub request_id: Option<String>,
    pub timeout_ms: Option<u64>,
    pub retention_ms: Option<u64>,
}

/// Why a transition did not apply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("the operation is already done")]
    Done,
    #[error("attempt {mine} is stale: the operation is on attempt {current}")]
    Stale { mine: u32, current: u32 },
    #[error("the operation is not running")]
    NotRunning,
    #[error("operations of kind {0:?} cannot be cancelled")]
    NotCancellable(String),
    #[error("the next attempt may not start before {0}")]
    NotYet(Millis),
    #[error("attempt {attempt} on worker {worker} holds the operation")]
    Held { worker: String, attempt: u32 },
}

/// What [`Operation::start`] tells the worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Started {
    pub attempt: u32,
    /// A cancel was requested before this attempt started: the job's token must fire at once.
    pub cancel_requested: bool,
}

/// What [`Operation::lose`] did with an operation whose attempt was lost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expired {
    /// Queued again: it must be published so that a worker runs the next attempt.
    Requeued,
    /// A cancel had been requested: it is CANCELLED now, nothing runs again.
    Cancelled,
    /// Its attempts are spent: it is FAILED (ABORTED).
    Failed,
}

/// What [`Operation::retry`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Retried {
    /// Queued again; it must be published at this time.
    At(Millis),
    /// Its attempts are spent: FAILED with the last attempt's status.
    Exhausted,
    /// A cancel is on record: CANCELLED, nothing runs again.
    Cancelled,
}

/// What [`Operation::request_cancel`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CancelEffect {
    /// Already done: nothing changed.
    AlreadyDone,
    /// It was queued and is now CANCELLED; no worker will run it.
    CancelledWhileQueued,
    /// It is running on `worker`, which must be told (again, if this is a repeat).
    Requested { worker: String, attempt: u32 },
}

impl Operation {
    pub fn new(spec: NewOperation, now: Millis) -> Self {
        Self {
            name: spec.name,
            kind: spec.kind,
            input: spec.input,
            cancellable: spec.cancellable,
            request_id: spec.request_id,
            timeout_ms: spec.timeout_ms,
            retention_ms: spec.retention_ms,
            created: now,
            updated: now,
            attempt: 0,
            progress: None,
            cancel_requested: None,
            cancel_requested_by: None,
            not_before: None,
            last_error: None,
            stop_forced: false,
            phase: Phase::Queued,
        }
    }

    pub fn state(&self) -> State {
        match &self.phase {
            Phase::Queued => State::Queued,
            Phase::Running { .. } if self.cancel_requested.is_some() => State::Cancelling,
            Phase::Running { .. } => State::Running,
            Phase::Done { result, .. } => match result {
                Terminal::Succeeded(_) => State::Succeeded,
                Terminal::Failed(_) => State::Failed,
                Terminal::Cancelled => State::Cancelled,
            },
        }
    }

    /// When the record may be deleted: its retention after it became done.
    pub fn expires_at(&self) -> Option<Millis> {
        match self.phase {
            Phase::Done { ended, .. } => self.retention_ms.map(|r| ended.saturating_add(r)),
            _ => None,
        }
    }

    pub fn is_done(&self) -> bool {
        matches!(self.phase, Phase::Done { .. })
    }

    /// The attempt running now, or last run.
    pub fn run(&self) -> Option<&Run> {
        match &self.phase {
            Phase::Queued => None,
            Phase::Running { run } => Some(run),
            Phase::Done { run, .. } => run.as_ref(),
        }
    }

    /// A worker takes the operation: a new attempt begins, held by `worker` until it ends or is
    /// lost.
    ///
    /// Starting a RUNNING operation is refused (a duplicate or redelivered message): its attempt
    /// holds it until that attempt is lost ([`Operation::lose`]).
    pub fn start(&mut self, worker: &str, now: Millis) -> Result<Started, Refused> {
        match &self.phase {
            Phase::Done { .. } => return Err(Refused::Done),
            Phase::Running { run } => {
                return Err(Refused::Held {
                    worker: run.worker.clone(),
                    attempt: self.attempt,
                });
            }
            Phase::Queued => {
                if let Some(at) = self.not_before.filter(|&at| at > now) {
                    return Err(Refused::NotYet(at));
                }
            }
        }
        self.attempt += 1;
        self.not_before = None;
        self.phase = Phase::Running {
            run: Run {
                worker: worker.to_owned(),
                started: now,
            },
        };
        self.progress = None;
        self.updated = now;
        Ok(Started {
            attempt: self.attempt,
            cancel_requested: self.cancel_requested.is_some(),
        })
    }

    /// The attempt `worker` runs now, if it runs one.
    pub fn held_by(&self, worker: &str) -> Option<u32> {
        match &self.phase {
            Phase::Running { run } if run.worker == worker => Some(self.attempt),
            _ => None,
        }
    }

    /// Attempt `attempt` is lost: its worker's heartbeat expired (the reaper), or the worker
    /// stopped it without an outcome (it found its heartbeat had expired). A requested cancel is
    /// honoured now; otherwise it runs again, unless its attempts are spent. Refused unless
    /// `attempt` is the running one, so it fences exactly that attempt.
    pub fn lose(&mut self, attempt: u32, now: Millis) -> Result<Expired, Refused> {
        self.check_current(attempt)?;
        let Some(run) = self.run().cloned() else {
            return Err(Refused::NotRunning);
        };
        self.updated = now;
        let (result, expired) = if self.cancel_requested.is_some() {
            (Terminal::Cancelled, Expired::Cancelled)
        } else if self.attempt >= MAX_ATTEMPTS {
            let status = Status::new(
                Code::Aborted,
                format!(
                    "lost its worker on each of {} attempts (last: {})",
                    self.attempt, run.worker
                ),
            );
            (Terminal::Failed(status), Expired::Failed)
        } else {
            self.phase = Phase::Queued;
            return Ok(Expired::Requeued);
        };
        self.phase = Phase::Done {
            run: Some(run),
            ended: now,
            result,
        };
        Ok(expired)
    }

    /// An operator (`by`, when known) asks for a cancel. Idempotent: the first request's time
    /// and principal are the ones kept.
    pub fn request_cancel(
        &mut self,
        now: Millis,
        by: Option<&str>,
    ) -> Result<CancelEffect, Refused> {
        if !self.cancellable {
            return Err(Refused::NotCancellable(self.kind.clone()));
        }
        match &self.phase {
            Phase::Done { .. } => Ok(CancelEffect::AlreadyDone),
            Phase::Queued => {
                if self.cancel_requested.is_none() {
                    self.cancel_requested = Some(now);
                    self.cancel_requested_by = by.map(str::to_owned);
                }
                self.phase = Phase::Done {
                    run: None,
                    ended: now,
                    result: Terminal::Cancelled,
                };
                self.updated = now;
                Ok(CancelEffect::CancelledWhileQueued)
            }
            Phase::Running { run } => {
                let worker = run.worker.clone();
                if self.cancel_requested.is_none() {
                    self.cancel_requested = Some(now);
                    self.cancel_requested_by = by.map(str::to_owned);
                    self.updated = now;
                }
                Ok(CancelEffect::Requested {
                    worker,
                    attempt: self.attempt,
                })
            }
        }
    }

    /// The running attempt reports how far it got.
    pub fn report_progress(
        &mut self,
        attempt: u32,
        progress: Progress,
        now: Millis,
    ) -> Result<(), Refused> {
        self.check_current(attempt)?;
        self.progress = Some(Progress {
            percent: progress.percent.min(100),
            message: progress.message,
        });
        self.updated = now;
        Ok(())
    }

    /// The running attempt ends the operation. The first terminal writer wins.
    pub fn finish(&mut self, attempt: u32, result: Terminal, now: Millis) -> Result<(), Refused> {
        self.check_current(attempt)?;
        let run = self.run().cloned();
        self.phase = Phase::Done {
            run,
            ended: now,
            result,
        };
        self.updated = now;
        Ok(())
    }

    /// The running attempt failed in a way worth retrying: the operation is queued again, to start
    /// no earlier than `at` (the caller's backoff). A cancel on record ends it CANCELLED instead (a
    /// user cancel is never retried), and so do spent attempts, with `status`.
    pub fn retry(
        &mut self,
        attempt: u32,
        status: Status,
        now: Millis,
        at: Millis,
    ) -> Result<Retried, Refused> {
        self.check_current(attempt)?;
        self.updated = now;
        let (result, retried) = if self.cancel_requested.is_some() {
            (Terminal::Cancelled, Retried::Cancelled)
        } else if self.attempt >= MAX_ATTEMPTS {
            (Terminal::Failed(status), Retried::Exhausted)
        } else {
            self.phase = Phase::Queued;
            self.not_before = Some(at);
            self.last_error = Some(status);
            return Ok(Retried::At(at));
        };
        let run = self.run().cloned();
        self.phase = Phase::Done {
            run,
            ended: now,
            result,
        };
        Ok(retried)
    }

    /// As [`Operation::finish`], for an attempt the worker aborted because it ignored its token
    /// past the grace period: the outcome is recorded as a forced stop.
    pub fn finish_forced(
        &mut self,
        attempt: u32,
        result: Terminal,
        now: Millis,
    ) -> Result<(), Refused> {
        self.finish(attempt, result, now)?;
        self.stop_forced = true;
        Ok(())
    }

    /// The running attempt gives the operation back unfinished (worker shutdown): it is queued
    /// again and the next start is a new attempt.
    ///
    /// A hand-back of an operation whose cancel is on record ends it CANCELLED instead: it is not
    /// running, and the operator asked for it to stop.
    pub fn hand_back(&mut self, attempt: u32, now: Millis) -> Result<(), Refused> {
        self.check_current(attempt)?;
        self.updated = now;
        if self.cancel_requested.is_some() {
            let run = self.run().cloned();
            self.phase = Phase::Done {
                run,
                ended: now,
                result: Terminal::Cancelled,
            };
        } else {
            self.phase = Phase::Queued;
        }
        Ok(())
    }

    fn check_current(&self, attempt: u32) -> Result<(), Refused> {
        match self.phase {
            Phase::Done { .. } => Err(Refused::Done),
            Phase::Queued => Err(Refused::NotRunning),
            Phase::Running { .. } if attempt != self.attempt => Err(Refused::Stale {
                mine: attempt,
                current: self.attempt,
            }),
            Phase::Running { .. } => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod interleavings;
