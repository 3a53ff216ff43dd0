//! The verity signature partition: a JSON object `{rootHash, certificateFingerprint, signature}`
//! padded with NUL bytes (spec/systemd.md section 3.4). Parsing follows systemd v257's reader: at
//! most 4 MiB, only NUL bytes after the first NUL, `rootHash` and `signature` mandatory, the root
//! hash lower-case hex. Pure core.

use serde::{Deserialize, Serialize};

/// systemd refuses signature partitions larger than this ([`crate::limits::SIGNATURE`]).
pub const MAX_SIZE: u64 = crate::limits::SIGNATURE;
/// Size we write (systemd-repart's default for the signature partition).
pub const DEFAULT_SIZE: usize = 16 << 10;

/// The decoded contents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigPart {
    /// Root hash bytes (from lower-case hex).
    pub root_hash: Vec<u8>,
    /// DER PKCS#7 signature.
    pub signature: Vec<u8>,
    /// SHA-256 of the signer's certificate, if present (informational: systemd ignores it).
    pub cert_fingerprint: Option<[u8; 32]>,
}

/// Why the signature partition was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigPartError {
    /// Larger than [`MAX_SIZE`].
    #[error("signature partition is {0} bytes, more than the 4 MiB systemd accepts")]
    TooLarge(u64),
    /// A byte other than NUL after the JSON text.
    #[error("non-NUL byte at offset {0} after the JSON text")]
    TrailingGarbage(usize),
    /// Not JSON, or not an object of the expected shape.
    #[error("signature JSON is malformed: {0}")]
    Json(String),
    /// A mandatory field is missing.
    #[error("signature JSON lacks the mandatory '{0}' field")]
    Missing(&'static str),
    /// `rootHash` is not lower-case hex of a plausible length.
    #[error("signature JSON rootHash is not lower-case hex of at least 16 bytes")]
    BadRootHash,
    /// `signature` is not base64.
    #[error("signature JSON 'signature' is not valid base64")]
    BadBase64,
    /// `certificateFingerprint` is not 64 lower-case hex digits.
    #[error("signature JSON certificateFingerprint is not a SHA-256 in lower-case hex")]
    BadFingerprint,
}

#[derive(Serialize, Deserialize)]
struct Raw {
    #[serde(rename = "rootHash")]
    root_hash: Option<serde_json::Value>,
    #[serde(
        rename = "certificateFingerprint",
        skip_serializing_if = "Option::is_none"
    )]
    cert_fingerprint: Option<serde_json::Value>,
    signature: Option<serde_json::Value>,
}

fn is_lower_hex(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
}

/// Parses a whole partition's bytes.
pub fn parse(buf: &[u8]) -> Result<SigPart, SigPartError> {
    if buf.len() as u64 > MAX_SIZE {
        return Err(SigPartError::TooLarge(buf.len() as u64));
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    if let Some(p) = buf[end..].iter().position(|&b| b != 0) {
        return Err(SigPartError::TrailingGarbage(end + p));
    }
    let raw: Raw =
        serde_json::from_slice(&buf[..end]).map_err(|e| SigPartError::Json(e.to_string()))?;
    let rh = match raw.root_hash {
        None | Some(serde_json::Value::Null) => return Err(SigPartError::Missing("rootHash")),
        Some(serde_json::Value::String(s)) => s,
        Some(_) => return Err(SigPartError::BadRootHash),
    };
    if !is_lower_hex(&rh) || rh.len() % 2 != 0 || rh.len() < 32 {
        return Err(SigPartError::BadRootHash);
    }
    let root_hash = crate::hex::decode(&rh).map_err(|_| SigPartError::BadRootHash)?;
    let sig = match raw.signature {
        None | Some(serde_json::Value::Null) => return Err(SigPartError::Missing("signature")),
        Some(serde_json::Value::String(s)) => s,
        Some(_) => return Err(SigPartError::BadBase64),
    };
    let signature = base64_decode(&sig).ok_or(SigPartError::BadBase64)?;
    if signature.is_empty() {
        return Err(SigPartError::BadBase64);
    }
    let cert_fingerprint = match raw.cert_fingerprint {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(s)) if s.len() == 64 && is_lower_hex(&s) => {
            let mut f = [0u8; 32];
            f.copy_from_slice(&crate::hex::decode(&s).map_err(|_| SigPartError::BadFingerprint)?);
            Some(f)
        }
        Some(_) => return Err(SigPartError::BadFingerprint),
    };
    Ok(SigPart {
        root_hash,
        signature,
        cert_fingerprint,
    })
}

