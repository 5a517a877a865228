//! Listing: per-parent collections, filters, and paging that walks every operation exactly once.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::{Api, Env, Probe, encode, eventually, name_of, state_of};

/// Walks every page of `collection` with `query`, returning the names in order.
async fn walk(api: &Api, collection: &str, query: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut token = String::new();
    for _ in 0..100 {
        let q = if token.is_empty() {
            query.to_owned()
        } else {
            format!("{query}&pageToken={token}")
        };
        let page = api.list(collection, &q).await.ok();
        let keys: HashSet<&str> = page
            .as_object()
            .expect("object")
            .keys()
            .map(String::as_str)
            .collect();
        assert!(
            keys.is_subset(&HashSet::from(["operations", "nextPageToken"])),
            "{page}"
        );
        for op in page["operations"].as_array().into_iter().flatten() {
            names.push(name_of(op));
        }
        match page.get("nextPageToken").and_then(Value::as_str) {
            Some(t) => {
                assert!(!t.is_empty());
                token = t.to_owned();
            }
            None => return names,
        }
    }
    panic!("more than 100 pages");
}

#[tokio::test]
async fn paging_walks_every_operation_of_a_parent_exactly_once() {
    let (env, _probe) = Env::with_worker(4).await;

    let mut mine = Vec::new();
    for i in 0..7 {
        let kind = if i % 2 == 0 { "noop" } else { "fail" };
        mine.push(name_of(
            &env.api.submit("projects/p", kind, json!({})).await,
        ));
    }
    // Operations elsewhere never show up under projects/p.
    let other = name_of(&env.api.submit("projects/q", "noop", json!({})).await);
    let top = name_of(&env.api.submit("", "noop", json!({})).await);
    for name in mine.iter().chain([&other, &top]) {
        env.api.done(name).await;
    }

    for size in [1, 2, 3, 7, 50] {
        let walked = walk(
            &env.api,
            "projects/p/operations",
            &format!("pageSize={size}"),
        )
        .await;
        assert_eq!(walked, mine, "pageSize {size}: oldest first, each once");
    }
    // snake_case parameters, and the top-level collection.
    let walked = walk(&env.api, "projects/p/operations", "page_size=4").await;
    assert_eq!(walked, mine);
    assert_eq!(walk(&env.api, "operations", "").await, vec![top.clone()]);
    assert_eq!(
        walk(&env.api, "projects/q/operations", "").await,
        vec![other]
    );
    // An empty collection is an empty object.
    assert_eq!(
        env.api.list("projects/none/operations", "").await.ok(),
        json!({})
    );
}

#[tokio::test]
async fn filters_select_by_done_state_and_kind() {
    let (env, probe) = Env::with_worker(4).await;

    let noop = name_of(&env.api.submit("projects/p", "noop", json!({})).await);
    let fail = name_of(&env.api.submit("projects/p", "fail", json!({})).await);
    let gate = name_of(&env.api.submit("projects/p", "gate", json!({})).await);
    env.api.done(&noop).await;
    env.api.done(&fail).await;
    probe.started(&gate).await;

    let cases: [(&str, Vec<&String>); 7] = [
        ("done=true", vec![&noop, &fail]),
        ("done = false", vec![&gate]),
        ("metadata.state=SUCCEEDED", vec![&noop]),
        ("metadata.state=RUNNING", vec![&gate]),
        ("metadata.kind=\"fail\"", vec![&fail]),
        ("done=true AND metadata.kind=\"noop\"", vec![&noop]),
        ("done=false AND metadata.kind=\"noop\"", vec![]),
    ];
    for (filter, want) in cases {
        let got = walk(
            &env.api,
            "projects/p/operations",
            &format!("pageSize=1&filter={}", encode(filter)),
        )
        .await;
        let want: Vec<String> = want.into_iter().cloned().collect();
        assert_eq!(got, want, "filter {filter}");
    }
    probe.release(&gate);
    env.api.done(&gate).await;
}

