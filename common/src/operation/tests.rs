//! The transitions, one rule at a time; `interleavings.rs` runs them in random orders.

use super::*;
use serde_json::json;

fn op(cancellable: bool) -> Operation {
    Operation::new(
        NewOperation {
            name: OperationName::parse("operations/t").unwrap(),
            kind: "sleep".into(),
            input: json!({}),
            cancellable,
            request_id: None,
            timeout_ms: None,
            retention_ms: None,
        },
        1,
    )
}

fn running() -> Operation {
    let mut o = op(true);
    o.start("w1", 2).unwrap();
    o
}

#[test]
fn new_is_queued() {
    let o = op(true);
    assert_eq!(o.state(), State::Queued);
    assert_eq!(o.attempt, 0);
    assert!(o.run().is_none());
}

#[test]
fn start_begins_an_attempt() {
    let mut o = op(true);
    let s = o.start("w1", 2).unwrap();
    assert_eq!(
        s,
        Started {
            attempt: 1,
            cancel_requested: false
        }
    );
    assert_eq!(o.state(), State::Running);
    assert_eq!(o.run().unwrap().worker, "w1");
    assert_eq!(o.held_by("w1"), Some(1));
    assert_eq!(o.held_by("w2"), None);
}

#[test]
fn start_of_running_is_refused_until_its_attempt_is_lost() {
    let mut o = running();
    let before = o.clone();
    assert_eq!(
        o.start("w2", 1_000_000),
        Err(Refused::Held {
            worker: "w1".into(),
            attempt: 1
        })
    );
    assert_eq!(o, before);
}

#[test]
fn a_lost_attempt_is_fenced_and_the_next_start_is_a_new_attempt() {
    let mut o = running();
    assert_eq!(o.lose(1, 10), Ok(Expired::Requeued));
    let s = o.start("w2", 11).unwrap();
    assert_eq!(s.attempt, 2);
    assert_eq!(o.run().unwrap().worker, "w2");
    assert_eq!(
        o.finish(1, Terminal::Succeeded(json!(1)), 12),
        Err(Refused::Stale {
            mine: 1,
            current: 2
        })
    );
    // Losing the old attempt again changes nothing: only the running attempt can be lost.
    assert_eq!(
        o.lose(1, 13),
        Err(Refused::Stale {
            mine: 1,
            current: 2
        })
    );
    assert_eq!(o.state(), State::Running);
}

#[test]
fn the_first_cancel_names_who_asked() {
    let mut o = running();
    o.request_cancel(2, Some("alice")).unwrap();
    o.request_cancel(3, Some("bob")).unwrap();
    assert_eq!(o.cancel_requested, Some(2));
    assert_eq!(o.cancel_requested_by.as_deref(), Some("alice"));
    let mut q = op(true);
    q.request_cancel(4, Some("carol")).unwrap();
    assert_eq!(q.cancel_requested_by.as_deref(), Some("carol"));
}

#[test]
fn start_of_done_is_refused() {
    let mut o = op(true);
    o.request_cancel(2, None).unwrap();
    assert_eq!(o.start("w1", 3), Err(Refused::Done));
    assert_eq!(o.state(), State::Cancelled);
}

#[test]
fn cancel_while_queued_finishes_at_once() {
    let mut o = op(true);
    assert_eq!(
        o.request_cancel(5, None),
        Ok(CancelEffect::CancelledWhileQueued)
    );
    assert_eq!(o.state(), State::Cancelled);
    assert_eq!(o.cancel_requested, Some(5));
    assert!(o.run().is_none());
}

#[test]
fn cancel_while_running_sets_the_fact_and_names_the_worker() {
    let mut o = running();
    let eff = o.request_cancel(5, None).unwrap();
    assert_eq!(
        eff,
        CancelEffect::Requested {
            worker: "w1".into(),
            attempt: 1
        }
    );
    assert_eq!(o.state(), State::Cancelling);
    // Repeat: same effect, first request time kept.
    let before = o.clone();
    assert_eq!(o.request_cancel(9, None).unwrap(), eff);
    assert_eq!(o, before);
}

