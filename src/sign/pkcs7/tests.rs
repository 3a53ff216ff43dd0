//! Unit tests for the PKCS#7 envelope: round trips for every key type and the structural refusals.
//! The openssl cross-checks live in tests/sign_openssl.rs.

use super::*;

const ROOT: &str = "4392ae8ed5e7ef8d3d1ff8a2d7b1f04b6e87bd8b6e0c9e06e3b0e5f1f1b5c6d7";

struct Pair {
    name: &'static str,
    key: &'static [u8],
    cert: &'static [u8],
}

const PAIRS: &[Pair] = &[
    Pair {
        name: "rsa2048",
        key: include_bytes!("../../../keys/rsa2048.key"),
        cert: include_bytes!("../../../keys/rsa2048.crt"),
    },
    Pair {
        name: "rsa4096",
        key: include_bytes!("../../../keys/rsa4096.key"),
        cert: include_bytes!("../../../keys/rsa4096.crt"),
    },
    Pair {
        name: "p256",
        key: include_bytes!("../../../keys/p256.key"),
        cert: include_bytes!("../../../keys/p256.crt"),
    },
    Pair {
        name: "p384",
        key: include_bytes!("../../../keys/p384.key"),
        cert: include_bytes!("../../../keys/p384.crt"),
    },
];
const OTHER_KEY: &[u8] = include_bytes!("../../../keys/other.key");
const IMPOSTOR: &[u8] = include_bytes!("../../../keys/impostor.crt");

fn der(pem: &[u8]) -> Vec<u8> {
    super::super::trust::parse_pem_certs(pem).unwrap().remove(0)
}

fn store(pems: &[&[u8]]) -> TrustStore {
    TrustStore::from_certs(pems.iter().map(|p| der(p)).collect())
}

/// A signature from `key` over arbitrary bytes, naming `cert` as signer: what a careless or
/// hostile signer could produce, which `sign_with` itself refuses to make.
fn sign_raw(key: &[u8], cert: &[u8], content: &[u8], embed: bool) -> Vec<u8> {
    let key = SigningKey::from_pem(key).unwrap();
    let cert = der(cert);
    // Start from a valid envelope (the key must match for that, so use the cert's own key check
    // only when it does) and swap in the signature over `content`.
    let (_, c) = X509Certificate::from_der(&cert).unwrap();
    let matching = c.public_key().subject_public_key.data.as_ref() == key.public_key_bytes();
    let base = if matching {
        sign_with(&key, &cert, ROOT, embed).unwrap()
    } else {
        let own = SigningKey::from_pem(PAIRS[0].key).unwrap();
        sign_with(&own, &der(PAIRS[0].cert), ROOT, false).unwrap()
    };
    let ci = ContentInfo::from_der(&base).unwrap();
    let mut sd: SignedData = ci.content.decode_as().unwrap();
    let mut si = sd.signer_infos.0.into_vec().remove(0);
    let x = Certificate::from_der(&cert).unwrap();
    si.sid = SignerIdentifier::IssuerAndSerialNumber(IssuerAndSerialNumber {
        issuer: x.tbs_certificate.issuer.clone(),
        serial_number: x.tbs_certificate.serial_number.clone(),
    });
    si.signature = OctetString::new(key.sign(content).unwrap()).unwrap();
    sd.signer_infos = SignerInfos(SetOfVec::try_from(vec![si]).unwrap());
    if embed {
        sd.certificates = Some(CertificateSet(
            SetOfVec::try_from(vec![CertificateChoices::Certificate(x)]).unwrap(),
        ));
    }
    ContentInfo {
        content_type: OID_SIGNED_DATA,
        content: Any::encode_from(&sd).unwrap(),
    }
    .to_der()
    .unwrap()
}

