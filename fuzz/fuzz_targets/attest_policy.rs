//! Fuzz target: a Keylime tpm_policy must never panic; what parses is never empty and its
//! canonical JSON parses to the same policy.
#![no_main]

use libfuzzer_sys::fuzz_target;
use verity::attest::policy::PcrPolicy;

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = PcrPolicy::parse(data) {
        assert!(!p.pcrs.is_empty() && p.pcrs.values().all(|v| !v.is_empty()));
        let again = PcrPolicy::parse(p.to_json().as_bytes()).expect("canonical JSON parses");
        assert_eq!(again, p);
    }
});
