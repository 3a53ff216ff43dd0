//! The PKCS#7 `SignedData` envelope, built and parsed with the RustCrypto `cms`/`der` types.
//!
//! Built in the form the kernel and `openssl smime -nocerts -noattr -binary` use: version 1, one
//! digest algorithm, detached id-data content, one SignerInfo by issuer and serial, no signed
//! attributes, the signature directly over the content. Parsing accepts what openssl and systemd
//! produce on top of that: signed attributes (then messageDigest must match the content and the
//! signature covers their DER), embedded certificates, subject-key-identifier signers.

use super::keys::{
    SigningKey, OID_ECDSA_SHA256, OID_ECDSA_SHA384, OID_EC_PUBLIC_KEY, OID_P256, OID_P384, OID_RSA,
    OID_SHA256, OID_SHA384, OID_SHA512,
};
use super::trust::{cert_from_pem, cert_subject, TrustStore};
use super::{SignError, Signer};
use crate::digest::HashAlg;
use crate::hex;
use cms::cert::x509::Certificate;
use cms::cert::{CertificateChoices, IssuerAndSerialNumber};
use cms::content_info::{CmsVersion, ContentInfo};
use cms::signed_data::{
    CertificateSet, EncapsulatedContentInfo, SignedData, SignerIdentifier, SignerInfo, SignerInfos,
};
use der::asn1::{ObjectIdentifier, OctetString, SetOfVec};
use der::{Any, Decode, Encode, ErrorKind, Header, Reader, SliceReader};
use ring::signature::{self, VerificationAlgorithm};
use spki::AlgorithmIdentifierOwned;
use x509_parser::prelude::{FromDer, X509Certificate};

const OID_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.1");
const OID_SIGNED_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.2");
const OID_CONTENT_TYPE: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.3");
const OID_MESSAGE_DIGEST: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.4");
const OID_ECDSA_SHA512: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.4");
const OID_RSA_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.11");
const OID_RSA_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.12");
const OID_RSA_SHA512: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.13");

/// Digests nobody should sign root hashes with, named so the refusal says which one was found.
const WEAK_DIGESTS: &[(&str, &str)] = &[
    ("1.2.840.113549.2.5", "md5"),
    ("1.2.840.113549.2.2", "md2"),
    ("1.3.14.3.2.26", "sha1"),
    ("2.16.840.1.101.3.4.2.4", "sha224"),
];

fn der_err(e: der::Error) -> SignError {
    match e.kind() {
        ErrorKind::Incomplete { .. } => SignError::Truncated(e.to_string()),
        ErrorKind::TrailingData { remaining, .. } => {
            SignError::TrailingData(u32::from(remaining).into())
        }
        _ => SignError::Malformed(e.to_string()),
    }
}

fn alg_id(oid: ObjectIdentifier, null_params: bool) -> AlgorithmIdentifierOwned {
    AlgorithmIdentifierOwned {
        oid,
        parameters: null_params.then(Any::null),
    }
}

fn is_lower_hex(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
}

/// Signs the lower-case hex root hash `root_hex` with a PEM key and certificate; see [`sign_with`].
pub fn sign_root_hash(
    key_pem: &[u8],
    cert_pem: &[u8],
    root_hex: &str,
    embed_cert: bool,
) -> Result<Vec<u8>, SignError> {
    let key = SigningKey::from_pem(key_pem)?;
    sign_with(&key, &cert_from_pem(cert_pem)?, root_hex, embed_cert)
}

