//! Salted block hashing for both on-disk formats: format 1 is H(salt || block), format 0 (Chrome OS)
//! is H(block || salt). For format 1 the salt is absorbed once and the state cloned per block.

use crate::digest::{HashAlg, Hasher};

/// Hashes blocks with a fixed algorithm, salt and format.
#[derive(Clone)]
pub struct BlockHasher {
    alg: HashAlg,
    prefix: Hasher,
    suffix: Vec<u8>,
}

impl BlockHasher {
    /// `hash_type` 1 puts the salt first, 0 puts it last.
    pub fn new(alg: HashAlg, salt: &[u8], hash_type: u32) -> Self {
        let mut prefix = alg.hasher();
        let suffix = if hash_type == 0 {
            salt.to_vec()
        } else {
            prefix.update(salt);
            Vec::new()
        };
        Self {
            alg,
            prefix,
            suffix,
        }
    }

    /// The algorithm.
    pub fn alg(&self) -> HashAlg {
        self.alg
    }

    /// Digest size in bytes.
    pub fn digest_size(&self) -> usize {
        self.alg.digest_size()
    }

    /// Hashes one block into `out` (at least the digest size).
    pub fn hash_into(&self, block: &[u8], out: &mut [u8]) {
        let mut h = self.prefix.clone();
        h.update(block);
        if !self.suffix.is_empty() {
            h.update(&self.suffix);
        }
        h.finish_into(out);
    }

    /// Hashes one block into a new vector.
    pub fn hash(&self, block: &[u8]) -> Vec<u8> {
        let mut out = vec![0u8; self.digest_size()];
        self.hash_into(block, &mut out);
        out
    }
}