#[tokio::test]
async fn bad_list_requests_are_invalid_argument() {
    let env = Env::start().await;
    for _ in 0..3 {
        env.api.submit("projects/p", "noop", json!({})).await;
    }
    let first = env
        .api
        .list("projects/p/operations", "pageSize=1")
        .await
        .ok();
    let token = first["nextPageToken"].as_str().expect("token").to_owned();

    let bad = [
        "pageSize=-1".to_owned(),
        "pageSize=abc".to_owned(),
        "pageToken=garbage".to_owned(),
        format!("pageToken={}x", &token[..token.len() - 1]),
        "filter=bogus%3D1".to_owned(),
        "filter=done%3Dmaybe".to_owned(),
        "filter=metadata.state%3DSLEEPY".to_owned(),
        // A token is bound to the filter and the collection it came from.
        format!("pageToken={token}&filter=done%3Dtrue"),
    ];
    for query in &bad {
        env.api
            .list("projects/p/operations", query)
            .await
            .error(400, "INVALID_ARGUMENT");
    }
    env.api
        .list("projects/q/operations", &format!("pageToken={token}"))
        .await
        .error(400, "INVALID_ARGUMENT");
    // pageSize above the maximum is clamped, not refused.
    let all = env
        .api
        .list("projects/p/operations", "pageSize=100000")
        .await
        .ok();
    assert_eq!(all["operations"].as_array().map(Vec::len), Some(3));
}

#[tokio::test]
async fn delete_of_a_running_operation_does_not_cancel_it_or_come_back() {
    let mut env = Env::start().await;
    let probe = Probe::default();
    // Concurrency 1: the next job starts only after this one is settled and acked.
    env.worker(probe.kinds(), 1).await;

    let name = name_of(&env.api.submit("projects/p", "gate", json!({})).await);
    probe.started(&name).await;
    assert_eq!(env.api.delete(&name).await.ok(), json!({}));
    env.api.get(&name).await.error(404, "NOT_FOUND");
    env.api.delete(&name).await.error(404, "NOT_FOUND");
    env.api.cancel(&name).await.error(404, "NOT_FOUND");

    // The job was not cancelled: its token never fired. Let it finish.
    assert_eq!(probe.seen(&name).stopped, None);
    probe.release(&name);
    let next = name_of(&env.api.submit("projects/p", "noop", json!({})).await);
    env.api.done(&next).await;

    // Its completion did not bring the record back, in get or in list.
    env.api.get(&name).await.error(404, "NOT_FOUND");
    assert_eq!(
        walk(&env.api, "projects/p/operations", "").await,
        vec![next.clone()]
    );

    // Deleting a done operation removes it from the list too.
    env.api.delete(&next).await.ok();
    assert_eq!(
        env.api.list("projects/p/operations", "").await.ok(),
        json!({})
    );
}

#[tokio::test]
async fn done_operations_are_deleted_after_their_retention_and_indexes_follow() {
    let mut env = Env::start_with(|c| c.retention = Duration::from_millis(300)).await;
    let probe = Probe::default();
    env.worker(probe.kinds(), 4).await;

    // A long-running operation older than the retention is kept: retention counts from the end.
    let running = name_of(&env.api.submit("projects/p", "gate", json!({})).await);
    probe.started(&running).await;
    let body = json!({ "kind": "noop", "requestId": "r-1" });
    let done = name_of(&env.api.submit_with("projects/p", body.clone()).await.ok());
    env.api.done(&done).await;

    eventually("the done operation is deleted", || async {
        (env.api.get(&done).await.status == 404).then_some(())
    })
    .await;
    assert_eq!(
        walk(&env.api, "projects/p/operations", "").await,
        vec![running.clone()]
    );
    // Its request id is free again: the same request makes a new operation.
    let again = name_of(&env.api.submit_with("projects/p", body).await.ok());
    assert_ne!(again, done);

    // The running one outlived the retention (it was created before the other) and is kept
    // until it has been done for a retention.
    assert_eq!(state_of(&env.api.get(&running).await.ok()), "RUNNING");
    probe.release(&running);
    env.api.done(&running).await;
    eventually("the finished operation is deleted", || async {
        (env.api.get(&running).await.status == 404).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_page_merges_the_buckets_however_unevenly_they_fill() {
    // 60 operations in one bucket (their request ids chosen so) and 3 in others: every page of
    // 50 still comes back whole and in id order.
    let env = Env::start().await;
    let parent = lro_common::name::Parent::parse("projects/skew").expect("parent");
    let bucket = |r: &str| lro_common::store::Bucket::of_request(&parent, r);
    let full = bucket("r-0");
    let (mut same, mut other) = (Vec::new(), Vec::new());
    for i in 0.. {
        let r = format!("r-{i}");
        if bucket(&r) == full {
            same.push(r);
        } else if other.len() < 3 {
            other.push(r);
        }
        if same.len() == 60 && other.len() == 3 {
            break;
        }
    }
    let mut created = Vec::new();
    for r in same.iter().chain(&other) {
        let body = json!({ "kind": "noop", "input": {}, "requestId": r });
        let op = env.api.submit_with("projects/skew", body).await.ok();
        created.push(name_of(&op));
    }
    created.sort();
    let walked = walk(&env.api, "projects/skew/operations", "pageSize=50").await;
    assert_eq!(walked, created);
}