/// Builds the detached DER SignedData over `root_hex` (which must already be lower-case hex
/// without newline: that string, and only that, is what the kernel checks). `embed_cert` adds the
/// certificate, as systemd-repart does; without it, RSA output equals openssl's `-nocerts -noattr`.
pub fn sign_with(
    key: &SigningKey,
    cert_der: &[u8],
    root_hex: &str,
    embed_cert: bool,
) -> Result<Vec<u8>, SignError> {
    if !root_hex.len().is_multiple_of(2) || !is_lower_hex(root_hex.as_bytes()) {
        return Err(SignError::RootHashNotCanonical(root_hex.to_string()));
    }
    let cert = Certificate::from_der(cert_der).map_err(|e| SignError::Cert(e.to_string()))?;
    let spki = &cert.tbs_certificate.subject_public_key_info;
    if spki.subject_public_key.raw_bytes() != key.public_key_bytes() {
        return Err(SignError::KeyCertMismatch {
            subject: cert.tbs_certificate.subject.to_string(),
        });
    }
    let digest_alg = alg_id(key.digest_oid(), true);
    let (sig_oid, sig_null) = key.signature_oid();
    let signature = key.sign(root_hex.as_bytes())?;
    let enc = |e: der::Error| SignError::Malformed(format!("encoding: {e}"));
    let signer = SignerInfo {
        version: CmsVersion::V1,
        sid: SignerIdentifier::IssuerAndSerialNumber(IssuerAndSerialNumber {
            issuer: cert.tbs_certificate.issuer.clone(),
            serial_number: cert.tbs_certificate.serial_number.clone(),
        }),
        digest_alg: digest_alg.clone(),
        signed_attrs: None,
        signature_algorithm: alg_id(sig_oid, sig_null),
        signature: OctetString::new(signature).map_err(enc)?,
        unsigned_attrs: None,
    };
    let certificates = if embed_cert {
        let set =
            SetOfVec::try_from(vec![CertificateChoices::Certificate(cert.clone())]).map_err(enc)?;
        Some(CertificateSet(set))
    } else {
        None
    };
    let signed = SignedData {
        version: CmsVersion::V1,
        digest_algorithms: SetOfVec::try_from(vec![digest_alg]).map_err(enc)?,
        encap_content_info: EncapsulatedContentInfo {
            econtent_type: OID_DATA,
            econtent: None,
        },
        certificates,
        crls: None,
        signer_infos: SignerInfos(SetOfVec::try_from(vec![signer]).map_err(enc)?),
    };
    ContentInfo {
        content_type: OID_SIGNED_DATA,
        content: Any::encode_from(&signed).map_err(enc)?,
    }
    .to_der()
    .map_err(enc)
}

/// A parsed signature: the one SignerInfo, its digest and the embedded certificates.
struct Parsed {
    info: SignerInfo,
    digest: HashAlg,
    embedded: Vec<Vec<u8>>,
}

