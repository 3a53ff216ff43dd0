//! Fuzz target: the `.roothash` sidecar parser. It never panics; what it accepts is at least 16
//! bytes and is exactly the hex text it was given (so a root hash cannot be read differently from
//! how `veritysetup` and systemd read the same file).
#![no_main]

use libfuzzer_sys::fuzz_target;
use verity::image::sidecar::parse_roothash;

fuzz_target!(|data: &[u8]| {
    if let Ok(h) = parse_roothash(data) {
        assert!(h.len() >= 16);
        let text = std::str::from_utf8(data).unwrap().trim();
        assert_eq!(verity::hex::encode(&h), text.to_ascii_lowercase());
    }
});
