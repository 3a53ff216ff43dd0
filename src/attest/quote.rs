//! A TPM quote (pure core): TPMS_ATTEST of type quote (what `tpm2_quote -m` writes and TPM2_Quote
//! signs), TPMT_SIGNATURE (`tpm2_quote -s`), and the signature check with `ring`: RSASSA-PKCS1
//! v1.5 or RSASSA-PSS (as the attestation key specifies) and ECDSA on P-256/P-384, over the exact
//! bytes of the TPMS_ATTEST.

use super::public::{KeyMaterial, TpmPublic, ECC_NIST_P256, ECC_NIST_P384};
use super::wire::{self, hash_of_alg, Reader, WireError};
use crate::digest::HashAlg;
use ring::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};

/// TPM_GENERATED_VALUE: the TPM puts it first in everything it signs, so a restricted key cannot
/// be made to sign a look-alike.
pub const TPM_GENERATED: u32 = 0xff54_4347;
/// TPM_ST_ATTEST_QUOTE.
pub const ST_ATTEST_QUOTE: u16 = 0x8018;
/// TPM2B_DATA / TPM2B_NAME buffers hold at most a TPMT_HA (2 + 64 bytes).
pub const MAX_DATA: usize = 66;

/// The PCRs of one bank in a selection, ascending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BankSelection {
    pub bank: HashAlg,
    pub pcrs: Vec<u32>,
}

/// A parsed TPMS_ATTEST of a quote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuoteInfo {
    /// The signing key's qualified name.
    pub qualified_signer: Vec<u8>,
    /// extraData: the caller's nonce (qualifyingData of TPM2_Quote).
    pub extra_data: Vec<u8>,
    /// clockInfo.clock, milliseconds the TPM has been powered.
    pub clock: u64,
    /// clockInfo.resetCount: TPM resets (reboots) so far.
    pub reset_count: u32,
    /// clockInfo.restartCount.
    pub restart_count: u32,
    /// firmwareVersion.
    pub firmware_version: u64,
    /// The quoted PCRs, in the order the digest covers them.
    pub selection: Vec<BankSelection>,
    /// H(the selected PCR values, concatenated in selection order), with the signing hash.
    pub pcr_digest: Vec<u8>,
}

/// Parses a TPML_PCR_SELECTION (big-endian, as inside TPMS_ATTEST).
fn pcr_selection(r: &mut Reader) -> Result<Vec<BankSelection>, WireError> {
    let at = r.offset();
    let count = r.u32("pcrSelect.count")?;
    if count > 16 {
        return Err(r.err_at(
            at,
            format!("{count} PCR banks selected; a TPM has at most 16"),
        ));
    }
    let mut out: Vec<BankSelection> = Vec::new();
    for _ in 0..count {
        let at = r.offset();
        let h = r.u16("pcrSelections.hash")?;
        let bank = hash_of_alg(h)
            .ok_or_else(|| r.err_at(at, format!("PCR bank {h:#06x} is not a known hash")))?;
        let n = r.u8("pcrSelections.sizeofSelect")? as usize;
        if n > 4 {
            return Err(r.err_at(at + 2, format!("sizeofSelect {n} is over 4")));
        }
        let bits = r.take(n, "pcrSelections.pcrSelect")?;
        let pcrs = select_bits(bits);
        if let Some(p) = pcrs.iter().find(|&&p| p >= crate::measure::pcr::PCR_COUNT) {
            return Err(r.err_at(at, format!("PCR {p} is selected but PCRs are 0-23")));
        }
        if out.iter().any(|s| s.bank == bank) {
            return Err(r.err_at(at, format!("the {bank} bank is selected twice")));
        }
        out.push(BankSelection { bank, pcrs });
    }
    Ok(out)
}

/// The PCR numbers whose bits are set in a pcrSelect bitmap (bit i of byte j is PCR 8j+i).
pub fn select_bits(bits: &[u8]) -> Vec<u32> {
    let mut v = Vec::new();
    for (j, b) in bits.iter().enumerate() {
        for i in 0..8 {
            if b & (1 << i) != 0 {
                v.push((j * 8 + i) as u32);
            }
        }
    }
    v
}

