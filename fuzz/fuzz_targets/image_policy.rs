//! Fuzz target: the image-policy parser must never panic, and what it accepts must print to a
//! string that parses back to the same policy.
#![no_main]

use libfuzzer_sys::fuzz_target;
use verity::image::policy::Policy;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(p) = Policy::parse(s) {
            let again = Policy::parse(&p.to_string()).expect("a printed policy parses");
            assert_eq!(again, p);
        }
    }
});