/// Decodes and checks the envelope, before any key is looked at.
fn parse(sig: &[u8]) -> Result<Parsed, SignError> {
    if sig.is_empty() {
        return Err(SignError::Empty);
    }
    // Length checks on the outer TLV first, so a cut or padded file is named as such.
    let mut r = SliceReader::new(sig).map_err(der_err)?;
    let header = Header::decode(&mut r).map_err(der_err)?;
    let total = u64::from(u32::from(r.position())) + u64::from(u32::from(header.length));
    if (sig.len() as u64) < total {
        return Err(SignError::Truncated(format!(
            "the outer SEQUENCE needs {total} bytes, the signature has {}",
            sig.len()
        )));
    }
    if sig.len() as u64 > total {
        return Err(SignError::TrailingData(sig.len() as u64 - total));
    }
    let ci = ContentInfo::from_der(sig).map_err(der_err)?;
    if ci.content_type != OID_SIGNED_DATA {
        return Err(SignError::NotSignedData(ci.content_type.to_string()));
    }
    let sd: SignedData = ci.content.decode_as().map_err(der_err)?;
    if sd.encap_content_info.econtent_type != OID_DATA {
        return Err(SignError::ContentTypeNotData(
            sd.encap_content_info.econtent_type.to_string(),
        ));
    }
    if sd.encap_content_info.econtent.is_some() {
        return Err(SignError::NotDetached);
    }
    let n = sd.signer_infos.0.len();
    if n != 1 {
        return Err(SignError::SignerCount(n));
    }
    let info = sd.signer_infos.0.into_vec().remove(0);
    let digest = digest_alg(&info.digest_alg.oid)?;
    check_consistency(&sd.version, &sd.digest_algorithms, &info)?;
    let embedded = sd
        .certificates
        .map(|set| {
            set.0
                .iter()
                .filter_map(|c| match c {
                    CertificateChoices::Certificate(c) => c.to_der().ok(),
                    CertificateChoices::Other(_) => None,
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(Parsed {
        info,
        digest,
        embedded,
    })
}

/// The fields openssl and the kernel do not use for the check itself but that a well-formed
/// signature gets right; refusing odd values keeps what we accept close to what we produce.
fn check_consistency(
    version: &CmsVersion,
    digests: &SetOfVec<AlgorithmIdentifierOwned>,
    info: &SignerInfo,
) -> Result<(), SignError> {
    let bad = |m: String| Err(SignError::Malformed(m));
    if !matches!(
        version,
        CmsVersion::V1 | CmsVersion::V3 | CmsVersion::V4 | CmsVersion::V5
    ) {
        return bad(format!(
            "SignedData version {version:?} is not 1, 3, 4 or 5"
        ));
    }
    let want = match info.sid {
        SignerIdentifier::IssuerAndSerialNumber(_) => CmsVersion::V1,
        SignerIdentifier::SubjectKeyIdentifier(_) => CmsVersion::V3,
    };
    if info.version != want {
        return bad(format!(
            "SignerInfo version {:?} does not fit its signer identifier (expected {want:?})",
            info.version
        ));
    }
    let params_ok =
        |a: &AlgorithmIdentifierOwned| a.parameters.as_ref().is_none_or(|p| p == &Any::null());
    if !params_ok(&info.digest_alg) {
        return bad("the digest algorithm has parameters other than NULL".into());
    }
    if !digests
        .iter()
        .any(|d| d.oid == info.digest_alg.oid && params_ok(d))
    {
        return bad(format!(
            "the SignedData digestAlgorithms do not list the signer's digest {}",
            info.digest_alg.oid
        ));
    }
    Ok(())
}

fn digest_alg(oid: &ObjectIdentifier) -> Result<HashAlg, SignError> {
    match *oid {
        OID_SHA256 => Ok(HashAlg::Sha256),
        OID_SHA384 => Ok(HashAlg::Sha384),
        OID_SHA512 => Ok(HashAlg::Sha512),
        _ => {
            let s = oid.to_string();
            let name = WEAK_DIGESTS
                .iter()
                .find(|(o, _)| *o == s)
                .map(|(_, n)| format!("{n} ({s})"))
                .unwrap_or(s);
            Err(SignError::UnsupportedDigest(name))
        }
    }
}

/// Does the SignerInfo's identifier name this certificate?
fn sid_matches(sid: &SignerIdentifier, cert: &X509Certificate) -> bool {
    match sid {
        SignerIdentifier::IssuerAndSerialNumber(ias) => {
            ias.serial_number.as_bytes() == cert.raw_serial()
                && ias.issuer.to_der().ok().as_deref() == Some(cert.issuer().as_raw())
        }
        SignerIdentifier::SubjectKeyIdentifier(ski) => cert.extensions().iter().any(|e| {
            matches!(e.parsed_extension(),
                x509_parser::extensions::ParsedExtension::SubjectKeyIdentifier(k)
                    if k.0 == ski.0.as_bytes())
        }),
    }
}

fn sid_matches_der(sid: &SignerIdentifier, der: &[u8]) -> bool {
    X509Certificate::from_der(der).is_ok_and(|(_, c)| sid_matches(sid, &c))
}

fn describe_sid(sid: &SignerIdentifier) -> String {
    match sid {
        SignerIdentifier::IssuerAndSerialNumber(ias) => format!(
            "issuer {}, serial {}",
            ias.issuer,
            hex::encode(ias.serial_number.as_bytes())
        ),
        SignerIdentifier::SubjectKeyIdentifier(ski) => {
            format!("subject key identifier {}", hex::encode(ski.0.as_bytes()))
        }
    }
}

/// The ring algorithm for this key, digest and SignerInfo signatureAlgorithm.
fn verification_alg(
    cert: &X509Certificate,
    digest: HashAlg,
    sig_oid: &ObjectIdentifier,
) -> Result<&'static dyn VerificationAlgorithm, SignError> {
    let spki = cert.public_key();
    let subject = cert.subject().to_string();
    let key_oid = ObjectIdentifier::from_bytes(spki.algorithm.algorithm.as_bytes())
        .map_err(|e| SignError::Cert(e.to_string()))?;
    let unsupported = |key: &str| SignError::UnsupportedSignatureAlgorithm {
        alg: sig_oid.to_string(),
        key: key.to_string(),
        digest: digest.name().to_string(),
    };
    if key_oid == OID_RSA {
        let bits = match spki.parsed() {
            Ok(x509_parser::public_key::PublicKey::RSA(k)) => k.key_size(),
            _ => 0,
        };
        if bits < 2048 {
            return Err(SignError::UnsupportedKey {
                subject,
                reason: format!("RSA key of {bits} bits; at least 2048 are required"),
            });
        }
        let combined = match *sig_oid {
            OID_RSA => None,
            OID_RSA_SHA256 => Some(HashAlg::Sha256),
            OID_RSA_SHA384 => Some(HashAlg::Sha384),
            OID_RSA_SHA512 => Some(HashAlg::Sha512),
            _ => return Err(unsupported("RSA")),
        };
        if combined.is_some_and(|h| h != digest) {
            return Err(unsupported("RSA"));
        }
        return Ok(match digest {
            HashAlg::Sha384 => &signature::RSA_PKCS1_2048_8192_SHA384,
            HashAlg::Sha512 => &signature::RSA_PKCS1_2048_8192_SHA512,
            _ => &signature::RSA_PKCS1_2048_8192_SHA256,
        });
    }
    if key_oid == OID_EC_PUBLIC_KEY {
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok())
            .and_then(|o| ObjectIdentifier::from_bytes(o.as_bytes()).ok());
        let combined = match *sig_oid {
            OID_EC_PUBLIC_KEY => None,
            OID_ECDSA_SHA256 => Some(HashAlg::Sha256),
            OID_ECDSA_SHA384 => Some(HashAlg::Sha384),
            OID_ECDSA_SHA512 => Some(HashAlg::Sha512),
            _ => return Err(unsupported("ECDSA")),
        };
        if combined.is_some_and(|h| h != digest) {
            return Err(unsupported("ECDSA"));
        }
        return match (curve, digest) {
            (Some(OID_P256), HashAlg::Sha256) => Ok(&signature::ECDSA_P256_SHA256_ASN1),
            (Some(OID_P256), HashAlg::Sha384) => Ok(&signature::ECDSA_P256_SHA384_ASN1),
            (Some(OID_P384), HashAlg::Sha256) => Ok(&signature::ECDSA_P384_SHA256_ASN1),
            (Some(OID_P384), HashAlg::Sha384) => Ok(&signature::ECDSA_P384_SHA384_ASN1),
            (Some(OID_P256 | OID_P384), _) => Err(unsupported("ECDSA")),
            (c, _) => Err(SignError::UnsupportedKey {
                subject,
                reason: format!(
                    "EC curve {}; P-256 and P-384 are supported",
                    c.map(|c| c.to_string()).unwrap_or_else(|| "unnamed".into())
                ),
            }),
        };
    }
    Err(SignError::UnsupportedKey {
        subject,
        reason: format!("key algorithm {key_oid}"),
    })
}

/// The exactly-one value of a signed attribute.
fn single_attr<'a>(
    attrs: &'a cms::signed_data::SignedAttributes,
    oid: ObjectIdentifier,
    name: &'static str,
) -> Result<&'a Any, SignError> {
    let mut found = attrs.iter().filter(|a| a.oid == oid);
    let attr = found.next().ok_or(SignError::MissingAttribute(name))?;
    if found.next().is_some() || attr.values.len() != 1 {
        return Err(SignError::BadAttribute {
            attr: name,
            reason: "it must occur once with one value".into(),
        });
    }
    Ok(attr.values.get(0).expect("one value"))
}

