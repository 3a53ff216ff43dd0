//! Fuzz target: the rollback state-file parser (`/var/lib/verity/rollback.json`) must never panic;
//! whatever it accepts survives its writer unchanged, and the decision against each accepted
//! floor is total.
#![no_main]

use libfuzzer_sys::fuzz_target;
use verity::rollback::decide::{decide, Evidence};
use verity::rollback::Floors;

fuzz_target!(|data: &[u8]| {
    if let Ok(f) = Floors::parse(data) {
        let again = Floors::parse(&f.to_json()).expect("a written state file parses");
        assert_eq!(again, f);
        for (_, name, floor) in f.iter() {
            let ev = Evidence {
                version: Some(name),
                epoch: Some(floor),
            };
            let _ = decide(&ev, Some(floor), Some(1));
            // A version always meets a floor equal to itself.
            let same = Evidence {
                version: Some(floor),
                epoch: None,
            };
            assert!(decide(&same, Some(floor), None).is_ok());
        }
    }
});
