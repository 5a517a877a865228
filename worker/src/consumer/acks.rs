//! A session's job acks, coalesced. A delivery whose outcome is recorded asks for its ack and
//! goes on at once; a sender task sends what gathered over [`WINDOW`]: one `basic.ack` with
//! `multiple` for every ready delivery below the lowest one still unsettled on the channel (so a
//! multiple ack never covers a job that is still running or being requeued), and a plain ack for
//! each ready one above it. An ack the worker dies before sending only means a redelivery, which
//! the operation's record turns into a skip: the outcome was written before the ack was asked.
//!
//! Requeues (nacks) are not coalesced: the delivery sends its own, then marks its tag settled.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lapin::Acker;
use lapin::options::BasicAckOptions;
use tokio::sync::Notify;

/// How long a requested ack may wait for others to go out with it.
const WINDOW: Duration = Duration::from_millis(1);

/// The acks of one session's jobs channel.
pub(crate) struct Acks {
    state: Mutex<State<Acker>>,
    wake: Notify,
}

/// The channel's deliveries and their acks (`A`: the acker; a tag in the tests).
struct State<A> {
    /// Delivered on this channel, not yet settled (the job runs, or its requeue is being sent).
    unsettled: BTreeSet<u64>,
    /// Settled as acked, waiting to be sent: the delivery tag and its acker.
    ready: BTreeMap<u64, A>,
    /// The session is closing: nothing new is coalesced.
    closed: bool,
}

impl<A> Default for State<A> {
    fn default() -> Self {
        Self {
            unsettled: BTreeSet::new(),
            ready: BTreeMap::new(),
            closed: false,
        }
    }
}

/// What one send does.
struct Batch<A> {
    /// The acker of the highest ready delivery below every unsettled one: acked with
    /// `multiple`, it acks every ready one below it too.
    multiple: Option<A>,
    /// Ready deliveries above an unsettled one: each acked alone.
    single: Vec<A>,
}

impl Acks {
    /// A new session's acks, with its sender task.
    pub(crate) fn start() -> Arc<Self> {
        let acks = Arc::new(Self {
            state: Mutex::new(State::default()),
            wake: Notify::new(),
        });
        tokio::spawn(acks.clone().send_loop());
        acks
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State<Acker>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A delivery arrived (called in delivery order, before its job can settle).
    pub(crate) fn delivered(&self, tag: u64) {
        self.lock().unsettled.insert(tag);
    }

    /// The delivery `tag` is to be acked (its outcome is recorded).
    pub(crate) fn ack(&self, tag: u64, acker: Acker) {
        let mut state = self.lock();
        state.unsettled.remove(&tag);
        if state.closed {
            drop(state);
            // The session is gone: the ack cannot reach the broker, which redelivers.
            report("ack", Ok(false));
            return;
        }
        let first = state.ready.is_empty();
        state.ready.insert(tag, acker);
        drop(state);
        if first {
            self.wake.notify_one();
        }
    }

    /// The delivery `tag` was settled otherwise (its requeue was sent).
    pub(crate) fn settled(&self, tag: u64) {
        self.lock().unsettled.remove(&tag);
    }

    /// Sends every ack still waiting, then stops the sender (the session is closing).
    pub(crate) async fn close(&self) {
        let batch = {
            let mut state = self.lock();
            state.closed = true;
            state.take()
        };
        self.wake.notify_one();
        batch.send().await;
    }

    async fn send_loop(self: Arc<Self>) {
        loop {
            self.wake.notified().await;
            if self.lock().closed {
                return;
            }
            tokio::time::sleep(WINDOW).await;
            let batch = self.lock().take();
            batch.send().await;
        }
    }
}

impl<A> State<A> {
    fn take(&mut self) -> Batch<A> {
        let ready = std::mem::take(&mut self.ready);
        let (covered, single) = match self.unsettled.first() {
            Some(&low) => {
                let mut covered = ready;
                let above = covered.split_off(&low);
                (covered, above.into_values().collect())
            }
            None => (ready, Vec::new()),
        };
        Batch {
            multiple: covered.into_values().next_back(),
            single,
        }
    }
}

impl Batch<Acker> {
    async fn send(self) {
        if let Some(acker) = self.multiple {
            let multiple = BasicAckOptions { multiple: true };
            report("ack", acker.ack(multiple).await);
        }
        for acker in self.single {
            report("ack", acker.ack(BasicAckOptions::default()).await);
        }
    }
}

/// Logs how settling a delivery (`what`: ack, requeue) went, when it did not.
pub(super) fn report(what: &str, result: Result<bool, lapin::Error>) {
    match result {
        Ok(true) => {}
        Ok(false) => tracing::warn!(
            what,
            "delivery from a closed channel: it will be redelivered"
        ),
        Err(e) => tracing::warn!(what, error = %e, "could not settle delivery"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `take` sends for these unsettled and ready tags (the tags stand in for ackers).
    fn plan(unsettled: &[u64], ready: &[u64]) -> (Option<u64>, Vec<u64>, State<u64>) {
        let mut state = State {
            unsettled: unsettled.iter().copied().collect(),
            ready: ready.iter().map(|&t| (t, t)).collect(),
            closed: false,
        };
        let batch = state.take();
        (batch.multiple, batch.single, state)
    }

    #[test]
    fn a_multiple_ack_stops_below_the_lowest_unsettled_delivery() {
        let (multiple, single, state) = plan(&[], &[1, 2, 3]);
        assert_eq!((multiple, single), (Some(3), vec![]));
        assert!(state.ready.is_empty());

        // 2 still runs: 1 goes with `multiple` (it covers 1 alone), 3 and 4 each alone.
        let (multiple, single, state) = plan(&[2], &[1, 3, 4]);
        assert_eq!((multiple, single), (Some(1), vec![3, 4]));
        assert_eq!(state.unsettled.into_iter().collect::<Vec<_>>(), [2]);

        let (multiple, single, _) = plan(&[1], &[2, 3]);
        assert_eq!((multiple, single), (None, vec![2, 3]));
        let (multiple, single, _) = plan(&[5], &[]);
        assert_eq!((multiple, single), (None, vec![]));
    }
}
