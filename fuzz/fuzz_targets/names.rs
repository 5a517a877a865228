//! `OperationName::parse` and `Parent::parse` on arbitrary strings: whatever they accept is the
//! string itself, within the limits, and round-trips through every constructor.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lro_common::name::{MAX_NAME_LEN, OperationName, Parent, check_segment};

fuzz_target!(|s: &str| {
    if let Ok(n) = OperationName::parse(s) {
        assert_eq!(n.as_str(), s);
        assert!(s.len() <= MAX_NAME_LEN, "{s:?} is too long to be a name");
        assert_eq!(OperationName::parse(n.as_str()).as_ref(), Ok(&n));
        assert!(check_segment(n.id()).is_ok(), "{s:?} has a bad id");
        assert_eq!(Parent::parse(n.parent().as_str()).as_ref(), Ok(n.parent()));
        assert_eq!(n.parent().operation(n.id()).as_ref(), Ok(&n));
        let segments: Vec<&str> = s.split('/').collect();
        assert_eq!(OperationName::from_segments(&segments).as_ref(), Ok(&n));
    }
    if let Ok(p) = Parent::parse(s) {
        assert_eq!(p.as_str(), s);
        assert!(s.len() <= MAX_NAME_LEN, "{s:?} is too long to be a parent");
        assert_eq!(Parent::parse(p.as_str()).as_ref(), Ok(&p));
        assert_eq!(p.is_root(), s.is_empty());
        if !p.is_root() {
            let segments: Vec<&str> = s.split('/').collect();
            assert!(segments.len() % 2 == 0, "{s:?} is not pairs");
            assert!(
                segments.iter().all(|seg| check_segment(seg).is_ok()),
                "{s:?}"
            );
            assert_eq!(Parent::from_segments(&segments).as_ref(), Ok(&p));
        }
    }
});