/// The bytes the signature covers: the content itself, or the DER of the signed attributes after
/// their contentType and messageDigest are checked against it.
fn signed_message(p: &Parsed, content: &[u8]) -> Result<Vec<u8>, SignError> {
    let Some(attrs) = &p.info.signed_attrs else {
        return Ok(content.to_vec());
    };
    let bad = |attr, e: der::Error| SignError::BadAttribute {
        attr,
        reason: e.to_string(),
    };
    let ct: ObjectIdentifier = single_attr(attrs, OID_CONTENT_TYPE, "contentType")?
        .decode_as()
        .map_err(|e| bad("contentType", e))?;
    if ct != OID_DATA {
        return Err(SignError::ContentTypeNotData(ct.to_string()));
    }
    let md: OctetString = single_attr(attrs, OID_MESSAGE_DIGEST, "messageDigest")?
        .decode_as()
        .map_err(|e| bad("messageDigest", e))?;
    let computed = p.digest.digest(content);
    if md.as_bytes() != computed.as_slice() {
        return Err(SignError::DigestMismatch {
            digest: p.digest.name().to_string(),
            signed: hex::encode(md.as_bytes()),
            computed: hex::encode(&computed),
        });
    }
    // Verified over the DER re-encoding with the SET tag, as openssl and the kernel do.
    attrs.to_der().map_err(|e| bad("signedAttrs", e))
}

