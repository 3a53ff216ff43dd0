//! Fuzz target: TPM2B_PUBLIC (an AK as `tpm2_createak -u` and Keylime's `aik_tpm` carry it) must
//! never panic; what parses marshals back to the same bytes and has a name.
#![no_main]

use libfuzzer_sys::fuzz_target;
use verity::attest::public::TpmPublic;

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = TpmPublic::parse(data) {
        assert_eq!(p.to_tpm2b(), data);
        assert_eq!(p.name().len(), 2 + p.name_alg.digest_size());
        let _ = p.is_restricted_signer();
        let _ = p.describe();
    }
});
