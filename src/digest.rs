//! Hash algorithms by their kernel/veritysetup names, with a cloneable streaming state so a salted
//! prefix can be absorbed once and reused for every block.
//!
//! Layer L1 (`tests/layering.rs`): above `hex` only.

use sha1::Sha1;
use sha2::{Digest, Sha256, Sha384, Sha512};
use thiserror::Error;

/// A hash algorithm known to both the kernel crypto API and veritysetup under the same name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HashAlg {
    Sha1,
    Sha256,
    Sha384,
    Sha512,
}

/// An algorithm name that is not supported.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("unsupported hash algorithm {0:?} (supported: sha1, sha256, sha384, sha512)")]
pub struct UnknownHash(pub String);

impl HashAlg {
    /// Parses a name case-insensitively, as veritysetup lower-cases what it writes.
    pub fn from_name(name: &str) -> Result<Self, UnknownHash> {
        match name.to_ascii_lowercase().as_str() {
            "sha1" => Ok(Self::Sha1),
            "sha256" => Ok(Self::Sha256),
            "sha384" => Ok(Self::Sha384),
            "sha512" => Ok(Self::Sha512),
            _ => Err(UnknownHash(name.to_string())),
        }
    }

    /// The lower-case name used in superblocks, tables and event logs.
    pub fn name(self) -> &'static str {
        match self {
            Self::Sha1 => "sha1",
            Self::Sha256 => "sha256",
            Self::Sha384 => "sha384",
            Self::Sha512 => "sha512",
        }
    }

    /// Digest size in bytes.
    pub fn digest_size(self) -> usize {
        match self {
            Self::Sha1 => 20,
            Self::Sha256 => 32,
            Self::Sha384 => 48,
            Self::Sha512 => 64,
        }
    }

    /// A fresh streaming state.
    pub fn hasher(self) -> Hasher {
        match self {
            Self::Sha1 => Hasher::Sha1(Sha1::new()),
            Self::Sha256 => Hasher::Sha256(Sha256::new()),
            Self::Sha384 => Hasher::Sha384(Sha384::new()),
            Self::Sha512 => Hasher::Sha512(Sha512::new()),
        }
    }

    /// One-shot digest.
    pub fn digest(self, data: &[u8]) -> Vec<u8> {
        let mut h = self.hasher();
        h.update(data);
        h.finish_vec()
    }
}

impl std::fmt::Display for HashAlg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A streaming hash state; `Clone` is cheap, which is what makes the salted-prefix reuse work.
#[derive(Clone)]
pub enum Hasher {
    Sha1(Sha1),
    Sha256(Sha256),
    Sha384(Sha384),
    Sha512(Sha512),
}

impl Hasher {
    /// Absorbs bytes.
    pub fn update(&mut self, data: &[u8]) {
        match self {
            Self::Sha1(h) => h.update(data),
            Self::Sha256(h) => h.update(data),
            Self::Sha384(h) => h.update(data),
            Self::Sha512(h) => h.update(data),
        }
    }

    /// Writes the digest into `out`, which must be at least the digest size; returns the size.
    pub fn finish_into(self, out: &mut [u8]) -> usize {
        match self {
            Self::Sha1(h) => put(out, &h.finalize()),
            Self::Sha256(h) => put(out, &h.finalize()),
            Self::Sha384(h) => put(out, &h.finalize()),
            Self::Sha512(h) => put(out, &h.finalize()),
        }
    }

    /// The digest as a new vector.
    pub fn finish_vec(self) -> Vec<u8> {
        let mut v = vec![0u8; 64];
        let n = self.finish_into(&mut v);
        v.truncate(n);
        v
    }
}

fn put(out: &mut [u8], d: &[u8]) -> usize {
    out[..d.len()].copy_from_slice(d);
    d.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_known_answers() {
        assert_eq!(HashAlg::from_name("SHA256").unwrap(), HashAlg::Sha256);
        assert_eq!(
            HashAlg::from_name("md5"),
            Err(UnknownHash("md5".to_string()))
        );
        assert_eq!(
            crate::hex::encode(&HashAlg::Sha256.digest(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            crate::hex::encode(&HashAlg::Sha1.digest(b"abc")),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
        for a in [
            HashAlg::Sha1,
            HashAlg::Sha256,
            HashAlg::Sha384,
            HashAlg::Sha512,
        ] {
            assert_eq!(a.digest(b"").len(), a.digest_size());
        }
    }
}
