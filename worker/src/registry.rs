//! The registry of running jobs' cancellation tokens, keyed by operation name.
//!
//! A job's entry is made before its attempt starts in Redis and removed when its [`Registration`]
//! is dropped, so a cancel message that arrives at any moment in between finds the token. Each
//! token is a child of the worker's drain token (fired when a shutdown's grace period is over): a
//! user cancel stops one job, draining stops all.
//! The lock is a plain mutex held only for map operations, never across an await.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use std::time::Instant;

use lro_common::name::OperationName;
use lro_common::operation::Progress;
use lro_common::time::Millis;
use tokio_util::sync::CancellationToken;

/// Why a job's token fired. The first reason recorded wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelReason {
    /// An operator cancelled the operation.
    User,
    /// The operation's `timeout` ran out.
    Deadline,
    /// The worker is shutting down; the operation is handed back, not cancelled.
    Shutdown,
    /// The worker no longer holds the operation (its heartbeat expired, or could not be sent
    /// for longer than it holds): the job must stop, and its outcome is not recorded.
    LeaseLost,
}

/// A job's token and the reason it fired, shared by the registry and the job; also the job's
/// coalesced progress reports (one allocation per running job for both).
#[derive(Debug, Clone)]
pub struct Stop {
    token: CancellationToken,
    shared: Arc<Shared>,
}

#[derive(Debug, Default)]
struct Shared {
    /// The first reason, and when it was recorded (for the cancel latency metric).
    reason: OnceLock<(CancelReason, Millis)>,
    reports: Mutex<Reports>,
}

/// A job's progress reports, coalesced (`crate::context`).
#[derive(Debug, Default)]
pub(crate) struct Reports {
    /// When the last one was written.
    pub(crate) last: Option<Instant>,
    /// The latest one not written yet.
    pub(crate) pending: Option<Progress>,
    /// A task will write `pending` at the end of the interval.
    pub(crate) flushing: bool,
}

impl Stop {
    fn new(parent: &CancellationToken) -> Self {
        Self {
            token: parent.child_token(),
            shared: Arc::default(),
        }
    }

    /// Records the reason (unless one is already recorded) and fires the token.
    pub fn fire(&self, reason: CancelReason) {
        let _ = self
            .shared
            .reason
            .set((reason, lro_common::time::now_millis()));
        self.token.cancel();
    }

    /// The job's progress reports, locked. Plain assignments under the lock: a panic cannot
    /// leave it inconsistent.
    pub(crate) fn reports(&self) -> std::sync::MutexGuard<'_, Reports> {
        self.shared
            .reports
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    pub fn token(&self) -> &CancellationToken {
        &self.token
    }

    /// Why the token fired; a token fired by its parent (shutdown) has no reason of its own.
    pub fn reason(&self) -> Option<CancelReason> {
        if !self.token.is_cancelled() {
            return None;
        }
        Some(
            self.shared
                .reason
                .get()
                .map_or(CancelReason::Shutdown, |&(reason, _)| reason),
        )
    }

    /// When a user cancel fired the token, if one did.
    pub fn cancelled_by_user_at(&self) -> Option<Millis> {
        match self.shared.reason.get() {
            Some(&(CancelReason::User, at)) => Some(at),
            _ => None,
        }
    }
}

struct Entry {
    id: u64,
    stop: Stop,
    /// Set once the attempt has started in Redis.
    held: Option<Held>,
}

/// The attempt a registered job runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    pub attempt: u32,
}

/// The tokens of every job this worker runs. Cheap to clone.
///
/// A name may have several entries at once: a redelivered copy of a running job's message is
/// registered (and then skipped) beside the job itself, and must not displace it.
#[derive(Clone)]
pub struct Registry {
    jobs: Arc<Mutex<HashMap<OperationName, Vec<Entry>>>>,
    next_id: Arc<AtomicU64>,
    shutdown: CancellationToken,
}

impl Registry {
    pub fn new(shutdown: CancellationToken) -> Self {
        Self {
            jobs: Arc::default(),
            next_id: Arc::default(),
            shutdown,
        }
    }

    /// Registers a job; its entry lives as long as the returned guard.
    pub fn register(&self, name: OperationName) -> Registration {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let stop = Stop::new(&self.shutdown);
        // Almost every name has one entry: room for exactly one (a first push would make room
        // for four, ~0.2 KiB per running job).
        let mut jobs = self.lock();
        let entries = jobs
            .entry(name.clone())
            .or_insert_with(|| Vec::with_capacity(1));
        entries.push(Entry {
            id,
            stop: stop.clone(),
            held: None,
        });
        drop(jobs);
        Registration {
            registry: self.clone(),
            name,
            id,
            stop,
        }
    }

