//! Random interleavings of everything that can happen to one operation — deliveries (duplicated,
//! redelivered), starts, progress, completions, retryable failures, user cancels (their messages
//! delivered or lost, their inbox entries written or lost with the api), worker heartbeats,
//! crashes, restarts, pauses past the heartbeat's expiry, starts that land after their worker was
//! declared dead, reapers losing a dead worker's attempt, workers reconciling what Redis says
//! they hold, shutdown hand-backs — applied to the state machine exactly as the store applies
//! them (each transition atomic on the latest record). After every step the race rules must
//! hold; after the chaos stops, the operation must end.

use serde_json::json;

use super::*;

/// How long a worker's heartbeat holds.
const LEASE: Millis = 100;
const WORKERS: usize = 3;
const CASES: u64 = 20_000;
const CHAOS_STEPS: usize = 80;

/// xorshift64*: deterministic, so a failing case is reproducible from its seed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// What a worker believes about the attempt it runs.
#[derive(Debug, Clone)]
struct Job {
    attempt: u32,
    /// Its token fired because of a user cancel.
    cancelled: bool,
}

/// One worker process, and its heartbeat entry in Redis.
#[derive(Debug, Clone, Default)]
struct Worker {
    job: Option<Job>,
    /// Crashed: it does nothing until it restarts.
    dead: bool,
    /// Its heartbeat entry in Redis, expiring at this time (0: condemned by a reaper); none once a
    /// reaper removed it.
    entry: Option<Millis>,
    /// It takes jobs: its last beat held (it stops on finding its entry condemned or removed).
    live: bool,
    /// Its cancel inbox holds this operation.
    inbox: bool,
}

struct World {
    op: Operation,
    now: Millis,
    /// Job messages on the queue (duplicates included).
    queued_messages: u32,
    workers: [Worker; WORKERS],
    terminal_writes: u32,
    cancelled_while_queued: bool,
    /// Every attempt number that ever wrote a terminal state.
    finished_by: Vec<u32>,
    /// A publish guard armed for this time (a retry's backoff).
    guarded: Option<Millis>,
    /// A cancel's backstop watch entry, for the reaper to forward to the worker's inbox.
    cancel_watch: bool,
}

fn worker_name(w: usize) -> String {
    format!("w{w}")
}

impl World {
    fn new() -> Self {
        let op = Operation::new(
            NewOperation {
                name: OperationName::parse("operations/sim").unwrap(),
                kind: "sleep".into(),
                input: json!({}),
                cancellable: true,
                request_id: None,
                timeout_ms: None,
                retention_ms: None,
            },
            0,
        );
        Self {
            op,
            now: 0,
            queued_messages: 1,
            workers: std::array::from_fn(|_| Worker {
                entry: Some(LEASE),
                live: true,
                ..Worker::default()
            }),
            terminal_writes: 0,
            cancelled_while_queued: false,
            finished_by: Vec::new(),
            guarded: None,
            cancel_watch: false,
        }
    }

    /// Applies a transition as the store does: atomically, to the latest record, writing
    /// nothing when refused; checks the rules that hold for every write.
    fn apply<T>(
        &mut self,
        f: impl FnOnce(&mut Operation) -> Result<T, Refused>,
    ) -> Result<T, Refused> {
        let before = self.op.clone();
        let mut after = before.clone();
        let answer = f(&mut after);
        if answer.is_err() {
            assert_eq!(after, before, "a refused transition changed the record");
            return answer;
        }
        if before.is_done() {
            assert_eq!(after, before, "a done operation changed");
        }
        assert!(after.attempt >= before.attempt, "attempt went backwards");
        if after.is_done() && !before.is_done() {
            self.terminal_writes += 1;
        }
        if let Phase::Done {
            result: Terminal::Cancelled,
            ..
        } = after.phase
        {
            assert!(
                after.cancel_requested.is_some(),
                "CANCELLED without a cancel"
            );
        }
        self.op = after;
        answer
    }

    /// Worker `w` gives up the attempt it ran without an outcome (its heartbeat lapsed, or
    /// Redis says it holds an attempt it does not run): lost, fenced by the attempt.
    fn lose(&mut self, attempt: u32) {
        let now = self.now;
        if let Ok(Expired::Requeued) = self.apply(|op| op.lose(attempt, now)) {
            self.queued_messages += 1;
        }
    }

