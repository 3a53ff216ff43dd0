//! Salted block hashing for both on-disk formats: format 1 is H(salt || block), format 0 (Chrome OS)
//! is H(block || salt). For format 1 the salt is absorbed once and the state cloned per block.
//!
//! Runs of blocks go through [`BlockHasher::hash_many`], which hands them to a batch kernel when
//! one exists for the algorithm: for SHA-256 that is the multi-buffer kernel in
//! `crate::sys::simd::sha256_mb` (AVX-512 16 lanes / SHA-NI 2 streams), several times faster than one
//! block at a time. Layering exception: this pure-core file names that `sys` function, once, in
//! [`BlockHasher::new`]. It is pure computation (no I/O, no state; `sys` only because its SIMD
//! intrinsics need the unchecked code that only `sys` may hold), and reaching it through the [`BatchFn`] pointer keeps the rest of the tree
//! code unaware of it; [`BlockHasher::with_batch`] swaps or removes it (tests, other kernels).

use crate::digest::{HashAlg, Hasher};

/// A batch kernel: writes the digest of `salt || block` (`salt_first`) or `block || salt` for
/// every `block_size` block of `blocks` into `out`, back to back.
pub type BatchFn =
    fn(salt: &[u8], salt_first: bool, blocks: &[u8], block_size: usize, out: &mut [u8]);

/// Hashes blocks with a fixed algorithm, salt and format.
#[derive(Clone)]
pub struct BlockHasher {
    alg: HashAlg,
    prefix: Hasher,
    suffix: Vec<u8>,
    salt: Vec<u8>,
    salt_first: bool,
    batch: Option<BatchFn>,
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
        let batch: Option<BatchFn> = match alg {
            HashAlg::Sha256 => Some(crate::sys::simd::sha256_mb::hash_salted_blocks),
            _ => None,
        };
        Self {
            alg,
            prefix,
            suffix,
            salt: salt.to_vec(),
            salt_first: hash_type != 0,
            batch,
        }
    }

    /// The same hasher with another batch kernel, or none (every block through [`Self::hash_into`]).
    /// The kernel must compute this hasher's algorithm.
    pub fn with_batch(mut self, batch: Option<BatchFn>) -> Self {
        self.batch = batch;
        self
    }

    /// Hashes every `block_size` block of `blocks` into `out` (digest-size slots back to back).
    /// Panics if `blocks` is not whole blocks or `out` is not one digest per block.
    pub fn hash_many(&self, blocks: &[u8], block_size: usize, out: &mut [u8]) {
        let d = self.digest_size();
        assert!(block_size > 0 && blocks.len().is_multiple_of(block_size));
        assert_eq!(out.len(), blocks.len() / block_size * d);
        match self.batch {
            Some(f) => f(&self.salt, self.salt_first, blocks, block_size, out),
            None => {
                for (b, o) in blocks.chunks(block_size).zip(out.chunks_mut(d)) {
                    self.hash_into(b, o);
                }
            }
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
