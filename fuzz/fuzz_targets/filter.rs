//! The list filter parser on arbitrary strings: it refuses only with 400, and a filter it
//! accepts, written back as text, parses to the same filter.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lro_api::fuzzing;

fuzz_target!(|s: &str| {
    match fuzzing::filter(s) {
        Ok(f) => {
            let printed = fuzzing::print_filter(&f);
            let again = fuzzing::filter(&printed);
            assert_eq!(
                again.as_ref().ok(),
                Some(&f),
                "{s:?} printed as {printed:?}: {again:?}"
            );
        }
        Err(e) => assert_eq!(e.code.http_status(), 400, "{s:?}: {e:?}"),
    }
});
