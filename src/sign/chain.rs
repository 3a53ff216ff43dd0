//! The optional stricter policy beyond systemd (`--require-chain`): the signer certificate must be
//! valid now, usable for signatures, and issued by a CA certificate from the given CA store, which
//! must itself be a valid CA. Every certificate in the CA store is an anchor: the chain ends at the
//! first store certificate that has no issuer in the store, or at a self-issued one. Where the store
//! also holds the issuer of an intermediate, the path goes on up to it, and every certificate on the
//! path is held to the same rules:
//!
//! - no SHA-1 (or MD5/MD2) signature, including a root's self-signature and RSASSA-PSS with SHA-1;
//! - no RSA key under 2048 bits;
//! - no critical extension this code does not know (RFC 5280 4.2: a certificate with an
//!   unrecognised critical extension must be rejected); known are basicConstraints, keyUsage,
//!   extKeyUsage, subjectAltName and the key identifiers;
//! - CAs carry basicConstraints CA:TRUE, keyCertSign where keyUsage is present, and a path length
//!   that allows the intermediates below them.
//!
//! `openssl verify -auth_level 2` agrees on SHA-1 and key sizes (its default level 1 still accepts
//! SHA-1 certificates); any level refuses unknown critical extensions.

use super::trust::{cert_subject, TrustStore};
use super::{SignError, Signer};
use std::time::{SystemTime, UNIX_EPOCH};
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::public_key::PublicKey;
use x509_parser::signature_algorithm::SignatureAlgorithm;
use x509_parser::time::ASN1Time;

/// Longest path from the signer to an anchor; a store that loops (cross-signed CAs) stops here.
const MAX_DEPTH: usize = 8;
/// The smallest RSA modulus accepted anywhere in a chain.
const MIN_RSA_BITS: usize = 2048;

/// Signature algorithms built on digests that no longer resist collisions.
const WEAK_SIGNATURES: &[(&str, &str)] = &[
    ("1.2.840.113549.1.1.5", "sha1WithRSAEncryption"),
    ("1.3.14.3.2.29", "sha1WithRSA (OIW)"),
    ("1.2.840.10045.4.1", "ecdsa-with-SHA1"),
    ("1.2.840.10040.4.3", "dsa-with-sha1"),
    ("1.2.840.113549.1.1.4", "md5WithRSAEncryption"),
    ("1.2.840.113549.1.1.2", "md2WithRSAEncryption"),
];
const OID_SHA1: &str = "1.3.14.3.2.26";

/// Extensions whose criticality this code honours: it either processes them (basicConstraints,
/// keyUsage) or they do not restrict what a root-hash signature may be used for.
const KNOWN_CRITICAL: &[(&str, &str)] = &[
    ("2.5.29.19", "basicConstraints"),
    ("2.5.29.15", "keyUsage"),
    ("2.5.29.37", "extKeyUsage"),
    ("2.5.29.17", "subjectAltName"),
    ("2.5.29.14", "subjectKeyIdentifier"),
    ("2.5.29.35", "authorityKeyIdentifier"),
];

fn check_validity(c: &X509Certificate, now: i64) -> Result<(), SignError> {
    let subject = c.subject().to_string();
    let v = c.validity();
    if now < v.not_before.timestamp() {
        return Err(SignError::NotYetValid {
            subject,
            not_before: v.not_before.to_string(),
        });
    }
    if now > v.not_after.timestamp() {
        return Err(SignError::Expired {
            subject,
            not_after: v.not_after.to_string(),
        });
    }
    Ok(())
}

fn unix_seconds(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    }
}

