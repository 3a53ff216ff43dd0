//! Fuzz target: the soft-reboot staging record parser and the init header check must never panic;
//! an accepted record round-trips through its writer.
#![no_main]

use libfuzzer_sys::fuzz_target;
use verity::image::ostree::check_init;
use verity::reboot::plan::StageRecord;

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = StageRecord::parse(data) {
        let again = StageRecord::parse(r.to_json().as_bytes()).expect("a written record parses");
        assert_eq!(again, r);
    }
    let _ = check_init("/sbin/init", 0o100755, data);
});
