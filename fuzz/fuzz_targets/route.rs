//! `Route::parse` on a method (first byte) and the raw path after `/v1/`. It must only refuse
//! with 400 or 404, and every route it accepts must hold names that round-trip and lead back to
//! the same route when written out again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lro_api::fuzzing::{self, Route};
use lro_common::name::{OperationName, Parent};

fuzz_target!(|data: &[u8]| {
    let Some((&method, rest)) = data.split_first() else {
        return;
    };
    let Ok(raw) = std::str::from_utf8(rest) else {
        return;
    };
    let (method_name, routed) = fuzzing::route(method, raw);
    let route = match routed {
        Ok(route) => route,
        Err(e) => {
            let status = e.code.http_status();
            assert!(
                status == 400 || status == 404,
                "{raw:?} refused with {status}: {e:?}"
            );
            return;
        }
    };
    // Written back: names are made of unreserved characters only, so they need no encoding.
    let (expected_method, path) = match &route {
        Route::Submit(p) => ("POST", under(p, "jobs")),
        Route::List(p) => ("GET", under(p, "operations")),
        Route::Get(n) => ("GET", n.as_str().to_owned()),
        Route::Delete(n) => ("DELETE", n.as_str().to_owned()),
        Route::Cancel(n) => ("POST", format!("{n}:cancel")),
        Route::Wait(n) => ("POST", format!("{n}:wait")),
    };
    assert_eq!(method_name, expected_method, "{raw:?} → {route:?}");
    match &route {
        Route::Submit(p) | Route::List(p) => {
            assert_eq!(Parent::parse(p.as_str()).as_ref(), Ok(p), "{raw:?}");
        }
        Route::Get(n) | Route::Delete(n) | Route::Cancel(n) | Route::Wait(n) => {
            assert_eq!(OperationName::parse(n.as_str()).as_ref(), Ok(n), "{raw:?}");
            assert_eq!(Parent::parse(n.parent().as_str()).as_ref(), Ok(n.parent()));
        }
    }
    let again = fuzzing::route(method, &path).1;
    assert_eq!(
        again.ok().as_ref(),
        Some(&route),
        "{raw:?} written back as {path:?}"
    );
});

fn under(parent: &Parent, collection: &str) -> String {
    if parent.is_root() {
        collection.to_owned()
    } else {
        format!("{parent}/{collection}")
    }
}