/// Why the algorithm `c` was signed with is refused, if it is.
fn weak_signature(c: &X509Certificate) -> Option<String> {
    let alg = &c.signature_algorithm;
    let oid = alg.algorithm.to_id_string();
    if let Some((_, name)) = WEAK_SIGNATURES.iter().find(|(o, _)| *o == oid) {
        return Some(format!(
            "it is signed with {name} ({oid}); SHA-1 and older digests are refused"
        ));
    }
    if let Ok(SignatureAlgorithm::RSASSA_PSS(p)) = SignatureAlgorithm::try_from(alg) {
        if p.hash_algorithm_oid().to_id_string() == OID_SHA1 {
            return Some("it is signed with RSASSA-PSS over SHA-1; SHA-1 is refused".into());
        }
    }
    None
}

/// Why the key or the extensions of `c` are refused, if they are.
fn weak_cert(c: &X509Certificate) -> Option<String> {
    if let Ok(PublicKey::RSA(k)) = c.public_key().parsed() {
        let bits = k.key_size();
        if bits < MIN_RSA_BITS {
            return Some(format!(
                "its RSA key has {bits} bits; at least {MIN_RSA_BITS} are required"
            ));
        }
    }
    for ext in c.extensions().iter().filter(|e| e.critical) {
        let oid = ext.oid.to_id_string();
        if !KNOWN_CRITICAL.iter().any(|(o, _)| *o == oid) {
            return Some(format!(
                "it has the critical extension {oid}, which this verifier does not know (RFC 5280 \
                 4.2 requires refusing it)"
            ));
        }
    }
    None
}

fn weak(c: &X509Certificate) -> Result<(), SignError> {
    match weak_cert(c).or_else(|| weak_signature(c)) {
        None => Ok(()),
        Some(reason) => Err(SignError::WeakCert {
            subject: c.subject().to_string(),
            reason,
        }),
    }
}

/// Why `ca` cannot issue a certificate with `below` CA certificates between it and the signer.
fn ca_problem(ca: &X509Certificate, now: i64, below: usize) -> Option<String> {
    if let Err(e) = check_validity(ca, now) {
        return Some(e.to_string());
    }
    match ca.basic_constraints() {
        Ok(Some(bc)) if bc.value.ca => {
            if let Some(max) = bc.value.path_len_constraint {
                if below > max as usize {
                    return Some(format!(
                        "its pathLenConstraint {max} allows fewer intermediates than the {below} \
                         below it"
                    ));
                }
            }
        }
        Ok(_) => return Some("it is not a CA (basicConstraints CA:TRUE is missing)".into()),
        Err(e) => return Some(format!("bad basicConstraints: {e}")),
    }
    match ca.key_usage() {
        Ok(Some(ku)) if !ku.value.key_cert_sign() => Some("its keyUsage lacks keyCertSign".into()),
        Ok(_) => None,
        Err(e) => Some(format!("bad keyUsage: {e}")),
    }
}

/// Whether `ca` issued `child` and may have: key strength, extensions, the algorithm `child` is
/// signed with, the signature itself, then the CA's own fields.
fn link_problem(
    child: &X509Certificate,
    ca: &X509Certificate,
    now: i64,
    below: usize,
) -> Option<String> {
    if let Some(r) = weak_cert(ca) {
        return Some(r);
    }
    if let Some(r) = weak_signature(child) {
        return Some(format!("{}: {r}", child.subject()));
    }
    if child.verify_signature(Some(ca.public_key())).is_err() {
        return Some(format!(
            "its key does not verify the signature on {}",
            child.subject()
        ));
    }
    ca_problem(ca, now, below)
}

