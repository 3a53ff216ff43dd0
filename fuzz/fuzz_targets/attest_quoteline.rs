//! Fuzz target: Keylime's quote line must never panic; what parses is canonical, so writing it
//! back gives the same line.
#![no_main]

use libfuzzer_sys::fuzz_target;
use verity::attest::quoteline::QuoteParts;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(q) = QuoteParts::parse(s) {
            assert_eq!(q.to_line(), s.strip_suffix('\n').unwrap_or(s));
        }
    }
});
