//! Wakes `:wait` calls when their operation becomes done, without polling.
//!
//! One task per api process subscribes to the store's done channel (Redis pub/sub) and notifies
//! the waiters registered for the published name. When the subscription drops it reconnects and
//! wakes every waiter, so each re-reads the record: a notification lost in between costs nothing
//! but a re-read. On a Redis Cluster it subscribes through one seed node (classic pub/sub is
//! cluster-wide: a `PUBLISH` on any node reaches subscribers on every node), and when that node
//! goes away or refuses, through the next seed of the list.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Notifiers keyed by operation name. Cheap to clone.
#[derive(Clone, Default)]
pub struct Waiters {
    map: Arc<Mutex<HashMap<String, Weak<Notify>>>>,
}

impl Waiters {
    /// The notifier for `name`; keep it while waiting.
    pub fn watch(&self, name: &str) -> Arc<Notify> {
        let mut map = self.lock();
        if let Some(n) = map.get(name).and_then(Weak::upgrade) {
            return n;
        }
        let n = Arc::new(Notify::new());
        map.insert(name.to_owned(), Arc::downgrade(&n));
        n
    }

    fn wake(&self, name: &str) {
        let n = {
            let mut map = self.lock();
            let n = map.get(name).and_then(Weak::upgrade);
            if n.is_none() {
                map.remove(name);
            }
            n
        };
        if let Some(n) = n {
            n.notify_waiters();
        }
    }

    fn wake_all(&self) {
        let all: Vec<Arc<Notify>> = {
            let mut map = self.lock();
            map.retain(|_, w| w.strong_count() > 0);
            map.values().filter_map(Weak::upgrade).collect()
        };
        for n in all {
            n.notify_waiters();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Weak<Notify>>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Follows the done channel until shutdown, through the seed nodes `clients` in turn,
    /// reconnecting as needed.
    pub async fn follow(
        self,
        clients: Vec<redis::Client>,
        channel: String,
        shutdown: CancellationToken,
    ) {
        let mut backoff = Duration::from_millis(100);
        for client in clients.iter().cycle() {
            if shutdown.is_cancelled() {
                return;
            }
            match client.get_async_pubsub().await {
                Ok(mut pubsub) => match pubsub.subscribe(&channel).await {
                    Ok(()) => {
                        backoff = Duration::from_millis(100);
                        // Anything published while we were not subscribed is re-read now.
                        self.wake_all();
                        let mut messages = pubsub.on_message();
                        loop {
                            tokio::select! {
                                () = shutdown.cancelled() => return,
                                msg = messages.next() => match msg {
                                    Some(msg) => {
                                        if let Ok(name) = msg.get_payload::<String>() {
                                            self.wake(&name);
                                        }
                                    }
                                    None => break,
                                },
                            }
                        }
                        tracing::warn!("redis subscription dropped; resubscribing");
                    }
                    Err(e) => tracing::warn!(error = %e, "redis subscribe failed"),
                },
                Err(e) => tracing::warn!(error = %e, "redis pub/sub connect failed"),
            }
            self.wake_all();
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }
}
