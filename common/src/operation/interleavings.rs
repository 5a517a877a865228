//! Random interleavings of everything that can happen to one operation — deliveries (duplicated,
//! redelivered), starts, progress, renewals, completions, retryable failures, user cancels (their messages delivered
//! or lost), worker crashes, pauses, shutdown hand-backs and reaper expiries — applied to the
//! state machine exactly as the store applies them (each transition atomic on the latest record).
//! After every step the race rules must hold; after the chaos stops, the operation must end.

use serde_json::json;

use super::*;

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

struct World {
    op: Operation,
    now: Millis,
    /// Job messages on the queue (duplicates included).
    queued_messages: u32,
    workers: [Option<Job>; WORKERS],
    terminal_writes: u32,
    cancelled_while_queued: bool,
    /// Every attempt number that ever wrote a terminal state.
    finished_by: Vec<u32>,
    /// A publish guard armed for this time (a retry's backoff).
    guarded: Option<Millis>,
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
            workers: Default::default(),
            terminal_writes: 0,
            cancelled_while_queued: false,
            finished_by: Vec::new(),
            guarded: None,
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

    fn step(&mut self, rng: &mut Rng, chaos: bool) {
        let w = rng.below(WORKERS as u64) as usize;
        match rng.below(10) {
            // A delivery reaches an idle worker: it starts the attempt, or skips the message.
            0 | 1 if self.queued_messages > 0 && self.workers[w].is_none() => {
                self.queued_messages -= 1;
                let (now, until) = (self.now, self.now + LEASE);
                if let Ok(started) = self.apply(|op| op.start("w", now, until)) {
                    assert!(
                        !self.cancelled_while_queued,
                        "a cancelled-while-queued op started"
                    );
                    self.workers[w] = Some(Job {
                        attempt: started.attempt,
                        cancelled: started.cancel_requested,
                    });
                }
            }
            // The job ends: cancelled if its token fired, else succeeded, failed, or failed
            // retryably (queued again, published by a reaper once the backoff is over).
            2 => {
                if let Some(job) = self.workers[w].take() {
                    if !job.cancelled && rng.chance(25) {
                        let (now, at) = (self.now, self.now + rng.below(LEASE));
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
                    let now = self.now;
                    if self.apply(|op| op.finish(job.attempt, result, now)).is_ok() {
                        self.finished_by.push(job.attempt);
                    }
                }
            }
            // An operator cancels; the message reaches the worker named in the record, or is lost.
            3 => {
                let now = self.now;
                match self.apply(|op| op.request_cancel(now, None)) {
                    Ok(CancelEffect::CancelledWhileQueued) => self.cancelled_while_queued = true,
                    Ok(CancelEffect::Requested { attempt, .. }) if rng.chance(60) => {
                        for job in self.workers.iter_mut().flatten() {
                            if job.attempt == attempt {
                                job.cancelled = true;
                            }
                        }
                    }
                    _ => {}
                }
            }
            // A renewal: extends the lease and reads the cancel, or tells the job it lost it.
            4 => {
                if let Some(job) = self.workers[w].clone() {
                    let until = self.now + LEASE;
                    match self.apply(|op| op.renew(job.attempt, until)) {
                        Ok(r) => {
                            if r.cancel_requested {
                                self.workers[w].as_mut().unwrap().cancelled = true;
                            }
                        }
                        Err(_) => self.workers[w] = None,
                    }
                }
            }
            // Progress from whichever attempt the worker runs (stale ones are refused).
            5 => {
                if let Some(job) = self.workers[w].clone() {
                    let p = Progress {
                        percent: 50,
                        message: String::new(),
                    };
                    let now = self.now;
                    let _ = self.apply(|op| op.report_progress(job.attempt, p, now));
                }
            }
            // A crash: the job is gone and the broker redelivers its message.
            6 if chaos => {
                if self.workers[w].take().is_some() {
                    self.queued_messages += 1;
                }
            }
            // Shutdown: the worker hands the job back and re-publishes it.
            7 if chaos => {
                if let Some(job) = self.workers[w].take() {
                    let now = self.now;
                    if self.apply(|op| op.hand_back(job.attempt, now)).is_ok() && !self.op.is_done()
                    {
                        self.queued_messages += 1;
                    }
                }
            }
            // A reaper looks; a requeued operation is re-published, a guarded one once due.
            // Sometimes a stray duplicate.
            8 => {
                let now = self.now;
                if self.guarded.is_some_and(|at| at <= now) {
                    self.guarded = None;
                    if self.op.state() == State::Queued {
                        self.queued_messages += 1;
                    }
                }
                if let Ok(Expired::Requeued) = self.apply(|op| op.expire(now)) {
                    self.queued_messages += 1;
                }
                if chaos && rng.chance(10) {
                    self.queued_messages += 1;
                }
            }
            // Time passes (a pause, when it is longer than a lease).
            _ => self.now += rng.below(LEASE * 3 / 2),
        }
        // At any time, the record's attempt is the newest any worker holds.
        for job in self.workers.iter().flatten() {
            assert!(job.attempt <= self.op.attempt);
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
        // The chaos stops; workers, renewals, cancels and reapers go on until it is done. With
        // a requeue bounded by MAX_ATTEMPTS and no more crashes, that takes few steps.
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
