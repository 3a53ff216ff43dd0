//! Private keys for signing: PEM in PKCS#8 (`PRIVATE KEY`), PKCS#1 (`RSA PRIVATE KEY`) or SEC1
//! (`EC PRIVATE KEY`) form, loaded into ring. RSA signs with PKCS#1 v1.5 and SHA-256 (deterministic,
//! so the output can match openssl byte for byte); ECDSA P-256 with SHA-256 and P-384 with SHA-384,
//! the pairs ring implements.

use super::SignError;
use der::asn1::{BitStringRef, ObjectIdentifier, OctetStringRef};
use der::{Decode, Sequence};
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, KeyPair, RsaKeyPair};
use x509_parser::pem::Pem;

pub(crate) const OID_SHA256: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.1");
pub(crate) const OID_SHA384: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.2");
pub(crate) const OID_SHA512: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.3");
pub(crate) const OID_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
pub(crate) const OID_EC_PUBLIC_KEY: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
pub(crate) const OID_ECDSA_SHA256: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
pub(crate) const OID_ECDSA_SHA384: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.3");
pub(crate) const OID_P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
pub(crate) const OID_P384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");

/// SEC1 `ECPrivateKey` (RFC 5915), which ring does not parse on its own.
#[derive(Sequence)]
struct EcPrivateKey<'a> {
    version: u8,
    private_key: OctetStringRef<'a>,
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT", optional = "true")]
    parameters: Option<ObjectIdentifier>,
    #[asn1(context_specific = "1", tag_mode = "EXPLICIT", optional = "true")]
    public_key: Option<BitStringRef<'a>>,
}

/// A private key that can sign root hashes.
#[derive(Debug)]
pub enum SigningKey {
    /// RSA, 2048 to 8192 bits, PKCS#1 v1.5 with SHA-256.
    Rsa(RsaKeyPair),
    /// ECDSA on P-256 with SHA-256.
    EcdsaP256(EcdsaKeyPair),
    /// ECDSA on P-384 with SHA-384.
    EcdsaP384(EcdsaKeyPair),
}

/// Every PEM block in `data`, in order.
pub(crate) fn pem_blocks(data: &[u8]) -> Result<Vec<Pem>, String> {
    let blocks: Vec<Pem> = Pem::iter_from_buffer(data)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("invalid PEM: {e}"))?;
    if blocks.is_empty() {
        return Err("no PEM block found".into());
    }
    Ok(blocks)
}

fn key_err(what: &str, e: impl std::fmt::Display) -> SignError {
    SignError::Key(format!("{what}: {e}"))
}