    /// A heartbeat of worker `w`: extends its entry (even one that expired, unless a reaper
    /// condemned it) and drains its inbox; or finds it condemned or removed — then the worker
    /// stops its job and gives it up, and (once removed) registers anew.
    fn heartbeat(&mut self, w: usize, rng: &mut Rng, chaos: bool) {
        let now = self.now;
        let worker = &mut self.workers[w];
        match worker.entry {
            Some(until) if until > 0 => {
                // Never condemned since its job started, so no reaper lost its attempt.
                if let Some(job) = &worker.job {
                    assert_eq!(
                        self.op.held_by(&worker_name(w)),
                        Some(job.attempt),
                        "a live worker runs an attempt that was lost"
                    );
                }
                worker.entry = Some(now + LEASE);
                worker.live = true;
                if std::mem::take(&mut worker.inbox)
                    && let Some(job) = &mut worker.job
                {
                    job.cancelled = true;
                }
            }
            lapsed => {
                worker.live = false;
                if let Some(job) = worker.job.take() {
                    // The give-up may fail (Redis unreachable); the reconcile repairs it.
                    if !(chaos && rng.chance(30)) {
                        self.lose(job.attempt);
                    }
                }
                if lapsed.is_none() {
                    let worker = &mut self.workers[w];
                    worker.entry = Some(now + LEASE);
                    worker.live = true;
                }
            }
        }
    }

    fn step(&mut self, rng: &mut Rng, chaos: bool) {
        let w = rng.below(WORKERS as u64) as usize;
        let now = self.now;
        match rng.below(12) {
            // A delivery reaches an idle worker that takes jobs (it may not know yet that a
            // reaper condemned it): it starts the attempt, or skips.
            0 | 1
                if self.queued_messages > 0
                    && self.workers[w].job.is_none()
                    && !self.workers[w].dead
                    && self.workers[w].live =>
            {
                self.queued_messages -= 1;
                let name = worker_name(w);
                if let Ok(started) = self.apply(|op| op.start(&name, now)) {
                    assert!(
                        !self.cancelled_while_queued,
                        "a cancelled-while-queued op started"
                    );
                    self.workers[w].job = Some(Job {
                        attempt: started.attempt,
                        cancelled: started.cancel_requested,
                    });
                }
            }
            // The job ends: cancelled if its token fired, else succeeded, failed, or failed
            // retryably (queued again, published by a reaper once the backoff is over).
            2 if !self.workers[w].dead => {
                if let Some(job) = self.workers[w].job.take() {
                    if !job.cancelled && rng.chance(25) {
                        let at = now + rng.below(LEASE);
                        let status = Status::new(Code::Unavailable, "later");
                        if let Ok(Retried::At(at)) =
                            self.apply(|op| op.retry(job.attempt, status, now, at))
                        {
                            self.guarded = Some(at);
                        }
                        return;
                    }
                    let result = if job.cancelled {
                        Terminal::Cancelled
                    } else if rng.chance(80) {
                        Terminal::Succeeded(json!(job.attempt))
                    } else {
                        Terminal::Failed(Status::new(Code::Internal, "boom"))
                    };
                    if self.apply(|op| op.finish(job.attempt, result, now)).is_ok() {
                        self.finished_by.push(job.attempt);
                    }
                }
            }
            // An operator cancels: recorded with its backstop watch entry; the api then writes
            // the worker's inbox (unless it dies first) and sends the message (which may be lost).
            3 => match self.apply(|op| op.request_cancel(now, None)) {
                Ok(CancelEffect::CancelledWhileQueued) => self.cancelled_while_queued = true,
                Ok(CancelEffect::Requested { worker, attempt }) => {
                    self.cancel_watch = true;
                    let w = (0..WORKERS)
                        .find(|&w| worker_name(w) == worker)
                        .expect("a worker of the world");
                    if !(chaos && rng.chance(30)) {
                        self.workers[w].inbox = true;
                    }
                    if rng.chance(60)
                        && let Some(job) = &mut self.workers[w].job
                        && job.attempt == attempt
                        && !self.workers[w].dead
                    {
                        job.cancelled = true;
                    }
                }
                _ => {}
            },
            // A heartbeat.
            4 if !self.workers[w].dead => self.heartbeat(w, rng, chaos),
            // Progress from whichever attempt the worker runs (stale ones are refused).
            5 if !self.workers[w].dead => {
                if let Some(job) = self.workers[w].job.clone() {
                    let p = Progress {
                        percent: 50,
                        message: String::new(),
                    };
                    let _ = self.apply(|op| op.report_progress(job.attempt, p, now));
                }
            }
            // A crash: the job is gone, the heartbeat stops, the broker redelivers the message.
            6 if chaos && !self.workers[w].dead => {
                let worker = &mut self.workers[w];
                worker.dead = true;
                if worker.job.take().is_some() {
                    self.queued_messages += 1;
                }
            }
            // Shutdown: the worker hands the job back and re-publishes it.
            7 if chaos && !self.workers[w].dead => {
                if let Some(job) = self.workers[w].job.take()
                    && self.apply(|op| op.hand_back(job.attempt, now)).is_ok()
                    && !self.op.is_done()
                {
                    self.queued_messages += 1;
                }
            }
            // A reaper looks: it condemns every worker whose heartbeat expired and loses its
            // attempt; removes the entry of one it condemned before (a start may have landed on
            // that worker in between: the worker itself gives it up); forwards a cancel on
            // record to its worker's inbox; publishes a guarded operation once due. Sometimes a
            // stray duplicate.
            8 => {
                for w in 0..WORKERS {
                    match self.workers[w].entry {
                        Some(0) => self.workers[w].entry = None,
                        Some(until) if until < now => {
                            self.workers[w].entry = Some(0);
                            if let Some(attempt) = self.op.held_by(&worker_name(w)) {
                                self.lose(attempt);
                            }
                        }
                        _ => {}
                    }
                }
                if std::mem::take(&mut self.cancel_watch)
                    && self.op.state() == State::Cancelling
                    && let Some(run) = self.op.run()
                {
                    let w = (0..WORKERS)
                        .find(|&w| worker_name(w) == run.worker)
                        .expect("a worker of the world");
                    self.workers[w].inbox = true;
                }
                if self.guarded.is_some_and(|at| at <= now) {
                    self.guarded = None;
                    if self.op.state() == State::Queued {
                        self.queued_messages += 1;
                    }
                }
                if chaos && rng.chance(10) {
                    self.queued_messages += 1;
                }
            }
            // A live worker reconciles: an attempt Redis says it holds but it does not run is
            // given up at once.
            9 if !self.workers[w].dead && self.workers[w].live => {
                if let Some(attempt) = self.op.held_by(&worker_name(w))
                    && self.workers[w].job.as_ref().map(|j| j.attempt) != Some(attempt)
                {
                    self.lose(attempt);
                }
            }
            // A crashed worker restarts under the same id (it registers with its heartbeat, and
            // reconciles at once).
            10 if self.workers[w].dead && (!chaos || rng.chance(30)) => {
                self.workers[w].dead = false;
                self.workers[w].live = false;
                self.heartbeat(w, rng, chaos);
            }
            // Time passes (a pause, when it is longer than a heartbeat's expiry). Once the chaos
            // is over, live workers beat in time: only a dead worker's entry expires.
            _ if chaos => self.now += rng.below(LEASE * 3 / 2),
            _ => {
                for w in 0..WORKERS {
                    if !self.workers[w].dead {
                        self.heartbeat(w, rng, chaos);
                    }
                }
                self.now += rng.below(LEASE / 2);
            }
        }
        // At any time, the record's attempt is the newest any worker holds, and a worker that
        // knows its heartbeat lapsed runs nothing.
        for worker in &self.workers {
            if let Some(job) = &worker.job {
                assert!(job.attempt <= self.op.attempt);
                assert!(worker.live, "a lapsed worker runs a job");
            }
        }
    }
}

