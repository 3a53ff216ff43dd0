//! Fuzz target: the tpm2-tools serialized PCR values sent beside a quote must never panic; what
//! parses is rebuilt to bytes that parse to the same values.
#![no_main]

use libfuzzer_sys::fuzz_target;
use verity::attest::pcrblob::PcrValues;

fuzz_target!(|data: &[u8]| {
    if let Ok(v) = PcrValues::parse(data) {
        let again = PcrValues::parse(&PcrValues::build(&v.values)).expect("a built blob parses");
        assert_eq!(again.values, v.values);
    }
});