/// Checks the signature with the key of one certificate.
fn check_with(p: &Parsed, cert_der: &[u8], content: &[u8]) -> Result<(), SignError> {
    let (_, cert) =
        X509Certificate::from_der(cert_der).map_err(|e| SignError::Cert(e.to_string()))?;
    let alg = verification_alg(&cert, p.digest, &p.info.signature_algorithm.oid)?;
    let msg = signed_message(p, content)?;
    signature::UnparsedPublicKey::new(alg, &cert.public_key().subject_public_key.data)
        .verify(&msg, p.info.signature.as_bytes())
        .map_err(|_| SignError::BadSignature {
            subject: cert.subject().to_string(),
        })
}

/// Verifies a detached DER PKCS#7 signature over `content` (the lower-case hex root hash) against
/// the trust store, as systemd does: the signer must be a trusted certificate itself. Returns the
/// signer; every refusal names its reason.
pub fn verify_signature(
    sig_der: &[u8],
    content: &[u8],
    trust: &TrustStore,
) -> Result<Signer, SignError> {
    let p = parse(sig_der)?;
    let sid = &p.info.sid;
    let candidates: Vec<&[u8]> = trust
        .certs()
        .iter()
        .map(|c| c.der.as_slice())
        .filter(|d| sid_matches_der(sid, d))
        .collect();
    if candidates.is_empty() {
        if let Some(e) = p.embedded.iter().find(|d| sid_matches_der(sid, d)) {
            return Err(SignError::EmbeddedOnly {
                subject: cert_subject(e),
            });
        }
        return Err(SignError::SignerNotTrusted {
            sid: describe_sid(sid),
        });
    }
    let mut first = None;
    for der in &candidates {
        match check_with(&p, der, content) {
            Ok(()) => return Ok(signer_of(der)),
            Err(e) => {
                first.get_or_insert(e);
            }
        }
    }
    let err = first.expect("at least one candidate");
    if !matches!(
        err,
        SignError::BadSignature { .. } | SignError::DigestMismatch { .. }
    ) {
        return Err(err);
    }
    Err(diagnose(&p, &candidates, content).unwrap_or(err))
}

/// After a failed check, finds out why if it can: a same-named embedded certificate with another
/// key, or a signature over the upper-case or newline-terminated form of the root hash.
fn diagnose(p: &Parsed, candidates: &[&[u8]], content: &[u8]) -> Option<SignError> {
    let subject = cert_subject(candidates[0]);
    for emb in &p.embedded {
        if !candidates.contains(&emb.as_slice())
            && sid_matches_der(&p.info.sid, emb)
            && check_with(p, emb, content).is_ok()
        {
            return Some(SignError::WrongKey {
                subject,
                embedded: cert_subject(emb),
            });
        }
    }
    if !is_lower_hex(content) {
        return None;
    }
    let upper = content.to_ascii_uppercase();
    let variants = [
        (upper.clone(), true),
        ([content, b"\n"].concat(), false),
        ([&upper[..], b"\n"].concat(), true),
    ];
    for (variant, is_upper) in variants {
        if candidates
            .iter()
            .any(|d| check_with(p, d, &variant).is_ok())
        {
            let subject = subject.clone();
            return Some(if is_upper {
                SignError::UpperCaseContent { subject }
            } else {
                SignError::TrailingNewline { subject }
            });
        }
    }
    None
}

fn signer_of(der: &[u8]) -> Signer {
    let fp = ring::digest::digest(&ring::digest::SHA256, der);
    Signer {
        cert_der: der.to_vec(),
        fingerprint: fp.as_ref().try_into().expect("32 bytes"),
        subject: cert_subject(der),
    }
}

#[cfg(test)]
mod tests;
