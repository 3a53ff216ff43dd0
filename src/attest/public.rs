//! TPM2B_PUBLIC (pure core): the public area of a TPM key as `tpm2_createak -u`, `tpm2_readpublic
//! -o` and Keylime's `aik_tpm` carry it, parsed strictly (RSA and ECC keys), with the key's TPM
//! name (nameAlg || H(TPMT_PUBLIC)) that credential activation and quotes refer to.

use super::wire::{self, hash_of_alg, Reader, WireError};
use crate::digest::HashAlg;

/// TPMA_OBJECT bits that matter for an attestation key.
pub mod attr {
    /// fixedTPM: the key cannot leave this TPM.
    pub const FIXED_TPM: u32 = 1 << 1;
    /// fixedParent.
    pub const FIXED_PARENT: u32 = 1 << 4;
    /// sensitiveDataOrigin: the TPM generated the private part.
    pub const SENSITIVE_DATA_ORIGIN: u32 = 1 << 5;
    /// userWithAuth.
    pub const USER_WITH_AUTH: u32 = 1 << 6;
    /// restricted: a signing key that signs only TPM-generated structures.
    pub const RESTRICTED: u32 = 1 << 16;
    /// decrypt.
    pub const DECRYPT: u32 = 1 << 17;
    /// sign.
    pub const SIGN: u32 = 1 << 18;
}

/// TPM_ECC_NIST_P256.
pub const ECC_NIST_P256: u16 = 0x0003;
/// TPM_ECC_NIST_P384.
pub const ECC_NIST_P384: u16 = 0x0004;

/// The key material.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyMaterial {
    /// RSA: modulus (big-endian) and public exponent (0 on the wire means 65537).
    Rsa { modulus: Vec<u8>, exponent: u32 },
    /// ECC: curve identifier and the point's coordinates (big-endian).
    Ecc { curve: u16, x: Vec<u8>, y: Vec<u8> },
}

/// A parsed TPM2B_PUBLIC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TpmPublic {
    /// The marshalled TPMT_PUBLIC (what the name hashes).
    pub tpmt: Vec<u8>,
    /// nameAlg.
    pub name_alg: HashAlg,
    /// objectAttributes.
    pub attributes: u32,
    /// The signing scheme the key is bound to: (TPM_ALG_RSASSA/RSAPSS/ECDSA..., hash); None when
    /// the key's scheme is TPM_ALG_NULL (the caller picks one per signature).
    pub scheme: Option<(u16, HashAlg)>,
    /// The public key.
    pub key: KeyMaterial,
}

/// RSA keys up to 4096 bits (TPM2B_PUBLIC_KEY_RSA's buffer is 512 bytes).
const MAX_RSA_BYTES: usize = 512;
/// ECC coordinates up to 521 bits (TPM2B_ECC_PARAMETER's buffer is 128 bytes).
const MAX_ECC_BYTES: usize = 128;
/// TPM2B_DIGEST holds at most a SHA-512 digest.
const MAX_DIGEST: usize = 64;

