//! TPM 2.0 wire format (pure core): a bounds-checked big-endian reader for the marshalled
//! structures of TPM 2.0 Part 2, and the algorithm identifiers this crate understands. Every
//! parser of untrusted TPM bytes reads through [`Reader`], so a short or oversized field is an
//! error naming the structure, the field and the byte offset, never a panic or an allocation
//! larger than the input.

use crate::digest::HashAlg;
use thiserror::Error;

/// TPM_ALG_RSA.
pub const ALG_RSA: u16 = 0x0001;
/// TPM_ALG_SHA1.
pub const ALG_SHA1: u16 = 0x0004;
/// TPM_ALG_SHA256.
pub const ALG_SHA256: u16 = 0x000b;
/// TPM_ALG_SHA384.
pub const ALG_SHA384: u16 = 0x000c;
/// TPM_ALG_SHA512.
pub const ALG_SHA512: u16 = 0x000d;
/// TPM_ALG_NULL.
pub const ALG_NULL: u16 = 0x0010;
/// TPM_ALG_RSASSA (PKCS#1 v1.5).
pub const ALG_RSASSA: u16 = 0x0014;
/// TPM_ALG_RSAES.
pub const ALG_RSAES: u16 = 0x0015;
/// TPM_ALG_RSAPSS.
pub const ALG_RSAPSS: u16 = 0x0016;
/// TPM_ALG_OAEP.
pub const ALG_OAEP: u16 = 0x0017;
/// TPM_ALG_ECDSA.
pub const ALG_ECDSA: u16 = 0x0018;
/// TPM_ALG_ECDH.
pub const ALG_ECDH: u16 = 0x0019;
/// TPM_ALG_ECDAA.
pub const ALG_ECDAA: u16 = 0x001a;
/// TPM_ALG_SM2.
pub const ALG_SM2: u16 = 0x001b;
/// TPM_ALG_ECSCHNORR.
pub const ALG_ECSCHNORR: u16 = 0x001c;
/// TPM_ALG_KEYEDHASH.
pub const ALG_KEYEDHASH: u16 = 0x0008;
/// TPM_ALG_SYMCIPHER.
pub const ALG_SYMCIPHER: u16 = 0x0025;
/// TPM_ALG_ECC.
pub const ALG_ECC: u16 = 0x0023;

/// The hash algorithm with TPM identifier `id`, if it is one of ours.
pub fn hash_of_alg(id: u16) -> Option<HashAlg> {
    match id {
        ALG_SHA1 => Some(HashAlg::Sha1),
        ALG_SHA256 => Some(HashAlg::Sha256),
        ALG_SHA384 => Some(HashAlg::Sha384),
        ALG_SHA512 => Some(HashAlg::Sha512),
        _ => None,
    }
}

/// The TPM identifier of a hash algorithm.
pub fn alg_of_hash(h: HashAlg) -> u16 {
    match h {
        HashAlg::Sha1 => ALG_SHA1,
        HashAlg::Sha256 => ALG_SHA256,
        HashAlg::Sha384 => ALG_SHA384,
        HashAlg::Sha512 => ALG_SHA512,
    }
}

/// Why bytes are not the TPM structure they claim to be.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{structure} byte offset {offset}: {what}")]
pub struct WireError {
    /// The structure being read (TPM2B_PUBLIC, TPMS_ATTEST, ...).
    pub structure: &'static str,
    /// Where in the input the problem is.
    pub offset: usize,
    /// What is wrong there.
    pub what: String,
}

/// A cursor over marshalled TPM bytes (big-endian, sized buffers with u16 lengths).
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    structure: &'static str,
}

impl<'a> Reader<'a> {
    /// Reads `buf` as the structure named `structure` (the name goes into every error).
    pub fn new(buf: &'a [u8], structure: &'static str) -> Self {
        Self {
            buf,
            pos: 0,
            structure,
        }
    }

    /// The current byte offset.
    pub fn offset(&self) -> usize {
        self.pos
    }

    /// An error at the current offset.
    pub fn err(&self, what: impl Into<String>) -> WireError {
        self.err_at(self.pos, what)
    }

    /// An error at `offset`.
    pub fn err_at(&self, offset: usize, what: impl Into<String>) -> WireError {
        WireError {
            structure: self.structure,
            offset,
            what: what.into(),
        }
    }

    /// The next `n` bytes.
    pub fn take(&mut self, n: usize, field: &str) -> Result<&'a [u8], WireError> {
        let left = self.buf.len() - self.pos;
        if n > left {
            return Err(self.err(format!(
                "{field} needs {n} bytes but only {left} remain (truncated)"
            )));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    /// A u8.
    pub fn u8(&mut self, field: &str) -> Result<u8, WireError> {
        Ok(self.take(1, field)?[0])
    }

    /// A big-endian u16.
    pub fn u16(&mut self, field: &str) -> Result<u16, WireError> {
        let b = self.take(2, field)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    /// A big-endian u32.
    pub fn u32(&mut self, field: &str) -> Result<u32, WireError> {
        let b = self.take(4, field)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A big-endian u64.
    pub fn u64(&mut self, field: &str) -> Result<u64, WireError> {
        let b = self.take(8, field)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }

    /// A TPM2B: a u16 size then that many bytes, at most `max` (the structure's buffer size).
    pub fn sized(&mut self, field: &str, max: usize) -> Result<&'a [u8], WireError> {
        let at = self.pos;
        let n = self.u16(field)? as usize;
        if n > max {
            return Err(self.err_at(
                at,
                format!("{field} claims {n} bytes, more than its maximum of {max}"),
            ));
        }
        self.take(n, field)
    }

    /// Fails unless every byte was read.
    pub fn finish(&self) -> Result<(), WireError> {
        if self.pos == self.buf.len() {
            Ok(())
        } else {
            Err(self.err(format!(
                "{} trailing bytes after the structure",
                self.buf.len() - self.pos
            )))
        }
    }
}

/// Appends a TPM2B (u16 big-endian size, then the bytes).
pub fn put_sized(out: &mut Vec<u8>, data: &[u8]) {
    out.extend_from_slice(&(data.len() as u16).to_be_bytes());
    out.extend_from_slice(data);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reader_bounds_and_errors() {
        let b = [0x00, 0x03, 1, 2, 3, 0xff];
        let mut r = Reader::new(&b, "TEST");
        assert_eq!(r.sized("x", 3).unwrap(), &[1, 2, 3]);
        assert_eq!(r.offset(), 5);
        let e = r.finish().unwrap_err();
        assert_eq!(e.offset, 5);
        assert!(e.to_string().contains("1 trailing bytes"), "{e}");
        let e = r.u16("y").unwrap_err();
        assert!(e.to_string().contains("y needs 2 bytes but only 1"), "{e}");
        let mut r = Reader::new(&b, "TEST");
        let e = r.sized("x", 2).unwrap_err();
        assert_eq!(
            e.to_string(),
            "TEST byte offset 0: x claims 3 bytes, more than its maximum of 2"
        );
        let mut r = Reader::new(&[0, 9, 1], "TEST");
        assert!(r
            .sized("x", 64)
            .unwrap_err()
            .to_string()
            .contains("truncated"));
    }

    #[test]
    fn hash_ids_round_trip() {
        for h in [
            HashAlg::Sha1,
            HashAlg::Sha256,
            HashAlg::Sha384,
            HashAlg::Sha512,
        ] {
            assert_eq!(hash_of_alg(alg_of_hash(h)), Some(h));
        }
        assert_eq!(hash_of_alg(ALG_NULL), None);
    }
}
