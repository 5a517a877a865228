//! `:cancel` in every row of the contract's cancel table.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use lro_worker::CancelReason;
use serde_json::json;

use crate::harness::{DoneCounter, Env, Probe, name_of, state_of};

#[tokio::test]
async fn cancel_running_job_fires_its_token_and_ends_cancelled() {
    let (env, probe) = Env::with_worker(4).await;

    let name = name_of(&env.api.submit("", "gate", json!({})).await);
    probe.started(&name).await;

    let asked = Instant::now();
    assert_eq!(env.api.cancel(&name).await.ok(), json!({}));
    let done = env.api.done(&name).await;
    let took = asked.elapsed();
    assert!(took < Duration::from_secs(1), "cancel took {took:?}");

    assert_eq!(done["error"]["code"], 1, "{done}");
    assert_eq!(state_of(&done), "CANCELLED");
    assert_eq!(done["metadata"]["cancelRequested"], true);
    assert!(done["metadata"]["cancelTime"].is_string(), "{done}");
    assert!(done.get("response").is_none(), "{done}");
    // The job itself saw its token fire, for this reason, and ran once.
    let seen = probe.seen(&name);
    assert_eq!(seen.stopped, Some(CancelReason::User), "{seen:?}");
    assert_eq!(seen.starts, 1);
}

#[tokio::test]
async fn cancel_of_builtin_sleep_and_spin_stops_them() {
    let mut env = Env::start().await;
    env.worker(lro_worker::Kinds::builtin(), 4).await;

    let sleep = name_of(
        &env.api
            .submit("", "sleep", json!({ "duration": "1h", "steps": 3600 }))
            .await,
    );
    let spin = name_of(
        &env.api
            .submit("", "spin", json!({ "iterations": u64::MAX / 2 }))
            .await,
    );
    for name in [&sleep, &spin] {
        // Running (the worker recorded its start) before the cancel, so this is a running cancel.
        env.api.running(name).await;
        env.api.cancel(name).await.ok();
        let done = env.api.done(name).await;
        assert_eq!(done["error"]["code"], 1, "{done}");
        assert!(done["metadata"]["startTime"].is_string(), "{done}");
    }
}

#[tokio::test]
async fn cancel_while_queued_ends_it_at_once_and_no_worker_ever_runs_it() {
    let mut env = Env::start().await;
    let name = name_of(&env.api.submit("", "sleep", json!({})).await);

    assert_eq!(env.api.cancel(&name).await.ok(), json!({}));
    // Done at once: no worker exists to do it.
    let op = env.api.get(&name).await.ok();
    assert_eq!(op["done"], true, "{op}");
    assert_eq!(op["error"]["code"], 1);
    assert_eq!(state_of(&op), "CANCELLED");

    // A worker started afterwards consumes the queued message and skips it. With concurrency 1
    // the queue is FIFO: once a later noop is done, the cancelled job's message has been handled.
    let probe = Probe::default();
    env.worker(probe.kinds(), 1).await;
    let after = name_of(&env.api.submit("", "noop", json!({})).await);
    env.api.done(&after).await;

    assert_eq!(
        probe.seen(&name).starts,
        0,
        "a cancelled-while-queued job ran"
    );
    let op2 = env.api.get(&name).await.ok();
    assert_eq!(op2, op, "the record changed after the cancel");
    assert!(op2["metadata"].get("startTime").is_none(), "{op2}");
    assert!(op2["metadata"].get("worker").is_none(), "{op2}");
}

#[tokio::test]
async fn cancel_unknown_operation_is_not_found() {
    let env = Env::start().await;
    env.api
        .cancel("operations/0190a000-0000-7000-8000-000000000000")
        .await
        .error(404, "NOT_FOUND");
    env.api
        .cancel("projects/p/operations/nope")
        .await
        .error(404, "NOT_FOUND");
}

