//! Root-hash signatures: detached PKCS#7 signing and verification, trust stores.
//!
//! The format is fixed by the kernel (dm-verity `root_hash_sig_key_desc`) and systemd (DDI signature
//! partitions, `.roothash.p7s` sidecars): a DER `ContentInfo`/`SignedData` of content type id-data,
//! detached, over the lower-case hex root hash with no newline. Without signed attributes and
//! embedded certificates, an RSA signature from [`sign_root_hash`] is byte-identical to
//! `openssl smime -sign -nocerts -noattr -binary -outform der`.
//!
//! Verification ([`verify_signature`]) follows systemd's userspace check (`PKCS7_NOINTERN |
//! PKCS7_NOVERIFY`): the signer must be one of the trusted certificates itself; certificates
//! embedded in the signature are never trusted by themselves, and there is no chain or expiry check.
//! [`verify_chain`] is the optional stricter policy on top (`--require-chain`).
//!
//! Layer L4 (`tests/layering.rs`): above `digest` and `hex`; knows nothing of images or TPMs.

mod chain;
mod keys;
mod pkcs7;
mod trust;

pub use chain::verify_chain;
pub use keys::SigningKey;
pub use pkcs7::{sign_root_hash, sign_with, verify_signature};
pub use trust::{cert_from_pem, cert_subject, TrustError, TrustStore, TrustedCert};

use thiserror::Error;

/// The certificate that made a signature, as found in the trust store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signer {
    /// DER of the signer's certificate.
    pub cert_der: Vec<u8>,
    /// SHA-256 of [`Signer::cert_der`]: systemd's `certificateFingerprint`.
    pub fingerprint: [u8; 32],
    /// The certificate's subject, RFC 4514 style (`CN=...`).
    pub subject: String,
}

impl Signer {
    /// The fingerprint as lower-case hex, as systemd writes `certificateFingerprint`.
    pub fn fingerprint_hex(&self) -> String {
        crate::hex::encode(&self.fingerprint)
    }
}

/// The report form (`image verify --json`): `fingerprint` (lower-case hex) and `subject`; the
/// certificate itself is not printed.
impl serde::Serialize for Signer {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("Signer", 2)?;
        st.serialize_field("fingerprint", &self.fingerprint_hex())?;
        st.serialize_field("subject", &self.subject)?;
        st.end()
    }
}

/// Why a key, certificate or signature was refused. Every variant names the check that failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SignError {
    #[error("private key: {0}")]
    Key(String),
    #[error("certificate: {0}")]
    Cert(String),
    #[error("the private key does not belong to the certificate {subject}")]
    KeyCertMismatch { subject: String },
    #[error("the root hash to sign must be non-empty lower-case hex without newline, got {0:?}")]
    RootHashNotCanonical(String),
    #[error("the signature is empty")]
    Empty,
    #[error("the signature DER is truncated: {0}")]
    Truncated(String),
    #[error("the signature has {0} bytes of trailing data after the DER structure")]
    TrailingData(u64),
    #[error("the signature is not valid DER PKCS#7: {0}")]
    Malformed(String),
    #[error("the signature's content type is {0}, not PKCS#7 signedData (1.2.840.113549.1.7.2)")]
    NotSignedData(String),
    #[error("the signed content type is {0}, not id-data (1.2.840.113549.1.7.1)")]
    ContentTypeNotData(String),
    #[error("the signature embeds its content; root-hash signatures must be detached")]
    NotDetached,
    #[error("the signature has {0} signer infos; exactly one is required")]
    SignerCount(usize),
    #[error("unsupported digest algorithm {0}; only sha256, sha384 and sha512 are accepted")]
    UnsupportedDigest(String),
    #[error("unsupported signature algorithm {alg} for a {key} key with digest {digest}")]
    UnsupportedSignatureAlgorithm {
        alg: String,
        key: String,
        digest: String,
    },
    #[error("unsupported public key in certificate {subject}: {reason}")]
    UnsupportedKey { subject: String, reason: String },
    #[error("the signer ({sid}) is not in the trust store")]
    SignerNotTrusted { sid: String },
    #[error(
        "the signer {subject} is only embedded in the signature; embedded certificates are never \
         trusted: put the certificate in a trust directory"
    )]
    EmbeddedOnly { subject: String },
    #[error(
        "wrong key: the signature was made with the key of the embedded certificate {embedded}, \
         not with the key of the trusted certificate {subject} that has the same issuer and serial"
    )]
    WrongKey { subject: String, embedded: String },
    #[error(
        "the signature by {subject} does not verify over this root hash: it was made with another \
         key or over a different root hash"
    )]
    BadSignature { subject: String },
    #[error(
        "the signature by {subject} covers the root hash in upper-case hex; the kernel and systemd \
         check the lower-case hex string"
    )]
    UpperCaseContent { subject: String },
    #[error(
        "the signature by {subject} covers the root hash followed by a newline; the kernel and \
         systemd check the hex string without newline"
    )]
    TrailingNewline { subject: String },
    #[error("the signed attributes lack {0}")]
    MissingAttribute(&'static str),
    #[error("the signed attribute {attr} is malformed: {reason}")]
    BadAttribute { attr: &'static str, reason: String },
    #[error(
        "the signed messageDigest does not match the {digest} of the root hash (signed {signed}, \
         computed {computed}): the signature is over a different root hash"
    )]
    DigestMismatch {
        digest: String,
        signed: String,
        computed: String,
    },
    #[error("certificate {subject} expired at {not_after}")]
    Expired { subject: String, not_after: String },
    #[error("certificate {subject} is not valid before {not_before}")]
    NotYetValid { subject: String, not_before: String },
    #[error("certificate {subject} is not for signing: its keyUsage lacks digitalSignature")]
    NotForSigning { subject: String },
    #[error("no CA certificate in the CA directories issued {subject} (issuer {issuer})")]
    NoIssuer { subject: String, issuer: String },
    #[error("certificate {subject} is refused in a chain: {reason}")]
    WeakCert { subject: String, reason: String },
    #[error("the issuer {issuer} of {subject} cannot be used: {reason}")]
    BadIssuer {
        subject: String,
        issuer: String,
        reason: String,
    },
}