#[test]
fn every_key_type_round_trips_and_names_its_signer() {
    for p in PAIRS {
        for embed in [false, true] {
            let sig = sign_root_hash(p.key, p.cert, ROOT, embed).unwrap();
            let s = verify_signature(&sig, ROOT.as_bytes(), &store(&[p.cert]))
                .unwrap_or_else(|e| panic!("{} embed={embed}: {e}", p.name));
            let d = der(p.cert);
            assert_eq!(s.cert_der, d);
            assert_eq!(s.fingerprint.as_slice(), HashAlg::Sha256.digest(&d));
            assert_eq!(s.fingerprint_hex().len(), 64);
            assert!(
                s.subject.starts_with("CN=verity TEST-ONLY"),
                "{}",
                s.subject
            );
        }
    }
}

#[test]
fn rsa_signatures_are_deterministic() {
    let a = sign_root_hash(PAIRS[0].key, PAIRS[0].cert, ROOT, false).unwrap();
    let b = sign_root_hash(PAIRS[0].key, PAIRS[0].cert, ROOT, false).unwrap();
    assert_eq!(a, b);
}

#[test]
fn signing_refuses_non_canonical_roots_and_mismatched_keys() {
    for bad in ["", "ABCDEF", "abcdef\n", "abc", "xyz0"] {
        assert_eq!(
            sign_root_hash(PAIRS[0].key, PAIRS[0].cert, bad, false),
            Err(SignError::RootHashNotCanonical(bad.into()))
        );
    }
    let e = sign_root_hash(OTHER_KEY, PAIRS[0].cert, ROOT, false).unwrap_err();
    assert!(matches!(e, SignError::KeyCertMismatch { .. }), "{e}");
}

#[test]
fn structural_refusals() {
    let good = sign_root_hash(PAIRS[0].key, PAIRS[0].cert, ROOT, false).unwrap();
    let trust = store(&[PAIRS[0].cert]);
    let v = |sig: &[u8]| verify_signature(sig, ROOT.as_bytes(), &trust).unwrap_err();
    assert_eq!(v(&[]), SignError::Empty);
    for cut in [1, 2, 10, good.len() / 2, good.len() - 1] {
        assert!(
            matches!(v(&good[..cut]), SignError::Truncated(_)),
            "cut at {cut}: {}",
            v(&good[..cut])
        );
    }
    let mut padded = good.clone();
    padded.extend_from_slice(b"\0\0\0");
    assert_eq!(v(&padded), SignError::TrailingData(3));
    assert!(matches!(
        v(b"\x30\x03\x02\x01\x01"),
        SignError::Malformed(_)
    ));
}

#[test]
fn two_signer_infos_are_refused() {
    let a = sign_root_hash(PAIRS[0].key, PAIRS[0].cert, ROOT, false).unwrap();
    let b = sign_root_hash(PAIRS[2].key, PAIRS[2].cert, ROOT, false).unwrap();
    let mut sd: SignedData = ContentInfo::from_der(&a)
        .unwrap()
        .content
        .decode_as()
        .unwrap();
    let other: SignedData = ContentInfo::from_der(&b)
        .unwrap()
        .content
        .decode_as()
        .unwrap();
    let mut infos = sd.signer_infos.0.into_vec();
    infos.extend(other.signer_infos.0.into_vec());
    sd.signer_infos = SignerInfos(SetOfVec::try_from(infos).unwrap());
    let two = ContentInfo {
        content_type: OID_SIGNED_DATA,
        content: Any::encode_from(&sd).unwrap(),
    }
    .to_der()
    .unwrap();
    let trust = store(&[PAIRS[0].cert, PAIRS[2].cert]);
    assert_eq!(
        verify_signature(&two, ROOT.as_bytes(), &trust),
        Err(SignError::SignerCount(2))
    );
}