impl TpmPublic {
    /// Parses a marshalled TPM2B_PUBLIC (u16 size, then TPMT_PUBLIC), refusing trailing bytes.
    pub fn parse(bytes: &[u8]) -> Result<Self, WireError> {
        let mut outer = Reader::new(bytes, "TPM2B_PUBLIC");
        let tpmt = outer.sized("size", u16::MAX as usize)?;
        outer.finish()?;
        if tpmt.is_empty() {
            return Err(outer.err_at(0, "the public area is empty"));
        }
        let mut r = Reader::new(tpmt, "TPMT_PUBLIC");
        let ty = r.u16("type")?;
        let at = r.offset();
        let name_alg = r.u16("nameAlg")?;
        let name_alg = hash_of_alg(name_alg)
            .ok_or_else(|| r.err_at(at, format!("nameAlg {name_alg:#06x} is not a known hash")))?;
        let attributes = r.u32("objectAttributes")?;
        r.sized("authPolicy", MAX_DIGEST)?;
        let (scheme, key) = match ty {
            wire::ALG_RSA => {
                symmetric(&mut r)?;
                let scheme = scheme(&mut r, true)?;
                let bits = r.u16("keyBits")?;
                let exponent = match r.u32("exponent")? {
                    0 => 65537,
                    e => e,
                };
                let at = r.offset();
                let modulus = r.sized("unique.rsa", MAX_RSA_BYTES)?.to_vec();
                if modulus.len() * 8 != bits as usize {
                    return Err(r.err_at(
                        at,
                        format!(
                            "the modulus is {} bits but keyBits says {bits}",
                            modulus.len() * 8
                        ),
                    ));
                }
                (scheme, KeyMaterial::Rsa { modulus, exponent })
            }
            wire::ALG_ECC => {
                symmetric(&mut r)?;
                let scheme = scheme(&mut r, false)?;
                let curve = r.u16("curveID")?;
                let kdf = r.u16("kdf.scheme")?;
                if kdf != wire::ALG_NULL {
                    r.u16("kdf.hashAlg")?;
                }
                let x = r.sized("unique.ecc.x", MAX_ECC_BYTES)?.to_vec();
                let y = r.sized("unique.ecc.y", MAX_ECC_BYTES)?.to_vec();
                (scheme, KeyMaterial::Ecc { curve, x, y })
            }
            other => {
                return Err(r.err_at(
                    0,
                    format!("type {other:#06x} is not an RSA or ECC key, so it cannot sign quotes"),
                ))
            }
        };
        r.finish()?;
        Ok(Self {
            tpmt: tpmt.to_vec(),
            name_alg,
            attributes,
            scheme,
            key,
        })
    }

    /// The TPM name: nameAlg (big-endian u16) followed by H_nameAlg(TPMT_PUBLIC).
    pub fn name(&self) -> Vec<u8> {
        let mut n = wire::alg_of_hash(self.name_alg).to_be_bytes().to_vec();
        n.extend_from_slice(&self.name_alg.digest(&self.tpmt));
        n
    }

    /// The marshalled TPM2B_PUBLIC again.
    pub fn to_tpm2b(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.tpmt.len() + 2);
        wire::put_sized(&mut v, &self.tpmt);
        v
    }

    /// Whether the key is a restricted signing key: the TPM signs only structures it generated
    /// itself with it, which is what makes a quote signed by it evidence.
    pub fn is_restricted_signer(&self) -> bool {
        self.attributes & (attr::RESTRICTED | attr::SIGN) == attr::RESTRICTED | attr::SIGN
            && self.attributes & attr::DECRYPT == 0
    }

    /// A short description (`rsa2048`, `ecc-p256`).
    pub fn describe(&self) -> String {
        match &self.key {
            KeyMaterial::Rsa { modulus, .. } => format!("rsa{}", modulus.len() * 8),
            KeyMaterial::Ecc { curve, .. } => match *curve {
                ECC_NIST_P256 => "ecc-p256".into(),
                ECC_NIST_P384 => "ecc-p384".into(),
                c => format!("ecc-curve-{c:#06x}"),
            },
        }
    }
}

/// TPMT_SYM_DEF_OBJECT: an algorithm, and for anything but NULL its key bits and mode.
fn symmetric(r: &mut Reader) -> Result<(), WireError> {
    if r.u16("symmetric.algorithm")? != wire::ALG_NULL {
        r.u16("symmetric.keyBits")?;
        r.u16("symmetric.mode")?;
    }
    Ok(())
}

/// TPMT_RSA_SCHEME / TPMT_ECC_SCHEME. Only signing schemes are returned; an encryption scheme
/// on a key means it cannot sign quotes, which the caller sees as `None` plus its attributes.
fn scheme(r: &mut Reader, rsa: bool) -> Result<Option<(u16, HashAlg)>, WireError> {
    let at = r.offset();
    let alg = r.u16("scheme.scheme")?;
    match alg {
        wire::ALG_NULL => Ok(None),
        wire::ALG_RSAES if rsa => Ok(None),
        wire::ALG_RSASSA | wire::ALG_RSAPSS | wire::ALG_OAEP if rsa => {
            let h = hash_field(r)?;
            Ok((alg != wire::ALG_OAEP).then_some((alg, h)))
        }
        wire::ALG_ECDSA | wire::ALG_SM2 | wire::ALG_ECSCHNORR | wire::ALG_ECDH if !rsa => {
            let h = hash_field(r)?;
            Ok((alg == wire::ALG_ECDSA).then_some((alg, h)))
        }
        wire::ALG_ECDAA if !rsa => {
            hash_field(r)?;
            r.u16("scheme.count")?;
            Ok(None)
        }
        _ => Err(r.err_at(at, format!("unknown scheme {alg:#06x}"))),
    }
}