impl QuoteInfo {
    /// Parses a marshalled TPMS_ATTEST and requires it to be a TPM-generated quote.
    pub fn parse(bytes: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(bytes, "TPMS_ATTEST");
        let magic = r.u32("magic")?;
        if magic != TPM_GENERATED {
            return Err(r.err_at(
                0,
                format!("magic {magic:#010x} is not TPM_GENERATED_VALUE (0xff544347)"),
            ));
        }
        let ty = r.u16("type")?;
        if ty != ST_ATTEST_QUOTE {
            return Err(r.err_at(
                4,
                format!("type {ty:#06x} is not a quote (TPM_ST_ATTEST_QUOTE 0x8018)"),
            ));
        }
        let qualified_signer = r.sized("qualifiedSigner", MAX_DATA)?.to_vec();
        let extra_data = r.sized("extraData", MAX_DATA)?.to_vec();
        let clock = r.u64("clockInfo.clock")?;
        let reset_count = r.u32("clockInfo.resetCount")?;
        let restart_count = r.u32("clockInfo.restartCount")?;
        let at = r.offset();
        let safe = r.u8("clockInfo.safe")?;
        if safe > 1 {
            return Err(r.err_at(at, format!("clockInfo.safe is {safe}, not a boolean")));
        }
        let firmware_version = r.u64("firmwareVersion")?;
        let selection = pcr_selection(&mut r)?;
        let pcr_digest = r.sized("pcrDigest", 64)?.to_vec();
        r.finish()?;
        Ok(Self {
            qualified_signer,
            extra_data,
            clock,
            reset_count,
            restart_count,
            firmware_version,
            selection,
            pcr_digest,
        })
    }
}

/// A parsed TPMT_SIGNATURE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QuoteSignature {
    /// RSASSA-PKCS1-v1_5 or RSASSA-PSS (`alg` says which).
    Rsa {
        alg: u16,
        hash: HashAlg,
        sig: Vec<u8>,
    },
    /// ECDSA (r, s big-endian).
    Ecdsa {
        hash: HashAlg,
        r: Vec<u8>,
        s: Vec<u8>,
    },
}

impl QuoteSignature {
    /// Parses a marshalled TPMT_SIGNATURE.
    pub fn parse(bytes: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(bytes, "TPMT_SIGNATURE");
        let alg = r.u16("sigAlg")?;
        let hash = |r: &mut Reader| {
            let at = r.offset();
            let h = r.u16("hash")?;
            hash_of_alg(h).ok_or_else(|| r.err_at(at, format!("hash {h:#06x} is not known")))
        };
        let s = match alg {
            wire::ALG_RSASSA | wire::ALG_RSAPSS => {
                let hash = hash(&mut r)?;
                let sig = r.sized("sig", 512)?.to_vec();
                Self::Rsa { alg, hash, sig }
            }
            wire::ALG_ECDSA => {
                let hash = hash(&mut r)?;
                let rr = r.sized("signatureR", 128)?.to_vec();
                let ss = r.sized("signatureS", 128)?.to_vec();
                Self::Ecdsa { hash, r: rr, s: ss }
            }
            wire::ALG_NULL => {
                return Err(r.err_at(0, "sigAlg is TPM_ALG_NULL: the quote is unsigned"))
            }
            other => {
                return Err(r.err_at(
                    0,
                    format!("sigAlg {other:#06x} is not RSASSA, RSAPSS or ECDSA"),
                ))
            }
        };
        r.finish()?;
        Ok(s)
    }

    /// The signing hash (also the hash of the quote's PCR digest).
    pub fn hash(&self) -> HashAlg {
        match self {
            Self::Rsa { hash, .. } | Self::Ecdsa { hash, .. } => *hash,
        }
    }

    /// The TPM_ALG of the scheme.
    pub fn alg(&self) -> u16 {
        match self {
            Self::Rsa { alg, .. } => *alg,
            Self::Ecdsa { .. } => wire::ALG_ECDSA,
        }
    }

    /// Scheme name for messages.
    pub fn scheme_name(&self) -> String {
        let s = match self.alg() {
            wire::ALG_RSASSA => "rsassa",
            wire::ALG_RSAPSS => "rsapss",
            _ => "ecdsa",
        };
        format!("{s}-{}", self.hash())
    }
}

