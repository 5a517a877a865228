//! Faults: workers killed, paused and stopped mid-job, cancel messages lost, publishes never
//! confirmed. Real worker processes where a process must die; the shared Redis and RabbitMQ are
//! never disturbed.

use std::time::{Duration, Instant};

use lro_common::publish;
use lro_common::time::now_millis;
use lro_worker::{CancelReason, Kinds};
use serde_json::{Value, json};

use crate::broker::PrivateRabbit;
use crate::harness::{
    DoneCounter, Env, Probe, eventually, name_of, new_operation, state_of, store,
};

/// Sends `signal` (e.g. "STOP") to a child process.
pub fn signal(child: &tokio::process::Child, signal: &str) {
    let pid = child.id().expect("child running").to_string();
    // Always `kill -s SIG -- PID`: procps-ng 4.0 misreads other forms (`kill -KILL -PGID` can
    // become a kill of every process).
    let status = std::process::Command::new("kill")
        .args(["-s", signal, "--", &pid])
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill {signal} {pid}");
}

/// Waits until `n` operations of `collection` are RUNNING on `worker`; returns them.
async fn running_on(env: &Env, collection: &str, worker: &str, n: usize) -> Vec<Value> {
    eventually(&format!("{n} running on {worker}"), || async {
        let ops = env.api.list_all(collection, "metadata.state=RUNNING").await;
        let on: Vec<Value> = ops
            .into_iter()
            .filter(|op| op["metadata"]["worker"] == worker)
            .collect();
        (on.len() == n).then_some(on)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_of_a_killed_worker_run_again_elsewhere_exactly_once() {
    const N: usize = 100;
    let mut env = Env::start().await;
    let counter = DoneCounter::subscribe(&env).await;
    // The default configuration: a 3 s heartbeat lease, beating every second.
    let mut doomed = env.worker_process("doomed", 100, &[]);

    let mut names = Vec::new();
    for _ in 0..N {
        let input = json!({ "duration": "8s", "steps": 8 });
        names.push(name_of(&env.api.submit("projects/k", "sleep", input).await));
    }
    running_on(&env, "projects/k/operations", "doomed", N).await;

    let killed = Instant::now();
    let killed_at = now_millis();
    doomed.start_kill().expect("kill -9");
    doomed.wait().await.expect("reaped");
    let rescuer = env.worker(Kinds::builtin(), 100).await;

    // Each runs again on the rescuer as attempt 2 (the worker's heartbeat expired; a reaper
    // re-queued its attempts).
    let mut restarts = Vec::new();
    for name in &names {
        let op = env.api.done(name).await;
        assert_eq!(state_of(&op), "SUCCEEDED", "{op}");
        assert_eq!(op["metadata"]["attempt"], 2, "{op}");
        assert_eq!(op["metadata"]["worker"], rescuer.as_str(), "{op}");
        let started = op["metadata"]["startTime"].as_str().expect("start");
        let started = humantime::parse_rfc3339(started).expect("rfc3339");
        let ms = started
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_millis();
        restarts.push(u64::try_from(ms).expect("ms") - killed_at);
    }
    restarts.sort_unstable();
    let all_done = killed.elapsed();
    let counts = counter.counts().await;
    for name in &names {
        assert_eq!(counts.get(name), Some(&1), "terminal writes of {name}");
    }
    eprintln!(
        "kill -9 with {N} running (default 3 s lease, 8 s jobs): restarted {}-{} ms after the \
         kill (median {} ms); all done {all_done:?} after it; {} terminal writes",
        restarts[0],
        restarts[N - 1],
        restarts[N / 2],
        counts.values().sum::<usize>()
    );
    assert!(
        restarts[N - 1] <= 5_000,
        "the last job ran again {} ms after the kill (goal: 5 s)",
        restarts[N - 1]
    );
}

/// A worker restarted under the same id while its old heartbeat still holds (a crash loop, a
/// fixed `LRO_WORKER_ID`): Redis records the old process's attempts on it, which no job of the
/// new process runs. Its first reconcile gives them up at once, so they run again, instead of
/// staying RUNNING on a live worker forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_restarted_under_its_id_gives_up_what_its_old_process_ran() {
    const N: usize = 5;
    let env = Env::start().await;
    let counter = DoneCounter::subscribe(&env).await;
    let mut first = env.worker_process("phoenix", 10, &[]);
    let mut names = Vec::new();
    for _ in 0..N {
        let input = json!({ "duration": "1s", "steps": 4 });
        names.push(name_of(&env.api.submit("", "sleep", input).await));
    }
    running_on(&env, "operations", "phoenix", N).await;
    first.start_kill().expect("kill -9");
    first.wait().await.expect("reaped");
    let _second = env.worker_process("phoenix", 10, &[]);
    for name in &names {
        let op = env.api.done(name).await;
        assert_eq!(state_of(&op), "SUCCEEDED", "{op}");
        assert_eq!(op["metadata"]["attempt"], 2, "{op}");
        assert_eq!(op["metadata"]["worker"], "phoenix", "{op}");
    }
    let counts = counter.counts().await;
    for name in &names {
        assert_eq!(counts.get(name), Some(&1), "terminal writes of {name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_worker_is_fenced_and_its_attempt_never_recorded() {
    let mut env = Env::start().await;
    let counter = DoneCounter::subscribe(&env).await;
    // Concurrency 1, so the broker sends it nothing more while its one job runs.
    let paused = env.worker_process("paused", 1, &[("LRO_LEASE", "1s")]);
    let input = json!({ "duration": "3s", "steps": 30 });
    let name = name_of(&env.api.submit("", "sleep", input).await);
    running_on(&env, "operations", "paused", 1).await;

    // Frozen mid-job (a GC pause, a partition): its lease runs out and another worker takes over.
    signal(&paused, "STOP");
    let rescuer = env.worker(Kinds::builtin(), 4).await;
    let taken = eventually("taken over", || async {
        let op = env.api.get(&name).await.ok();
        (op["metadata"]["attempt"] == 2).then_some(op)
    })
    .await;
    assert_eq!(taken["metadata"]["worker"], rescuer.as_str(), "{taken}");

    // Thawed, the old attempt finds itself fenced: its renewals and progress are refused, it
    // stops its job, and nothing it does is recorded.
    signal(&paused, "CONT");
    let done = env.api.done(&name).await;
    assert_eq!(state_of(&done), "SUCCEEDED", "{done}");
    assert_eq!(done["metadata"]["attempt"], 2);
    assert_eq!(done["metadata"]["worker"], rescuer.as_str());
    assert_eq!(counter.counts().await.get(&name), Some(&1));
}

/// An api that recorded a cancel and died before writing the worker's inbox or sending the
/// message: the backstop entry armed with the record brings a reaper to write the inbox, and the
/// worker's heartbeat finds it there.
#[tokio::test]
async fn a_cancel_whose_api_died_before_telling_the_worker_is_honoured() {
    use lro_common::store::{Watch, WatchEffect};
    let mut env = Env::start().await;
    let probe = Probe::default();
    env.worker_with(probe.kinds(), |_| {}).await;
    let name = name_of(&env.api.submit("", "gate", json!({})).await);
    probe.started(&name).await;

    // What `cancel::request` writes before it tells anyone, and nothing more.
    let store = store(&env).await;
    let op_name = lro_common::name::OperationName::parse(&name).expect("name");
    let now = now_millis();
    store
        .update_watching(
            &op_name,
            |op| op.request_cancel(now, None),
            |_| Some(WatchEffect::Arm(Watch::Cancels, now + 2_000)),
        )
        .await
        .expect("cancel recorded");

    let seen = probe.until(&name, |s| s.stopped.is_some()).await;
    assert_eq!(seen.stopped, Some(CancelReason::User));
    let done = env.api.done(&name).await;
    assert_eq!(done["error"]["code"], 1, "{done}");
}

#[tokio::test]
async fn an_operation_whose_publish_never_happened_is_published_by_the_reaper() {
    let mut env = Env::start().await;
    env.worker(Kinds::builtin(), 4).await;

    // What an api that died between its Redis write and its publish leaves behind.
    let store = store(&env).await;
    let op = new_operation("noop");
    let name = op.name.clone();
    publish::guard_publish(&store, &name).await.expect("guard");
    store.create(&op, &[]).await.expect("create");

    let created = Instant::now();
    let done = env.api.done(name.as_str()).await;
    assert_eq!(state_of(&done), "SUCCEEDED", "{done}");
    let took = created.elapsed();
    assert!(
        took >= publish::REPUBLISH_AFTER,
        "published before its guard was due: {took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_short_jobs_finish_and_hands_long_ones_back() {
    let mut env = Env::start().await;
    let vars = [("LRO_SHUTDOWN_GRACE", "1.5s")];
    let mut leaving = env.worker_process("leaving", 10, &vars);
    let mut short = Vec::new();
    let mut long = Vec::new();
    for _ in 0..2 {
        let input = json!({ "duration": "0.3s", "steps": 3 });
        short.push(name_of(&env.api.submit("", "sleep", input).await));
    }
    for _ in 0..3 {
        let input = json!({ "duration": "4s", "steps": 40 });
        long.push(name_of(&env.api.submit("", "sleep", input).await));
    }
    running_on(&env, "operations", "leaving", 5).await;

    signal(&leaving, "TERM");
    let status = leaving.wait().await.expect("exits");
    assert!(status.success(), "worker exit: {status}");
    // Within the grace period the short jobs finished where they ran.
    for name in &short {
        let op = env.api.get(name).await.ok();
        assert_eq!(state_of(&op), "SUCCEEDED", "{op}");
        assert_eq!(op["metadata"]["worker"], "leaving");
    }
    // The long ones were handed back, not cancelled: queued again for the next attempt.
    for name in &long {
        let op = env.api.get(name).await.ok();
        assert_eq!(state_of(&op), "QUEUED", "{op}");
        assert!(op["metadata"].get("cancelRequested").is_none(), "{op}");
    }

    let next = env.worker(Kinds::builtin(), 10).await;
    for name in &long {
        let op = env.api.done(name).await;
        assert_eq!(state_of(&op), "SUCCEEDED", "{op}");
        assert_eq!(op["metadata"]["attempt"], 2);
        assert_eq!(op["metadata"]["worker"], next.as_str());
    }
}

#[tokio::test]
async fn a_job_that_ignores_its_token_is_aborted_after_the_grace_and_still_ends() {
    let mut env = Env::start().await;
    let probe = Probe::default();
    env.worker_with(probe.kinds(), |c| {
        c.concurrency = 1;
        c.stop_grace = Duration::from_millis(300);
    })
    .await;

    // A user cancel: the job hears its token and ignores it; it is aborted and ends CANCELLED.
    let deaf = name_of(&env.api.submit("", "deaf", json!({})).await);
    probe.started(&deaf).await;
    env.api.cancel(&deaf).await.ok();
    let done = env.api.done(&deaf).await;
    assert_eq!(state_of(&done), "CANCELLED", "{done}");
    assert_eq!(done["metadata"]["stopForced"], true, "{done}");
    assert_eq!(probe.seen(&deaf).stopped, Some(CancelReason::User));

    // A deadline on a job that never looks at its token: aborted, DEADLINE_EXCEEDED.
    let stubborn = env
        .api
        .submit_with(
            "",
            json!({ "kind": "uninterruptible", "input": { "duration": "1h" }, "timeout": "0.2s" }),
        )
        .await
        .ok();
    let done = env.api.done(&name_of(&stubborn)).await;
    assert_eq!(done["error"]["code"], 4, "{done}");
    assert_eq!(done["metadata"]["stopForced"], true, "{done}");

    // The slot was freed each time (concurrency 1): the next job runs.
    let next = name_of(&env.api.submit("", "noop", json!({})).await);
    assert_eq!(state_of(&env.api.done(&next).await), "SUCCEEDED");
}

/// A job that panics (after an await, as real jobs do) fails its operation with the panic's
/// message; the worker runs on and its slot is free again.
#[tokio::test]
async fn a_panicking_job_fails_its_operation_and_the_worker_runs_on() {
    let mut env = Env::start().await;
    let kinds = Kinds::builtin().kind("boom", |_, ctx| async move {
        ctx.progress(10, "about to panic").await;
        panic!("boom on attempt {}", ctx.attempt())
    });
    env.worker_with(kinds, |c| c.concurrency = 1).await;

    let boom = name_of(&env.api.submit("", "boom", json!({})).await);
    let done = env.api.done(&boom).await;
    assert_eq!(state_of(&done), "FAILED", "{done}");
    assert_eq!(done["error"]["code"], 13, "{done}");
    assert_eq!(
        done["error"]["message"], "job panicked: boom on attempt 1",
        "{done}"
    );

    let next = name_of(&env.api.submit("", "noop", json!({})).await);
    assert_eq!(state_of(&env.api.done(&next).await), "SUCCEEDED");
}

/// RabbitMQ closes a channel whose delivery stays unacked past `consumer_timeout` (30 min by
/// default; 2 s on this private node, checked every 0.5 s). A job longer than that runs on
/// under its lease, the worker reopens its session, the redelivered copy is skipped, and the
/// job finishes once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_longer_than_the_consumer_timeout_finishes_once() {
    let rabbit = PrivateRabbit::start(
        "consumer_timeout = 2000\nloopback_users = none",
        "{channel_tick_interval, 500}",
    )
    .await;
    let amqp = rabbit.url();
    let mut env = Env::start_with(|c| c.connections.amqp_url = amqp.clone()).await;
    let counter = DoneCounter::subscribe(&env).await;
    env.worker_with(Kinds::builtin(), |c| {
        c.connections.amqp_url = amqp.clone();
    })
    .await;

    let input = json!({ "duration": "5s", "steps": 10 });
    let name = name_of(&env.api.submit("", "sleep", input).await);
    let done = env.api.done(&name).await;
    assert_eq!(state_of(&done), "SUCCEEDED", "{done}");
    assert_eq!(done["metadata"]["attempt"], 1, "{done}");
    assert_eq!(counter.counts().await.get(&name), Some(&1));
    // The broker did time the delivery out (and so closed the worker's channel) meanwhile.
    eprintln!("{}", log_lines(&rabbit.log(), "timed out"));
    let log = rabbit.log();
    assert!(
        log.contains("timed out"),
        "no consumer timeout in the broker's log:\n{log}"
    );
}

fn log_lines(log: &str, needle: &str) -> String {
    log.lines()
        .filter(|l| l.contains(needle))
        .collect::<Vec<_>>()
        .join("\n")
}
