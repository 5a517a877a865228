//! A steady stream of submits for the fault tests (a cluster node lost under load): lanes that
//! each submit one short job after another until stopped, retrying a refused one, and what they
//! saw.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::sync::Mutex;
use tokio::task::JoinHandle;

use super::{Api, name_of};

/// What a [`SubmitStream`] saw.
#[derive(Default)]
pub struct Seen {
    /// Each accepted submit: when its 200 was answered, and the operation's name.
    pub accepted: Vec<(Instant, String)>,
    /// When each 503 was answered.
    pub refused: Vec<Instant>,
    /// The longest a single submit took to be answered.
    pub slowest: Duration,
}

impl Seen {
    /// How many submits were accepted after `at`.
    pub fn accepted_since(&self, at: Instant) -> usize {
        self.accepted.iter().filter(|(when, _)| *when > at).count()
    }

    /// When the first submit after `at` was accepted.
    pub fn first_accepted_after(&self, at: Instant) -> Option<Instant> {
        self.accepted
            .iter()
            .find(|(when, _)| *when > at)
            .map(|(when, _)| *when)
    }
}

/// Submitters running in the background until [`SubmitStream::stop`].
pub struct SubmitStream {
    seen: Arc<Mutex<Seen>>,
    stop: Arc<AtomicBool>,
    submitters: Vec<JoinHandle<()>>,
}

impl SubmitStream {
    /// Starts `lanes` submitters, each submitting one short `sleep` job (0.05 s, one step) after
    /// another, with request id `lane{lane}-{i}`. A refused submit (503 UNAVAILABLE) is retried
    /// 50 ms later with its request id, as a client of a 503 should: it gets the same operation if
    /// the first try created it. Any other answer fails the test.
    pub fn start(api: &Api, lanes: usize) -> Self {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let submitters = (0..lanes)
            .map(|lane| {
                let (api, seen, stop) = (api.clone(), seen.clone(), stop.clone());
                tokio::spawn(async move {
                    for i in 0.. {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        let body = json!({
                            "kind": "sleep",
                            "input": { "duration": "0.05s", "steps": 1 },
                            "requestId": format!("lane{lane}-{i}"),
                        });
                        loop {
                            let asked = Instant::now();
                            let reply = api.submit_with("", body.clone()).await;
                            let took = asked.elapsed();
                            let mut s = seen.lock().await;
                            s.slowest = s.slowest.max(took);
                            match reply.status {
                                200 => {
                                    s.accepted.push((Instant::now(), name_of(&reply.body)));
                                    break;
                                }
                                503 => reply.error(503, "UNAVAILABLE"),
                                _ => panic!("unexpected answer: {reply:?}"),
                            }
                            s.refused.push(Instant::now());
                            drop(s);
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                })
            })
            .collect();
        Self {
            seen,
            stop,
            submitters,
        }
    }

    /// How many submits have been accepted after `at` so far.
    pub async fn accepted_since(&self, at: Instant) -> usize {
        self.seen.lock().await.accepted_since(at)
    }

    /// When the first submit after `at` was accepted, if one has been yet.
    pub async fn first_accepted_after(&self, at: Instant) -> Option<Instant> {
        self.seen.lock().await.first_accepted_after(at)
    }

    /// Stops every lane after its current submit (and that submit's retries) and returns what
    /// they saw.
    pub async fn stop(self) -> Seen {
        self.stop.store(true, Ordering::Relaxed);
        for submitter in self.submitters {
            submitter.await.expect("submitter");
        }
        std::mem::take(&mut *self.seen.lock().await)
    }
}
