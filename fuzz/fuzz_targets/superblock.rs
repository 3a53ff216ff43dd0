//! Fuzz target: the veritysetup superblock parser must never panic, and what it accepts must
//! round-trip through the writer.
#![no_main]

use libfuzzer_sys::fuzz_target;
use verity::verity::Superblock;

fuzz_target!(|data: &[u8]| {
    if let Ok(sb) = Superblock::parse(data) {
        let again = Superblock::parse(&sb.to_bytes()).expect("a written superblock parses");
        assert_eq!(again, sb);
    }
});
