//! The optional stricter policy beyond systemd (`--require-chain`): the signer certificate must be
//! valid now, usable for signatures, and issued by a CA certificate from the given CA store, which
//! must itself be a valid CA. Every certificate in the CA store is an anchor, so one step suffices.

use super::trust::{cert_subject, TrustStore};
use super::{SignError, Signer};
use std::time::{SystemTime, UNIX_EPOCH};
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::time::ASN1Time;

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

/// Why this CA certificate cannot issue signing certificates, if it cannot.
fn ca_problem(ca: &X509Certificate, now: i64) -> Option<String> {
    if let Err(e) = check_validity(ca, now) {
        return Some(e.to_string());
    }
    match ca.basic_constraints() {
        Ok(Some(bc)) if bc.value.ca => {}
        Ok(_) => return Some("it is not a CA (basicConstraints CA:TRUE is missing)".into()),
        Err(e) => return Some(format!("bad basicConstraints: {e}")),
    }
    match ca.key_usage() {
        Ok(Some(ku)) if !ku.value.key_cert_sign() => Some("its keyUsage lacks keyCertSign".into()),
        Ok(_) => None,
        Err(e) => Some(format!("bad keyUsage: {e}")),
    }
}

/// Validates `signer` up to a CA in `cas` at time `now`: validity dates and key usage of both, the
/// CA's basicConstraints, and the CA's signature on the signer certificate.
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
    let mut problem = None;
    for ca_der in cas.certs() {
        let Ok((_, ca)) = X509Certificate::from_der(&ca_der.der) else {
            continue;
        };
        if ca.subject().as_raw() != leaf.issuer().as_raw()
            || leaf.verify_signature(Some(ca.public_key())).is_err()
        {
            continue;
        }
        match ca_problem(&ca, now) {
            None => return Ok(()),
            Some(reason) => {
                problem.get_or_insert(SignError::BadIssuer {
                    subject: subject.clone(),
                    issuer: cert_subject(&ca_der.der),
                    reason,
                });
            }
        }
    }
    Err(problem.unwrap_or_else(|| SignError::NoIssuer {
        subject,
        issuer: leaf.issuer().to_string(),
    }))
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