#[test]
fn trust_refusals() {
    let embedded = sign_root_hash(PAIRS[0].key, PAIRS[0].cert, ROOT, true).unwrap();
    let bare = sign_root_hash(PAIRS[0].key, PAIRS[0].cert, ROOT, false).unwrap();
    let other_trust = store(&[PAIRS[2].cert]);
    assert_eq!(
        verify_signature(&embedded, ROOT.as_bytes(), &other_trust),
        Err(SignError::EmbeddedOnly {
            subject: "CN=verity TEST-ONLY RSA 2048".into()
        })
    );
    assert_eq!(
        verify_signature(&bare, ROOT.as_bytes(), &other_trust),
        Err(SignError::SignerNotTrusted {
            sid: "issuer CN=verity TEST-ONLY RSA 2048, serial 1001".into()
        })
    );
    assert!(matches!(
        verify_signature(&bare, ROOT.as_bytes(), &TrustStore::default()),
        Err(SignError::SignerNotTrusted { .. })
    ));
}

#[test]
fn content_refusals_say_what_was_signed_instead() {
    let trust = store(&[PAIRS[0].cert]);
    let subject = "CN=verity TEST-ONLY RSA 2048".to_string();
    let cases: Vec<(Vec<u8>, SignError)> = vec![
        (
            ROOT.to_uppercase().into_bytes(),
            SignError::UpperCaseContent {
                subject: subject.clone(),
            },
        ),
        (
            format!("{ROOT}\n").into_bytes(),
            SignError::TrailingNewline {
                subject: subject.clone(),
            },
        ),
        (
            format!("{}\n", ROOT.to_uppercase()).into_bytes(),
            SignError::UpperCaseContent {
                subject: subject.clone(),
            },
        ),
        (
            ROOT.replace('4', "5").into_bytes(),
            SignError::BadSignature {
                subject: subject.clone(),
            },
        ),
    ];
    for (signed, want) in cases {
        let sig = sign_raw(PAIRS[0].key, PAIRS[0].cert, &signed, false);
        assert_eq!(
            verify_signature(&sig, ROOT.as_bytes(), &trust),
            Err(want),
            "signed {:?}",
            String::from_utf8_lossy(&signed)
        );
    }
}

#[test]
fn a_key_that_is_not_the_trusted_certificates_is_named() {
    let trust = store(&[PAIRS[0].cert]);
    // The impostor certificate has rsa2048's issuer and serial but the untrusted key.
    let with_cert = sign_raw(OTHER_KEY, IMPOSTOR, ROOT.as_bytes(), true);
    assert_eq!(
        verify_signature(&with_cert, ROOT.as_bytes(), &trust),
        Err(SignError::WrongKey {
            subject: "CN=verity TEST-ONLY RSA 2048".into(),
            embedded: "CN=verity TEST-ONLY RSA 2048".into(),
        })
    );
    let bare = sign_raw(OTHER_KEY, IMPOSTOR, ROOT.as_bytes(), false);
    assert!(matches!(
        verify_signature(&bare, ROOT.as_bytes(), &trust),
        Err(SignError::BadSignature { .. })
    ));
    // Trusting both certificates with that name: the one whose key verifies wins.
    let both = store(&[PAIRS[0].cert, IMPOSTOR]);
    let s = verify_signature(&bare, ROOT.as_bytes(), &both).unwrap();
    assert_eq!(s.cert_der, der(IMPOSTOR));
}

#[test]
fn every_single_byte_corruption_is_handled_without_panic() {
    // A cheap stand-in for the fuzz target: flip and cut at every position of a signature with an
    // embedded certificate. Nothing may panic; a flip anywhere outside the embedded certificate
    // (which is never used for trust) must be refused.
    let sig = sign_root_hash(PAIRS[2].key, PAIRS[2].cert, ROOT, true).unwrap();
    let cert = der(PAIRS[2].cert);
    let cert_at = sig
        .windows(cert.len())
        .position(|w| w == cert.as_slice())
        .unwrap();
    let trust = store(&[PAIRS[2].cert, PAIRS[0].cert]);
    for i in 0..sig.len() {
        let mut bad = sig.clone();
        bad[i] ^= 0x01;
        let r = verify_signature(&bad, ROOT.as_bytes(), &trust);
        let in_cert = (cert_at..cert_at + cert.len()).contains(&i);
        assert!(in_cert || r.is_err(), "flip at {i} accepted");
        assert!(verify_signature(&sig[..i], ROOT.as_bytes(), &trust).is_err());
    }
}