#[test]
fn every_interleaving_ends_in_exactly_one_terminal_state() {
    let mut outcomes = [0u32; 3];
    for seed in 1..=CASES {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let mut world = World::new();
        for _ in 0..CHAOS_STEPS {
            world.step(&mut rng, true);
        }
        // The chaos stops; workers, heartbeats, cancels, reconciles and reapers go on until it is
        // done. With a requeue bounded by MAX_ATTEMPTS and no more crashes, that takes few steps.
        let mut steps = 0;
        while !world.op.is_done() {
            world.step(&mut rng, false);
            steps += 1;
            assert!(steps < 20_000, "seed {seed}: stuck in {:?}", world.op.phase);
        }
        assert_eq!(world.terminal_writes, 1, "seed {seed}");
        assert!(world.finished_by.len() <= 1, "seed {seed}");
        if let Some(&attempt) = world.finished_by.first() {
            assert_eq!(
                attempt, world.op.attempt,
                "seed {seed}: a stale attempt finished"
            );
        }
        let Phase::Done { result, .. } = &world.op.phase else {
            unreachable!()
        };
        outcomes[match result {
            Terminal::Succeeded(_) => 0,
            Terminal::Failed(_) => 1,
            Terminal::Cancelled => 2,
        }] += 1;
    }
    // The cases reach every outcome, so the rules above were exercised on each.
    assert!(outcomes.iter().all(|&n| n > 0), "{outcomes:?}");
}