/// Validates `signer` up to an anchor in `cas` at time `now` (see the module docs).
pub fn verify_chain(signer: &Signer, cas: &TrustStore, now: SystemTime) -> Result<(), SignError> {
    let now = unix_seconds(now);
    // Make sure the ASN.1 time conversion accepts the clock value before comparing with it.
    ASN1Time::from_timestamp(now).map_err(|e| SignError::Cert(format!("clock: {e}")))?;
    let (_, leaf) =
        X509Certificate::from_der(&signer.cert_der).map_err(|e| SignError::Cert(e.to_string()))?;
    let subject = leaf.subject().to_string();
    check_validity(&leaf, now)?;
    match leaf.key_usage() {
        Ok(Some(ku)) if !ku.value.digital_signature() => {
            return Err(SignError::NotForSigning { subject })
        }
        Ok(_) => {}
        Err(e) => return Err(SignError::Cert(format!("{subject}: bad keyUsage: {e}"))),
    }
    weak(&leaf)?;
    let store: Vec<(&[u8], X509Certificate)> = cas
        .certs()
        .iter()
        .filter_map(|c| {
            X509Certificate::from_der(&c.der)
                .ok()
                .map(|(_, x)| (c.der.as_slice(), x))
        })
        .collect();
    let mut child = &leaf;
    for below in 0..MAX_DEPTH {
        let mut problem = None;
        let mut issuer = None;
        for (der, ca) in store
            .iter()
            .filter(|(_, ca)| ca.subject().as_raw() == child.issuer().as_raw())
        {
            match link_problem(child, ca, now, below) {
                None => {
                    issuer = Some(ca);
                    break;
                }
                Some(reason) => {
                    problem.get_or_insert(SignError::BadIssuer {
                        subject: child.subject().to_string(),
                        issuer: cert_subject(der),
                        reason,
                    });
                }
            }
        }
        let Some(ca) = issuer else {
            // The signer needs an issuer in the store; a store certificate is an anchor itself.
            return match problem {
                Some(p) => Err(p),
                None if below == 0 => Err(SignError::NoIssuer {
                    subject,
                    issuer: leaf.issuer().to_string(),
                }),
                None => Ok(()),
            };
        };
        if ca.subject().as_raw() == ca.issuer().as_raw() {
            // A root: its self-signature is part of what the chain shows, so it is held to the
            // same algorithm rule (openssl does not check it; being stricter here costs nothing).
            return weak(ca);
        }
        child = ca;
    }
    Err(SignError::BadIssuer {
        subject,
        issuer: child.subject().to_string(),
        reason: format!("no anchor within {MAX_DEPTH} certificates (does the CA store loop?)"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sign::cert_from_pem;
    use std::time::Duration;

    fn signer(pem: &[u8]) -> Signer {
        let der = cert_from_pem(pem).unwrap();
        Signer {
            fingerprint: [0; 32],
            subject: cert_subject(&der),
            cert_der: der,
        }
    }

    fn at(unix: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(unix)
    }

    const LEAF: &[u8] = include_bytes!("../../keys/leaf.crt");
    const EXPIRED: &[u8] = include_bytes!("../../keys/expired.crt");
    const CA: &[u8] = include_bytes!("../../keys/ca.crt");
    const RSA: &[u8] = include_bytes!("../../keys/rsa2048.crt");
    // 2030-01-01, inside the leaf's and the CA's validity; 2019-01-01, before both.
    const Y2030: u64 = 1_893_456_000;
    const Y2019: u64 = 1_546_300_800;

    fn cas(pems: &[&[u8]]) -> TrustStore {
        TrustStore::from_certs(pems.iter().map(|p| cert_from_pem(p).unwrap()).collect())
    }

    #[test]
    fn chain_verdicts() {
        let ca = cas(&[CA]);
        assert_eq!(verify_chain(&signer(LEAF), &ca, at(Y2030)), Ok(()));
        let cases: Vec<(&[u8], TrustStore, u64, &str)> = vec![
            (EXPIRED, cas(&[CA]), Y2030, "expired at"),
            (LEAF, cas(&[CA]), Y2019, "is not valid before"),
            (
                RSA,
                cas(&[CA]),
                Y2030,
                "no CA certificate in the CA directories issued",
            ),
            (LEAF, cas(&[RSA]), Y2030, "no CA certificate"),
            (RSA, cas(&[RSA]), Y2030, "it is not a CA"),
        ];
        for (cert, store, now, want) in cases {
            let e = verify_chain(&signer(cert), &store, at(now))
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{e:?} lacks {want:?}");
        }
    }
}