#[tokio::test]
async fn cancel_uninterruptible_is_unimplemented_and_it_completes() {
    let mut env = Env::start().await;
    env.worker(lro_worker::Kinds::builtin(), 4).await;
    let name = name_of(
        &env.api
            .submit(
                "",
                "uninterruptible",
                json!({ "duration": "300ms", "steps": 3 }),
            )
            .await,
    );
    let before = env.api.get(&name).await.ok();
    let reply = env.api.cancel(&name).await;
    reply.error(501, "UNIMPLEMENTED");

    let done = env.api.done(&name).await;
    assert_eq!(state_of(&done), "SUCCEEDED", "{done}");
    assert!(done["metadata"].get("cancelRequested").is_none(), "{done}");
    assert_eq!(
        done["metadata"]["createTime"],
        before["metadata"]["createTime"]
    );
}

#[tokio::test]
async fn cancel_of_a_done_operation_changes_nothing_and_repeats_are_ok() {
    let (env, probe) = Env::with_worker(4).await;

    // Done by success: cancel answers {} and the record is byte for byte the same.
    let ok = name_of(&env.api.submit("", "noop", json!({})).await);
    let done = env.api.done(&ok).await;
    for _ in 0..3 {
        assert_eq!(env.api.cancel(&ok).await.ok(), json!({}));
    }
    assert_eq!(env.api.get(&ok).await.ok(), done);

    // Running, cancelled three times: one CANCELLED, the job stopped once.
    let running = name_of(&env.api.submit("", "gate", json!({})).await);
    probe.started(&running).await;
    for _ in 0..3 {
        assert_eq!(env.api.cancel(&running).await.ok(), json!({}));
    }
    let cancelled = env.api.done(&running).await;
    assert_eq!(cancelled["error"]["code"], 1, "{cancelled}");
    let first_cancel = cancelled["metadata"]["cancelTime"].clone();
    assert_eq!(env.api.cancel(&running).await.ok(), json!({}));
    let again = env.api.get(&running).await.ok();
    assert_eq!(
        again, cancelled,
        "a repeated cancel changed a done operation"
    );
    assert_eq!(again["metadata"]["cancelTime"], first_cancel);
    assert_eq!(probe.seen(&running).starts, 1);
}

#[tokio::test]
async fn job_finishing_after_the_cancel_but_before_noticing_stays_succeeded() {
    let (env, probe) = Env::with_worker(4).await;
    let name = name_of(&env.api.submit("", "deaf", json!({})).await);
    probe.started(&name).await;

    env.api.cancel(&name).await.ok();
    let cancelling = env.api.get(&name).await.ok();
    assert_eq!(state_of(&cancelling), "CANCELLING", "{cancelling}");
    assert_eq!(cancelling["metadata"]["cancelRequested"], true);
    // The cancel reaches the job (its token fires); it finishes anyway.
    probe.until(&name, |s| s.stopped.is_some()).await;
    probe.release(&name);

    let done = env.api.done(&name).await;
    assert_eq!(state_of(&done), "SUCCEEDED", "{done}");
    assert_eq!(done["response"]["value"], json!({ "released": true }));
    assert_eq!(done["metadata"]["cancelRequested"], true);
    assert!(done.get("error").is_none(), "{done}");
    assert_eq!(probe.seen(&name).stopped, Some(CancelReason::User));
}