impl SigningKey {
    /// Loads the first private key in a PEM file.
    pub fn from_pem(pem: &[u8]) -> Result<Self, SignError> {
        let blocks = pem_blocks(pem).map_err(SignError::Key)?;
        let block = blocks
            .iter()
            .find(|b| b.label.ends_with("PRIVATE KEY"))
            .ok_or_else(|| {
                SignError::Key(format!(
                    "no private key among the PEM blocks ({})",
                    blocks
                        .iter()
                        .map(|b| b.label.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })?;
        match block.label.as_str() {
            "PRIVATE KEY" => Self::from_pkcs8(&block.contents),
            "RSA PRIVATE KEY" => RsaKeyPair::from_der(&block.contents)
                .map(SigningKey::Rsa)
                .map_err(|e| key_err("RSA PRIVATE KEY (PKCS#1) rejected", e)),
            "EC PRIVATE KEY" => Self::from_sec1(&block.contents),
            "ENCRYPTED PRIVATE KEY" => Err(SignError::Key(
                "encrypted keys are not supported; decrypt with `openssl pkey`".into(),
            )),
            other => Err(SignError::Key(format!("unsupported PEM label {other:?}"))),
        }
    }

    fn from_pkcs8(der: &[u8]) -> Result<Self, SignError> {
        let rng = SystemRandom::new();
        let rsa = match RsaKeyPair::from_pkcs8(der) {
            Ok(k) => return Ok(SigningKey::Rsa(k)),
            Err(e) => e,
        };
        if let Ok(k) =
            EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_ASN1_SIGNING, der, &rng)
        {
            return Ok(SigningKey::EcdsaP256(k));
        }
        if let Ok(k) =
            EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P384_SHA384_ASN1_SIGNING, der, &rng)
        {
            return Ok(SigningKey::EcdsaP384(k));
        }
        Err(key_err(
            "PKCS#8 key is neither RSA (2048-8192 bits) nor ECDSA P-256/P-384",
            rsa,
        ))
    }

    fn from_sec1(der: &[u8]) -> Result<Self, SignError> {
        let k = EcPrivateKey::from_der(der).map_err(|e| key_err("EC PRIVATE KEY (SEC1)", e))?;
        if k.version != 1 {
            return Err(SignError::Key(format!(
                "EC PRIVATE KEY version {} (expected 1)",
                k.version
            )));
        }
        let public = k.public_key.and_then(|b| b.as_bytes()).ok_or_else(|| {
            SignError::Key(
                "EC PRIVATE KEY without its public key; convert it with `openssl ec`".into(),
            )
        })?;
        let (alg, p384) = match k.parameters {
            Some(OID_P256) => (&signature::ECDSA_P256_SHA256_ASN1_SIGNING, false),
            Some(OID_P384) => (&signature::ECDSA_P384_SHA384_ASN1_SIGNING, true),
            Some(other) => {
                return Err(SignError::Key(format!(
                    "unsupported curve {other}; P-256 and P-384 are supported"
                )))
            }
            None => {
                return Err(SignError::Key(
                    "EC PRIVATE KEY without a named curve".into(),
                ))
            }
        };
        let pair = EcdsaKeyPair::from_private_key_and_public_key(
            alg,
            k.private_key.as_bytes(),
            public,
            &SystemRandom::new(),
        )
        .map_err(|e| key_err("EC PRIVATE KEY (SEC1) rejected", e))?;
        Ok(if p384 {
            SigningKey::EcdsaP384(pair)
        } else {
            SigningKey::EcdsaP256(pair)
        })
    }

    /// The public key as it appears in a certificate's SubjectPublicKeyInfo bit string (DER
    /// RSAPublicKey, or the uncompressed EC point), to check that key and certificate belong together.
    pub fn public_key_bytes(&self) -> &[u8] {
        match self {
            SigningKey::Rsa(k) => k.public_key().as_ref(),
            SigningKey::EcdsaP256(k) | SigningKey::EcdsaP384(k) => k.public_key().as_ref(),
        }
    }

    /// The digest algorithm this key signs with.
    pub(crate) fn digest_oid(&self) -> ObjectIdentifier {
        match self {
            SigningKey::Rsa(_) | SigningKey::EcdsaP256(_) => OID_SHA256,
            SigningKey::EcdsaP384(_) => OID_SHA384,
        }
    }

    /// The SignerInfo signatureAlgorithm, and whether it carries explicit NULL parameters (as
    /// openssl writes them: rsaEncryption with NULL, ecdsa-with-SHA* without parameters).
    pub(crate) fn signature_oid(&self) -> (ObjectIdentifier, bool) {
        match self {
            SigningKey::Rsa(_) => (OID_RSA, true),
            SigningKey::EcdsaP256(_) => (OID_ECDSA_SHA256, false),
            SigningKey::EcdsaP384(_) => (OID_ECDSA_SHA384, false),
        }
    }

    /// Signs `msg`, hashing it with SHA-256 (RSA, P-256) or SHA-384 (P-384).
    pub fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, SignError> {
        let rng = SystemRandom::new();
        match self {
            SigningKey::Rsa(k) => {
                let mut sig = vec![0u8; k.public().modulus_len()];
                k.sign(&signature::RSA_PKCS1_SHA256, &rng, msg, &mut sig)
                    .map_err(|e| key_err("RSA signing failed", e))?;
                Ok(sig)
            }
            SigningKey::EcdsaP256(k) | SigningKey::EcdsaP384(k) => k
                .sign(&rng, msg)
                .map(|s| s.as_ref().to_vec())
                .map_err(|e| key_err("ECDSA signing failed", e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEYS: &[(&str, &[u8], usize)] = &[
        ("rsa2048 pkcs8", include_bytes!("../../keys/rsa2048.key"), 0),
        (
            "rsa2048 pkcs1",
            include_bytes!("../../keys/rsa2048.pkcs1.key"),
            0,
        ),
        ("rsa4096 pkcs1", include_bytes!("../../keys/rsa4096.key"), 0),
        (
            "rsa4096 pkcs8",
            include_bytes!("../../keys/rsa4096.pkcs8.key"),
            0,
        ),
        ("p256 pkcs8", include_bytes!("../../keys/p256.key"), 1),
        ("p256 sec1", include_bytes!("../../keys/p256.sec1.key"), 1),
        ("p384 sec1", include_bytes!("../../keys/p384.key"), 2),
        ("p384 pkcs8", include_bytes!("../../keys/p384.pkcs8.key"), 2),
    ];

    #[test]
    fn every_key_form_loads_as_its_type() {
        for (name, pem, kind) in KEYS {
            let k = SigningKey::from_pem(pem).unwrap_or_else(|e| panic!("{name}: {e}"));
            let got = match k {
                SigningKey::Rsa(_) => 0,
                SigningKey::EcdsaP256(_) => 1,
                SigningKey::EcdsaP384(_) => 2,
            };
            assert_eq!(got, *kind, "{name}");
        }
    }

    #[test]
    fn pkcs1_and_pkcs8_forms_are_the_same_key() {
        let a = SigningKey::from_pem(KEYS[0].1).unwrap();
        let b = SigningKey::from_pem(KEYS[1].1).unwrap();
        assert_eq!(a.public_key_bytes(), b.public_key_bytes());
        let c = SigningKey::from_pem(KEYS[6].1).unwrap();
        let d = SigningKey::from_pem(KEYS[7].1).unwrap();
        assert_eq!(c.public_key_bytes(), d.public_key_bytes());
    }

    #[test]
    fn refusals_say_why() {
        let cases: &[(&[u8], &str)] = &[
            (b"", "no PEM block"),
            (include_bytes!("../../keys/rsa2048.crt"), "no private key"),
            (
                b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n",
                "encrypted keys",
            ),
            (
                b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
                "neither RSA",
            ),
        ];
        for (pem, want) in cases {
            let e = SigningKey::from_pem(pem).unwrap_err().to_string();
            assert!(e.contains(want), "{e:?} lacks {want:?}");
        }
    }
}
