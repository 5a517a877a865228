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

use lro_common::name::OperationName;
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
    /// The worker no longer holds the operation (its lease could not be renewed, or another
    /// attempt took over): the job must stop, and its outcome is not recorded.
    LeaseLost,
}

/// A job's token and the reason it fired, shared by the registry and the job.
#[derive(Debug, Clone)]
pub struct Stop {
    token: CancellationToken,
    reason: Arc<OnceLock<CancelReason>>,
}

impl Stop {
    fn new(parent: &CancellationToken) -> Self {
        Self {
            token: parent.child_token(),
            reason: Arc::new(OnceLock::new()),
        }
    }

    /// Records the reason (unless one is already recorded) and fires the token.
    pub fn fire(&self, reason: CancelReason) {
        let _ = self.reason.set(reason);
        self.token.cancel();
    }

    pub fn token(&self) -> &CancellationToken {
        &self.token
    }

    /// Why the token fired; a token fired by its parent (shutdown) has no reason of its own.
    pub fn reason(&self) -> Option<CancelReason> {
        if !self.token.is_cancelled() {
            return None;
        }
        Some(self.reason.get().copied().unwrap_or(CancelReason::Shutdown))
    }
}

struct Entry {
    id: u64,
    stop: Stop,
    /// Set once the attempt has started in Redis.
    held: Option<Held>,
}

/// The attempt a registered job runs, and until when its lease holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    pub attempt: u32,
    pub lease_until: Millis,
}

/// A started job, as [`Registry::started_jobs`] lists it.
#[derive(Debug, Clone)]
pub struct StartedJob {
    pub name: OperationName,
    pub id: u64,
    pub held: Held,
    pub stop: Stop,
}

/// The tokens of every job this worker runs. Cheap to clone.
#[derive(Clone)]
pub struct Registry {
    jobs: Arc<Mutex<HashMap<OperationName, Entry>>>,
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

    /// Registers a job; its entry lives as long as the returned guard. A second registration of
    /// the same name (a redelivery to this worker) replaces the first for cancel routing.
    pub fn register(&self, name: &OperationName) -> Registration {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let stop = Stop::new(&self.shutdown);
        self.lock().insert(
            name.clone(),
            Entry {
                id,
                stop: stop.clone(),
                held: None,
            },
        );
        Registration {
            registry: self.clone(),
            name: name.clone(),
            id,
            stop,
        }
    }

    /// Fires the token of the job running `name`, if this worker runs it.
    pub fn cancel(&self, name: &OperationName, reason: CancelReason) -> bool {
        let stop = self.lock().get(name).map(|e| e.stop.clone());
        match stop {
            Some(stop) => {
                stop.fire(reason);
                true
            }
            None => false,
        }
    }

    /// Every job whose attempt has started, for lease renewal.
    pub fn started_jobs(&self) -> Vec<StartedJob> {
        self.lock()
            .iter()
            .filter_map(|(name, e)| {
                Some(StartedJob {
                    name: name.clone(),
                    id: e.id,
                    held: e.held?,
                    stop: e.stop.clone(),
                })
            })
            .collect()
    }

    /// Records a renewed lease for the registration `id` of `name`.
    pub fn renewed(&self, name: &OperationName, id: u64, lease_until: Millis) {
        if let Some(e) = self.lock().get_mut(name).filter(|e| e.id == id)
            && let Some(held) = &mut e.held
        {
            held.lease_until = held.lease_until.max(lease_until);
        }
    }

    /// How many jobs are registered.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<OperationName, Entry>> {
        // A panic while holding this lock cannot leave the map inconsistent (single inserts and
        // removes), so a poisoned lock is still usable.
        self.jobs.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A job's place in the registry; dropping it removes the entry (if it is still this one's).
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

    /// Records that the attempt started, holding a lease; from now on it is renewed.
    pub fn started(&self, held: Held) {
        if let Some(e) = self
            .registry
            .lock()
            .get_mut(&self.name)
            .filter(|e| e.id == self.id)
        {
            e.held = Some(held);
        }
    }

    /// The lease as last renewed.
    pub fn held(&self) -> Option<Held> {
        self.registry
            .lock()
            .get(&self.name)
            .filter(|e| e.id == self.id)
            .and_then(|e| e.held)
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut jobs = self.registry.lock();
        if jobs.get(&self.name).is_some_and(|e| e.id == self.id) {
            jobs.remove(&self.name);
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
        let a = reg.register(&name("operations/a"));
        let b = reg.register(&name("operations/b"));
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
    fn dropping_a_registration_removes_only_its_own_entry() {
        let reg = Registry::new(CancellationToken::new());
        let first = reg.register(&name("operations/a"));
        let second = reg.register(&name("operations/a"));
        drop(first);
        assert_eq!(reg.len(), 1);
        assert!(reg.cancel(&name("operations/a"), CancelReason::User));
        assert!(second.stop().token().is_cancelled());
        drop(second);
        assert!(reg.is_empty());
    }
}