    /// Fires the token of every job registered under `name`; whether there was one.
    pub fn cancel(&self, name: &OperationName, reason: CancelReason) -> bool {
        let stops: Vec<Stop> = self
            .lock()
            .get(name)
            .map(|entries| entries.iter().map(|e| e.stop.clone()).collect())
            .unwrap_or_default();
        for stop in &stops {
            stop.fire(reason);
        }
        !stops.is_empty()
    }

    /// Fires every job's token with `reason`; how many there were.
    pub fn cancel_all(&self, reason: CancelReason) -> usize {
        let stops: Vec<Stop> = self
            .lock()
            .values()
            .flat_map(|entries| entries.iter().map(|e| e.stop.clone()))
            .collect();
        for stop in &stops {
            stop.fire(reason);
        }
        stops.len()
    }

    /// Whether a job is registered under `name` (running, or about to start).
    pub fn holds(&self, name: &OperationName) -> bool {
        self.lock().contains_key(name)
    }

    /// How many jobs are registered.
    pub fn len(&self) -> usize {
        self.lock().values().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn with_entry<T>(
        &self,
        name: &OperationName,
        id: u64,
        f: impl FnOnce(&mut Entry) -> T,
    ) -> Option<T> {
        self.lock()
            .get_mut(name)
            .and_then(|entries| entries.iter_mut().find(|e| e.id == id))
            .map(f)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<OperationName, Vec<Entry>>> {
        // A panic while holding this lock cannot leave the map inconsistent (single inserts and
        // removes), so a poisoned lock is still usable.
        self.jobs.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A job's place in the registry; dropping it removes its entry.
pub struct Registration {
    registry: Registry,
    name: OperationName,
    id: u64,
    stop: Stop,
}

impl Registration {
    pub fn stop(&self) -> &Stop {
        &self.stop
    }

    pub fn name(&self) -> &OperationName {
        &self.name
    }

    /// Records that the attempt started.
    pub fn started(&self, held: Held) {
        self.registry
            .with_entry(&self.name, self.id, |e| e.held = Some(held));
    }

    /// The attempt it runs, once started.
    pub fn held(&self) -> Option<Held> {
        self.registry
            .with_entry(&self.name, self.id, |e| e.held)
            .flatten()
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut jobs = self.registry.lock();
        if let Some(entries) = jobs.get_mut(&self.name) {
            entries.retain(|e| e.id != self.id);
            if entries.is_empty() {
                jobs.remove(&self.name);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> OperationName {
        OperationName::parse(s).unwrap()
    }

    #[test]
    fn cancel_fires_only_the_named_job_with_its_reason() {
        let shutdown = CancellationToken::new();
        let reg = Registry::new(shutdown.clone());
        let a = reg.register(name("operations/a"));
        let b = reg.register(name("operations/b"));
        assert!(reg.cancel(&name("operations/a"), CancelReason::User));
        assert_eq!(a.stop().reason(), Some(CancelReason::User));
        assert_eq!(b.stop().reason(), None);
        assert!(!reg.cancel(&name("operations/c"), CancelReason::User));
        shutdown.cancel();
        assert_eq!(b.stop().reason(), Some(CancelReason::Shutdown));
        // First reason wins.
        a.stop().fire(CancelReason::Deadline);
        assert_eq!(a.stop().reason(), Some(CancelReason::User));
    }

    #[test]
    fn a_second_registration_of_a_name_does_not_displace_the_first() {
        let reg = Registry::new(CancellationToken::new());
        let running = reg.register(name("operations/a"));
        running.started(Held { attempt: 1 });
        let copy = reg.register(name("operations/a"));
        drop(copy);
        assert_eq!(reg.len(), 1, "the running job lost its entry");
        assert_eq!(running.held(), Some(Held { attempt: 1 }));
        assert!(reg.cancel(&name("operations/a"), CancelReason::User));
        assert_eq!(running.stop().reason(), Some(CancelReason::User));
    }

    #[test]
    fn dropping_a_registration_removes_only_its_own_entry() {
        let reg = Registry::new(CancellationToken::new());
        let first = reg.register(name("operations/a"));
        let second = reg.register(name("operations/a"));
        drop(first);
        assert_eq!(reg.len(), 1);
        assert!(reg.cancel(&name("operations/a"), CancelReason::User));
        assert!(second.stop().token().is_cancelled());
        drop(second);
        assert!(reg.is_empty());
        assert!(!reg.holds(&name("operations/a")));
    }

    #[test]
    fn cancel_all_fires_every_job_with_the_reason() {
        let reg = Registry::new(CancellationToken::new());
        let a = reg.register(name("operations/a"));
        let b = reg.register(name("operations/b"));
        assert!(reg.holds(&name("operations/a")));
        assert_eq!(reg.cancel_all(CancelReason::LeaseLost), 2);
        assert_eq!(a.stop().reason(), Some(CancelReason::LeaseLost));
        assert_eq!(b.stop().reason(), Some(CancelReason::LeaseLost));
    }
}
