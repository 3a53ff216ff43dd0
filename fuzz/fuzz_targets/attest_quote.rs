//! Fuzz target: TPMS_ATTEST (the message a TPM quote signs) must never panic, whatever the sizes,
//! selections and magic claim.
#![no_main]

use libfuzzer_sys::fuzz_target;
use verity::attest::quote::QuoteInfo;

fuzz_target!(|data: &[u8]| {
    if let Ok(q) = QuoteInfo::parse(data) {
        assert!(q.extra_data.len() <= 66 && q.pcr_digest.len() <= 64);
        assert!(q.selection.iter().all(|s| s.pcrs.iter().all(|&p| p < 24)));
    }
});
