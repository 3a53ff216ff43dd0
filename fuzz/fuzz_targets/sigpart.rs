//! Fuzz target: the signature-partition JSON parser must never panic, and what it accepts must
//! round-trip through the writer.
#![no_main]

use libfuzzer_sys::fuzz_target;
use verity::image::sigpart::{parse, to_partition};

fuzz_target!(|data: &[u8]| {
    if let Ok(sp) = parse(data) {
        let again = parse(&to_partition(&sp, 4096)).expect("a written partition parses");
        assert_eq!(again, sp);
    }
});