#[test]
fn a_lost_attempt_with_a_cancel_on_record_ends_cancelled() {
    let mut o = running();
    o.request_cancel(5, None).unwrap();
    let before = o.clone();
    assert!(matches!(o.start("w2", 11), Err(Refused::Held { .. })));
    assert_eq!(o, before);
    assert_eq!(o.lose(1, 11), Ok(Expired::Cancelled));
    assert_eq!(o.run().unwrap().worker, "w1");
}

#[test]
fn cancel_of_done_changes_nothing() {
    let mut o = running();
    o.finish(1, Terminal::Succeeded(json!("ok")), 3).unwrap();
    let before = o.clone();
    assert_eq!(o.request_cancel(4, None), Ok(CancelEffect::AlreadyDone));
    assert_eq!(o, before);
}

#[test]
fn cancel_of_uncancellable_is_refused_in_every_phase() {
    let mut o = op(false);
    assert!(matches!(
        o.request_cancel(2, None),
        Err(Refused::NotCancellable(_))
    ));
    o.start("w", 3).unwrap();
    let before = o.clone();
    assert!(matches!(
        o.request_cancel(4, None),
        Err(Refused::NotCancellable(_))
    ));
    assert_eq!(o, before);
}

#[test]
fn completion_despite_cancellation_stays_succeeded() {
    let mut o = running();
    o.request_cancel(3, None).unwrap();
    o.finish(1, Terminal::Succeeded(json!(7)), 4).unwrap();
    assert_eq!(o.state(), State::Succeeded);
}

#[test]
fn first_terminal_writer_wins() {
    let mut o = running();
    o.request_cancel(3, None).unwrap();
    o.finish(1, Terminal::Cancelled, 4).unwrap();
    assert_eq!(
        o.finish(1, Terminal::Succeeded(json!(1)), 5),
        Err(Refused::Done)
    );
    assert_eq!(
        o.finish(1, Terminal::Failed(Status::new(Code::Internal, "x")), 5),
        Err(Refused::Done)
    );
    assert_eq!(o.state(), State::Cancelled);
    assert_eq!(o.run().unwrap().worker, "w1");
}

#[test]
fn failure_is_terminal() {
    let mut o = running();
    o.finish(1, Terminal::Failed(Status::new(Code::Internal, "boom")), 3)
        .unwrap();
    assert_eq!(o.state(), State::Failed);
    assert_eq!(o.request_cancel(4, None), Ok(CancelEffect::AlreadyDone));
}

#[test]
fn progress_only_from_the_current_attempt() {
    let mut o = running();
    let p = |n| Progress {
        percent: n,
        message: String::new(),
    };
    o.report_progress(1, p(150), 3).unwrap();
    assert_eq!(o.progress.as_ref().unwrap().percent, 100);
    o.lose(1, 9).unwrap();
    o.start("w2", 10).unwrap();
    assert!(o.progress.is_none());
    assert!(matches!(
        o.report_progress(1, p(10), 5),
        Err(Refused::Stale { .. })
    ));
    o.finish(2, Terminal::Cancelled, 6).unwrap();
    assert_eq!(o.report_progress(2, p(10), 7), Err(Refused::Done));
    let mut q = op(true);
    assert_eq!(q.report_progress(0, p(1), 2), Err(Refused::NotRunning));
}

#[test]
fn hand_back_requeues_and_next_start_is_a_new_attempt() {
    let mut o = running();
    o.hand_back(1, 3).unwrap();
    assert_eq!(o.state(), State::Queued);
    assert_eq!(
        o.finish(1, Terminal::Cancelled, 4),
        Err(Refused::NotRunning)
    );
    assert_eq!(o.start("w2", 5).unwrap().attempt, 2);
    // A cancel after the hand-back finishes it at once.
    o.hand_back(2, 6).unwrap();
    assert_eq!(
        o.request_cancel(7, None),
        Ok(CancelEffect::CancelledWhileQueued)
    );
    assert_eq!(o.start("w3", 8), Err(Refused::Done));
}