#[tokio::test]
async fn cancel_racing_completion_writes_exactly_one_terminal_state() {
    const N: usize = 50;
    let (env, probe) = Env::with_worker(64).await;

    // Count terminal writes as Redis announces them.
    let counter = DoneCounter::subscribe(&env).await;

    let mut names = Vec::new();
    for _ in 0..N {
        names.push(name_of(&env.api.submit("", "gate", json!({})).await));
    }
    for name in &names {
        probe.started(name).await;
    }
    // Release each job around the moment its cancel lands: half while the cancel request is in
    // flight, half just after it is answered (while the cancel message travels to the worker),
    // each after a short spin spread over 0-1.5 ms, so that every outcome of the race occurs. The
    // spread only shapes the race; no assertion depends on who wins it.
    let races = names.iter().enumerate().map(|(i, name)| {
        let api = env.api.clone();
        let probe = probe.clone();
        async move {
            let release = async {
                let at = Instant::now() + Duration::from_micros((i / 2) as u64 * 60);
                while Instant::now() < at {
                    tokio::task::yield_now().await;
                }
                probe.release(name);
            };
            if i % 2 == 0 {
                let (reply, ()) = tokio::join!(api.cancel(name), release);
                reply.ok();
            } else {
                api.cancel(name).await.ok();
                release.await;
            }
        }
    });
    futures_util::future::join_all(races).await;

    let mut outcomes: HashMap<&str, usize> = HashMap::new();
    for name in &names {
        let done = env.api.done(name).await;
        let has_error = done.get("error").is_some();
        let has_response = done.get("response").is_some();
        assert!(has_error != has_response, "{done}");
        let state = state_of(&done);
        match state {
            "CANCELLED" => assert_eq!(done["error"]["code"], 1, "{done}"),
            // Finished first: before the cancel was recorded, or after it ("completed despite
            // cancellation", the request still on record).
            "SUCCEEDED" => assert!(has_response, "{done}"),
            other => panic!("unexpected terminal state {other}: {done}"),
        }
        let outcome = match (state, done["metadata"].get("cancelRequested")) {
            ("CANCELLED", _) => "cancelled",
            (_, Some(_)) => "completed despite cancellation",
            _ => "completed before the cancel",
        };
        *outcomes.entry(outcome).or_default() += 1;
        assert_eq!(env.api.get(name).await.ok(), done, "the outcome moved");
    }

    // Exactly one terminal write per operation.
    let announced = counter.counts().await;
    for name in &names {
        assert_eq!(announced.get(name), Some(&1), "terminal writes for {name}");
    }
    assert_eq!(announced.len(), N);
    eprintln!("cancel racing completion: {outcomes:?}");
}

#[tokio::test]
async fn cancel_reaches_the_worker_that_runs_the_operation() {
    let mut env = Env::start().await;
    let (pa, pb) = (Probe::default(), Probe::default());
    let a = env.worker(pa.kinds(), 2).await;
    let b = env.worker(pb.kinds(), 2).await;

    // Four jobs fill both workers (two each, by their prefetch).
    let mut names = Vec::new();
    for _ in 0..4 {
        names.push(name_of(&env.api.submit("", "gate", json!({})).await));
    }
    let mut on = HashMap::new();
    for name in &names {
        let ran_on = tokio::select! {
            _ = pa.started(name) => &a,
            _ = pb.started(name) => &b,
        };
        let op = env.api.get(name).await.ok();
        assert_eq!(op["metadata"]["worker"], ran_on.as_str(), "{op}");
        on.insert(name.clone(), ran_on.clone());
    }
    let by_a = names.iter().filter(|n| on[*n] == a).count();
    assert_eq!(by_a, 2, "prefetch 2 each: {on:?}");

    for target in [&names[0], &names[3]] {
        let (mine, other) = if on[target] == a {
            (&pa, &pb)
        } else {
            (&pb, &pa)
        };
        env.api.cancel(target).await.ok();
        let done = env.api.done(target).await;
        assert_eq!(done["error"]["code"], 1, "{done}");
        assert_eq!(mine.seen(target).stopped, Some(CancelReason::User));
        assert_eq!(other.seen(target).starts, 0);
    }
    // The others are untouched: still running, their tokens never fired.
    for name in &names[1..3] {
        let op = env.api.get(name).await.ok();
        assert_eq!(state_of(&op), "RUNNING", "{op}");
        let probe = if on[name] == a { &pa } else { &pb };
        assert_eq!(probe.seen(name).stopped, None);
    }
}