/// Verifies `sig` over `message` with `key`; the error says why it is not a valid signature.
/// The key's own scheme, if it has one, must be the one used: a key bound to RSASSA does not
/// vouch for a PSS signature.
pub fn verify_signature(
    key: &TpmPublic,
    message: &[u8],
    sig: &QuoteSignature,
) -> Result<(), String> {
    if let Some((alg, hash)) = key.scheme {
        if alg != sig.alg() || hash != sig.hash() {
            return Err(format!(
                "the signature uses {} but the key is bound to {}",
                sig.scheme_name(),
                sig_name(alg, hash)
            ));
        }
    }
    let bad = || "the signature does not verify with the attestation key".to_string();
    match (&key.key, sig) {
        (KeyMaterial::Rsa { modulus, exponent }, QuoteSignature::Rsa { alg, hash, sig }) => {
            let params: &signature::RsaParameters = match (*alg, hash) {
                (wire::ALG_RSASSA, HashAlg::Sha256) => &signature::RSA_PKCS1_2048_8192_SHA256,
                (wire::ALG_RSASSA, HashAlg::Sha384) => &signature::RSA_PKCS1_2048_8192_SHA384,
                (wire::ALG_RSASSA, HashAlg::Sha512) => &signature::RSA_PKCS1_2048_8192_SHA512,
                (wire::ALG_RSAPSS, HashAlg::Sha256) => &signature::RSA_PSS_2048_8192_SHA256,
                (wire::ALG_RSAPSS, HashAlg::Sha384) => &signature::RSA_PSS_2048_8192_SHA384,
                (wire::ALG_RSAPSS, HashAlg::Sha512) => &signature::RSA_PSS_2048_8192_SHA512,
                _ => return Err(format!("{} is not supported", sig_name(*alg, *hash))),
            };
            let e = exponent.to_be_bytes();
            let first = e.iter().position(|&b| b != 0).unwrap_or(3);
            let n = &modulus[modulus.iter().position(|&b| b != 0).unwrap_or(0)..];
            RsaPublicKeyComponents { n, e: &e[first..] }
                .verify(params, message, sig)
                .map_err(|_| bad())
        }
        (KeyMaterial::Ecc { curve, x, y }, QuoteSignature::Ecdsa { hash, r, s }) => {
            let (alg, size): (&signature::EcdsaVerificationAlgorithm, usize) = match (*curve, hash)
            {
                (ECC_NIST_P256, HashAlg::Sha256) => (&signature::ECDSA_P256_SHA256_FIXED, 32),
                (ECC_NIST_P384, HashAlg::Sha384) => (&signature::ECDSA_P384_SHA384_FIXED, 48),
                _ => {
                    return Err(format!(
                        "ECDSA with {hash} on {} is not supported (P-256 with sha256 and P-384 \
                         with sha384 are)",
                        key.describe()
                    ))
                }
            };
            let point = [&[4u8][..], &pad(x, size)?, &pad(y, size)?].concat();
            let rs = [pad(r, size)?, pad(s, size)?].concat();
            UnparsedPublicKey::new(alg, point)
                .verify(message, &rs)
                .map_err(|_| bad())
        }
        _ => Err(format!(
            "a {} signature cannot come from the {} attestation key",
            sig.scheme_name(),
            key.describe()
        )),
    }
}

fn sig_name(alg: u16, hash: HashAlg) -> String {
    QuoteSignature::Rsa {
        alg,
        hash,
        sig: vec![],
    }
    .scheme_name()
}

/// Left-pads a big-endian integer to `size` bytes (leading zeros stripped first).
fn pad(v: &[u8], size: usize) -> Result<Vec<u8>, String> {
    let v = &v[v.iter().position(|&b| b != 0).unwrap_or(v.len())..];
    if v.len() > size {
        return Err(format!(
            "an ECDSA value is {} bytes, over the curve's {size}",
            v.len()
        ));
    }
    let mut out = vec![0; size - v.len()];
    out.extend_from_slice(v);
    Ok(out)
}