#[test]
fn retry_queues_again_after_the_backoff_until_attempts_are_spent() {
    let mut o = running();
    let boom = Status::new(Code::Unavailable, "try later");
    assert_eq!(o.retry(1, boom.clone(), 3, 50), Ok(Retried::At(50)));
    assert_eq!(o.state(), State::Queued);
    assert_eq!(o.last_error.as_ref(), Some(&boom));
    assert_eq!(o.start("w", 49), Err(Refused::NotYet(50)));
    assert_eq!(o.start("w", 50).unwrap().attempt, 2);
    assert_eq!(o.not_before, None);
    for attempt in 2..MAX_ATTEMPTS {
        let now = u64::from(attempt) * 100;
        assert_eq!(
            o.retry(attempt, boom.clone(), now, now),
            Ok(Retried::At(now))
        );
        o.start("w", now).unwrap();
    }
    assert_eq!(
        o.retry(MAX_ATTEMPTS, boom.clone(), 1000, 1000),
        Ok(Retried::Exhausted)
    );
    assert!(matches!(&o.phase, Phase::Done { result: Terminal::Failed(s), .. } if *s == boom));
}

#[test]
fn a_cancel_is_never_retried() {
    let mut o = running();
    o.request_cancel(3, None).unwrap();
    let boom = Status::new(Code::Unavailable, "try later");
    assert_eq!(o.retry(1, boom, 4, 50), Ok(Retried::Cancelled));
    assert_eq!(o.state(), State::Cancelled);
    // And a cancel during the backoff ends it at once.
    let mut q = running();
    q.retry(1, Status::new(Code::Unavailable, "x"), 4, 50)
        .unwrap();
    assert_eq!(
        q.request_cancel(5, None),
        Ok(CancelEffect::CancelledWhileQueued)
    );
}

#[test]
fn hand_back_of_a_cancelling_operation_ends_it_cancelled() {
    let mut o = running();
    o.request_cancel(3, None).unwrap();
    o.hand_back(1, 4).unwrap();
    assert_eq!(o.state(), State::Cancelled);
}

#[test]
fn lose_requeues_until_attempts_are_spent() {
    let mut o = running();
    for attempt in 1..MAX_ATTEMPTS {
        assert_eq!(
            o.lose(attempt, 100 * u64::from(attempt)),
            Ok(Expired::Requeued)
        );
        assert_eq!(o.state(), State::Queued);
        assert_eq!(
            o.lose(attempt, 100 * u64::from(attempt)),
            Err(Refused::NotRunning)
        );
        let now = 100 * u64::from(attempt) + 1;
        assert_eq!(o.start("w", now).unwrap().attempt, attempt + 1);
    }
    assert_eq!(o.lose(MAX_ATTEMPTS, 10_000), Ok(Expired::Failed));
    match &o.phase {
        Phase::Done {
            result: Terminal::Failed(status),
            ..
        } => assert_eq!(status.code, Code::Aborted.as_i32()),
        other => panic!("{other:?}"),
    }
    assert_eq!(o.lose(MAX_ATTEMPTS, 10_001), Err(Refused::Done));
}

#[test]
fn lose_of_a_cancelling_operation_ends_it_cancelled() {
    let mut o = running();
    o.request_cancel(5, None).unwrap();
    assert_eq!(o.lose(1, 10), Ok(Expired::Cancelled));
    assert_eq!(o.state(), State::Cancelled);
    assert_eq!(
        o.finish(1, Terminal::Succeeded(json!(1)), 11),
        Err(Refused::Done)
    );
}

#[test]
fn states_parse_by_name() {
    for s in State::ALL {
        assert_eq!(State::parse(s.name()), Some(s));
    }
    assert_eq!(State::parse("running"), None);
}
