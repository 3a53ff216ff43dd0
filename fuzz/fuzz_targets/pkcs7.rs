//! Fuzz target: the PKCS#7 root-hash signature parser and verifier must never panic on untrusted
//! bytes, whatever the trust store holds, and must never accept a signature it did not check.
#![no_main]

use libfuzzer_sys::fuzz_target;
use verity::sign::{cert_from_pem, verify_signature, TrustStore};

const CERTS: &[&[u8]] = &[
    include_bytes!("../../keys/rsa2048.crt"),
    include_bytes!("../../keys/p256.crt"),
    include_bytes!("../../keys/p384.crt"),
];
const ROOT: &[u8] = b"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fuzz_target!(|data: &[u8]| {
    let trust = TrustStore::from_certs(CERTS.iter().map(|c| cert_from_pem(c).unwrap()).collect());
    // Nobody holds these keys' signatures over ROOT in the corpus unless the fuzzer found them in
    // a seed, so acceptance is only possible for a genuine signature: check it is well-formed.
    if let Ok(signer) = verify_signature(data, ROOT, &trust) {
        assert!(trust.certs().iter().any(|c| c.der == signer.cert_der));
    }
    let _ = verify_signature(data, &data[..data.len().min(64)], &TrustStore::default());
});