fn hash_field(r: &mut Reader) -> Result<HashAlg, WireError> {
    let at = r.offset();
    let h = r.u16("scheme.hashAlg")?;
    hash_of_alg(h).ok_or_else(|| r.err_at(at, format!("scheme hash {h:#06x} is not known")))
}

/// Builds a TPM2B_PUBLIC for an RSA key (tests and fuzz seeds only need this shape).
pub fn rsa_tpm2b(attributes: u32, scheme: u16, modulus: &[u8]) -> Vec<u8> {
    let mut t = Vec::new();
    t.extend_from_slice(&wire::ALG_RSA.to_be_bytes());
    t.extend_from_slice(&wire::ALG_SHA256.to_be_bytes());
    t.extend_from_slice(&attributes.to_be_bytes());
    wire::put_sized(&mut t, &[]);
    t.extend_from_slice(&wire::ALG_NULL.to_be_bytes());
    t.extend_from_slice(&scheme.to_be_bytes());
    if scheme != wire::ALG_NULL {
        t.extend_from_slice(&wire::ALG_SHA256.to_be_bytes());
    }
    t.extend_from_slice(&((modulus.len() * 8) as u16).to_be_bytes());
    t.extend_from_slice(&0u32.to_be_bytes());
    wire::put_sized(&mut t, modulus);
    let mut v = Vec::new();
    wire::put_sized(&mut v, &t);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    const AK_ATTRS: u32 = attr::FIXED_TPM
        | attr::FIXED_PARENT
        | attr::SENSITIVE_DATA_ORIGIN
        | attr::USER_WITH_AUTH
        | attr::RESTRICTED
        | attr::SIGN;

    #[test]
    fn rsa_public_parses_and_names() {
        let m = vec![0xc5; 256];
        let b = rsa_tpm2b(AK_ATTRS, wire::ALG_RSASSA, &m);
        let p = TpmPublic::parse(&b).unwrap();
        assert_eq!(p.name_alg, HashAlg::Sha256);
        assert_eq!(p.scheme, Some((wire::ALG_RSASSA, HashAlg::Sha256)));
        assert_eq!(
            p.key,
            KeyMaterial::Rsa {
                modulus: m,
                exponent: 65537
            }
        );
        assert!(p.is_restricted_signer());
        assert_eq!(p.describe(), "rsa2048");
        assert_eq!(p.to_tpm2b(), b);
        let name = p.name();
        assert_eq!(&name[..2], &[0x00, 0x0b]);
        assert_eq!(&name[2..], HashAlg::Sha256.digest(&b[2..]).as_slice());
    }

    #[test]
    fn refuses_malformed_publics() {
        let b = rsa_tpm2b(AK_ATTRS, wire::ALG_RSASSA, &[1; 256]);
        // Truncated anywhere: an error, never a panic.
        for n in 0..b.len() {
            assert!(TpmPublic::parse(&b[..n]).is_err(), "prefix {n}");
        }
        let mut extra = b.clone();
        extra.push(0);
        assert!(TpmPublic::parse(&extra)
            .unwrap_err()
            .to_string()
            .contains("trailing"));
        // keyBits that disagree with the modulus.
        let mut bad = b.clone();
        let kb = 2 + 2 + 2 + 4 + 2 + 2 + 2 + 2;
        bad[kb] = 0x04;
        let e = TpmPublic::parse(&bad).unwrap_err();
        assert!(e.to_string().contains("keyBits"), "{e}");
        // A keyed-hash object is not a signing key for quotes.
        let mut kh = b.clone();
        kh[2..4].copy_from_slice(&wire::ALG_KEYEDHASH.to_be_bytes());
        assert!(TpmPublic::parse(&kh)
            .unwrap_err()
            .to_string()
            .contains("not an RSA or ECC"));
        // An unrestricted key parses but is not an attestation key.
        let un = TpmPublic::parse(&rsa_tpm2b(attr::SIGN, wire::ALG_NULL, &[1; 256])).unwrap();
        assert!(!un.is_restricted_signer());
        assert_eq!(un.scheme, None);
    }
}