/// Serialises to the JSON text (no padding), fields in systemd-repart's order.
pub fn to_json(sp: &SigPart) -> String {
    let raw = Raw {
        root_hash: Some(crate::hex::encode(&sp.root_hash).into()),
        cert_fingerprint: sp.cert_fingerprint.map(|f| crate::hex::encode(&f).into()),
        signature: Some(base64_encode(&sp.signature).into()),
    };
    serde_json::to_string(&raw).expect("plain strings serialise")
}

/// The partition contents: the JSON padded with NUL to `size` (at least the next 4096 multiple).
pub fn to_partition(sp: &SigPart, size: usize) -> Vec<u8> {
    let mut v = to_json(sp).into_bytes();
    let min = v.len().div_ceil(4096) * 4096;
    v.resize(size.max(min), 0);
    v
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding.
pub fn base64_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= c.len() {
                out.push(B64[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Standard base64; whitespace is skipped (PEM bodies), padding optional at the end only.
pub fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() / 4 * 3);
    let mut acc = 0u32;
    let mut bits = 0;
    let mut pad = 0;
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => {
                pad += 1;
                continue;
            }
            b' ' | b'\n' | b'\r' | b'\t' => continue,
            _ => return None,
        };
        if pad > 0 {
            return None;
        }
        acc = acc << 6 | v as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    if pad > 2 || bits >= 6 || acc != 0 {
        return None;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> SigPart {
        SigPart {
            root_hash: vec![0xab; 32],
            signature: vec![1, 2, 3, 4, 5],
            cert_fingerprint: Some([0x11; 32]),
        }
    }

    #[test]
    fn base64_known_answers() {
        for (raw, enc) in [
            (&b""[..], ""),
            (b"f", "Zg=="),
            (b"fo", "Zm8="),
            (b"foo", "Zm9v"),
            (b"foob", "Zm9vYg=="),
            (b"fooba", "Zm9vYmE="),
            (b"foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64_encode(raw), enc);
            assert_eq!(base64_decode(enc).unwrap(), raw);
        }
        assert_eq!(base64_decode("Zm9v!"), None);
        assert_eq!(base64_decode("Zg==Zg=="), None);
    }

    #[test]
    fn round_trip_and_padding() {
        let p = to_partition(&sample(), DEFAULT_SIZE);
        assert_eq!(p.len(), DEFAULT_SIZE);
        assert_eq!(parse(&p).unwrap(), sample());
        let json = to_json(&sample());
        assert!(json.starts_with("{\"rootHash\":\"abab"));
        assert!(json.contains("\"certificateFingerprint\":\"1111"));
    }

    #[test]
    fn systemd_rules() {
        let mut p = to_partition(&sample(), DEFAULT_SIZE);
        p[DEFAULT_SIZE - 1] = b' ';
        assert_eq!(
            parse(&p),
            Err(SigPartError::TrailingGarbage(DEFAULT_SIZE - 1))
        );
        assert_eq!(
            parse(&vec![0u8; MAX_SIZE as usize + 1]),
            Err(SigPartError::TooLarge(MAX_SIZE + 1))
        );
        assert_eq!(
            parse(br#"{"signature":"AAAA"}"#),
            Err(SigPartError::Missing("rootHash"))
        );
        let rh = "ab".repeat(32);
        assert_eq!(
            parse(format!(r#"{{"rootHash":"{rh}"}}"#).as_bytes()),
            Err(SigPartError::Missing("signature"))
        );
        assert_eq!(
            parse(
                format!(
                    r#"{{"rootHash":"{}","signature":"AAAA"}}"#,
                    rh.to_uppercase()
                )
                .as_bytes()
            ),
            Err(SigPartError::BadRootHash)
        );
        assert!(matches!(parse(b"not json"), Err(SigPartError::Json(_))));
        let ok = parse(format!(r#"{{"rootHash":"{rh}","signature":"AAAA","extra":1}}"#).as_bytes())
            .unwrap();
        assert_eq!(ok.cert_fingerprint, None);
    }
}
