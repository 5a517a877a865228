//! Page tokens. First byte even: an arbitrary token read for a fixed parent and filter — it must
//! be refused with 400 or name an id that is a valid segment. Odd: the rest is an id, a filter and
//! a parent separated by NULs; the token made for them reads back as the id exactly when the id
//! is a valid segment, and never for another parent or filter.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lro_api::fuzzing;
use lro_common::name::{Parent, check_segment};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let Ok(rest) = std::str::from_utf8(rest) else {
        return;
    };
    if mode % 2 == 0 {
        let parent = Parent::parse("projects/p").expect("a valid parent");
        let filter = "done = true";
        match fuzzing::read_page_token(rest, &parent, filter) {
            Ok(id) => {
                assert!(check_segment(&id).is_ok(), "{rest:?} → {id:?}");
                let token = fuzzing::page_token(&id, &parent, filter);
                assert_eq!(
                    fuzzing::read_page_token(&token, &parent, filter).ok(),
                    Some(id)
                );
            }
            Err(e) => assert_eq!(e.code.http_status(), 400, "{rest:?}: {e:?}"),
        }
        return;
    }
    let mut parts = rest.splitn(3, '\0');
    let id = parts.next().unwrap_or_default();
    let filter = parts.next().unwrap_or_default();
    let parent = Parent::parse(parts.next().unwrap_or_default()).unwrap_or_default();
    let token = fuzzing::page_token(id, &parent, filter);
    let read = fuzzing::read_page_token(&token, &parent, filter);
    if check_segment(id).is_ok() {
        assert_eq!(
            read.as_deref().ok(),
            Some(id),
            "{id:?} {filter:?} {parent:?}: {read:?}"
        );
    } else {
        assert!(read.is_err(), "token for bad id {id:?} accepted");
    }
    let other_filter = format!("{filter} ");
    assert!(fuzzing::read_page_token(&token, &parent, &other_filter).is_err());
    let other_parent = if parent.is_root() {
        Parent::parse("projects/p").expect("a valid parent")
    } else {
        Parent::root()
    };
    assert!(fuzzing::read_page_token(&token, &other_parent, filter).is_err());
});