/// Marshals a TPMS_ATTEST of a quote (tests and fuzz seeds; a real one comes from the TPM).
pub fn build_quote_info(q: &QuoteInfo) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&TPM_GENERATED.to_be_bytes());
    v.extend_from_slice(&ST_ATTEST_QUOTE.to_be_bytes());
    wire::put_sized(&mut v, &q.qualified_signer);
    wire::put_sized(&mut v, &q.extra_data);
    v.extend_from_slice(&q.clock.to_be_bytes());
    v.extend_from_slice(&q.reset_count.to_be_bytes());
    v.extend_from_slice(&q.restart_count.to_be_bytes());
    v.push(1);
    v.extend_from_slice(&q.firmware_version.to_be_bytes());
    v.extend_from_slice(&(q.selection.len() as u32).to_be_bytes());
    for s in &q.selection {
        v.extend_from_slice(&wire::alg_of_hash(s.bank).to_be_bytes());
        v.push(3);
        let mut bits = [0u8; 3];
        for &p in &s.pcrs {
            bits[p as usize / 8] |= 1 << (p % 8);
        }
        v.extend_from_slice(&bits);
    }
    wire::put_sized(&mut v, &q.pcr_digest);
    v
}

/// Marshals an RSA TPMT_SIGNATURE.
pub fn build_rsa_signature(alg: u16, hash: HashAlg, sig: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&alg.to_be_bytes());
    v.extend_from_slice(&wire::alg_of_hash(hash).to_be_bytes());
    wire::put_sized(&mut v, sig);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample() -> QuoteInfo {
        QuoteInfo {
            qualified_signer: vec![0, 0x0b, 1, 2, 3],
            extra_data: b"nonce-1234".to_vec(),
            clock: 42,
            reset_count: 1,
            restart_count: 0,
            firmware_version: 0x2023_0101,
            selection: vec![BankSelection {
                bank: HashAlg::Sha256,
                pcrs: vec![12, 13, 15],
            }],
            pcr_digest: vec![7; 32],
        }
    }

    #[test]
    fn quote_info_round_trips_and_refuses_lookalikes() {
        let q = sample();
        let b = build_quote_info(&q);
        assert_eq!(QuoteInfo::parse(&b).unwrap(), q);
        for n in 0..b.len() {
            assert!(QuoteInfo::parse(&b[..n]).is_err(), "prefix {n}");
        }
        let mut m = b.clone();
        m[0] = 0;
        assert!(QuoteInfo::parse(&m)
            .unwrap_err()
            .to_string()
            .contains("TPM_GENERATED"));
        let mut t = b.clone();
        t[5] = 0x17; // TPM_ST_ATTEST_CERTIFY
        assert!(QuoteInfo::parse(&t)
            .unwrap_err()
            .to_string()
            .contains("not a quote"));
    }

    #[test]
    fn select_bits_numbers_pcrs() {
        assert_eq!(select_bits(&[0, 0b1011_0000, 0]), vec![12, 13, 15]);
        assert_eq!(select_bits(&[1, 0, 0x80]), vec![0, 23]);
    }

    #[test]
    fn signature_parse_and_scheme_binding() {
        let b = build_rsa_signature(wire::ALG_RSASSA, HashAlg::Sha256, &[9; 256]);
        let s = QuoteSignature::parse(&b).unwrap();
        assert_eq!(s.hash(), HashAlg::Sha256);
        assert_eq!(s.scheme_name(), "rsassa-sha256");
        let mut null = b.clone();
        null[..2].copy_from_slice(&wire::ALG_NULL.to_be_bytes());
        assert!(QuoteSignature::parse(&null[..2])
            .unwrap_err()
            .to_string()
            .contains("unsigned"));
        // A key bound to RSASSA refuses a PSS signature before any math.
        let key = TpmPublic::parse(&super::super::public::rsa_tpm2b(
            super::super::public::attr::SIGN | super::super::public::attr::RESTRICTED,
            wire::ALG_RSASSA,
            &[0xc1; 256],
        ))
        .unwrap();
        let pss = QuoteSignature::Rsa {
            alg: wire::ALG_RSAPSS,
            hash: HashAlg::Sha256,
            sig: vec![1; 256],
        };
        let e = verify_signature(&key, b"m", &pss).unwrap_err();
        assert!(e.contains("bound to rsassa-sha256"), "{e}");
        let e = verify_signature(&key, b"m", &s).unwrap_err();
        assert!(e.contains("does not verify"), "{e}");
    }
}
