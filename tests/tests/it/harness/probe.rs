//! The probe job kinds: jobs that report to the test what they saw (starts, why their token
//! fired) and run until the test releases them.

use super::*;

/// What a probe job has seen so far.
#[derive(Debug, Clone, Default)]
pub struct Seen {
    /// How many times a worker started it.
    pub starts: u32,
    /// Why its token fired, if it did.
    pub stopped: Option<CancelReason>,
}

#[derive(Default)]
struct ProbeState {
    seen: HashMap<String, Seen>,
    gates: HashMap<String, CancellationToken>,
}

/// Job kinds that report to the test: `gate` (and `sleep`, overridden to behave the same) records
/// its start after reporting progress 40 "gate open", then runs until the test releases it
/// (succeeding with `{"released": true}`) or its token fires (recording why).
#[derive(Clone, Default)]
pub struct Probe {
    state: Arc<Mutex<ProbeState>>,
    changed: Arc<Notify>,
}

impl Probe {
    /// The built-in kinds, with `gate` added and `sleep` replaced by the probe.
    /// `deaf` is a gate that records its token firing but ignores it: it runs until released and
    /// succeeds.
    pub fn kinds(&self) -> Kinds {
        let (a, b, c) = (self.clone(), self.clone(), self.clone());
        Kinds::builtin()
            .kind("gate", move |_, ctx| a.clone().run(ctx, true))
            .kind("sleep", move |_, ctx| b.clone().run(ctx, true))
            .kind("deaf", move |_, ctx| c.clone().run(ctx, false))
    }

    async fn run(self, ctx: JobContext, listening: bool) -> JobResult {
        let name = ctx.name().as_str().to_owned();
        ctx.progress(40, "gate open").await;
        let gate = self.update(&name, |s| s.starts += 1);
        let record_stop = || self.update(&name, |s| s.stopped = ctx.cancel_reason());
        tokio::select! {
            () = gate.cancelled() => {}
            () = ctx.cancelled() => {
                record_stop();
                if listening {
                    return Err(JobError::Cancelled);
                }
                gate.cancelled().await;
            }
        }
        Ok(json!({ "released": true }))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ProbeState> {
        self.state.lock().expect("probe lock")
    }

    fn update(&self, name: &str, f: impl FnOnce(&mut Seen)) -> CancellationToken {
        let gate = {
            let mut state = self.lock();
            f(state.seen.entry(name.to_owned()).or_default());
            state.gates.entry(name.to_owned()).or_default().clone()
        };
        self.changed.notify_waiters();
        gate
    }

    /// Lets the job `name` finish successfully (now, or as soon as it starts).
    pub fn release(&self, name: &str) {
        self.lock()
            .gates
            .entry(name.to_owned())
            .or_default()
            .cancel();
    }

    /// What the job `name` has seen so far.
    pub fn seen(&self, name: &str) -> Seen {
        self.lock().seen.get(name).cloned().unwrap_or_default()
    }

    /// Waits until what `name` has seen satisfies `pred`; fails the test after [`DEADLINE`].
    pub async fn until(&self, name: &str, pred: impl Fn(&Seen) -> bool) -> Seen {
        let wait = async {
            loop {
                let notified = self.changed.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                let seen = self.seen(name);
                if pred(&seen) {
                    return seen;
                }
                notified.await;
            }
        };
        match tokio::time::timeout(DEADLINE, wait).await {
            Ok(seen) => seen,
            Err(_) => panic!(
                "probe {name}: condition not met within {DEADLINE:?}: {:?}",
                self.seen(name)
            ),
        }
    }

    /// Waits until the job `name` has started.
    pub async fn started(&self, name: &str) -> Seen {
        self.until(name, |s| s.starts > 0).await
    }
}
