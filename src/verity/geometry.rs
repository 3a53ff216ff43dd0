//! Tree geometry: hashes per block, level sizes and their on-disk positions (top level first), and
//! the parameter checks veritysetup applies. Everything the kernel needs to find a digest.

use crate::digest::HashAlg;
use thiserror::Error;

/// The smallest and largest block size veritysetup accepts.
pub const MIN_BLOCK: u32 = 512;
/// See [`MIN_BLOCK`].
pub const MAX_BLOCK: u32 = 512 * 1024;
/// The largest salt the superblock can hold.
pub const MAX_SALT: usize = 256;

/// Parameters that define a tree (everything but where it sits).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Params {
    /// Hash algorithm.
    pub alg: HashAlg,
    /// Data block size in bytes.
    pub data_block_size: u32,
    /// Hash block size in bytes.
    pub hash_block_size: u32,
    /// Number of data blocks covered.
    pub data_blocks: u64,
    /// Salt, possibly empty.
    pub salt: Vec<u8>,
    /// 1 = normal, 0 = Chrome OS.
    pub hash_type: u32,
}

/// A parameter that veritysetup (or the kernel) would refuse.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum GeometryError {
    #[error("{which} block size {size} is not a power of two between 512 and 524288 bytes")]
    BlockSize { which: &'static str, size: u64 },
    #[error("salt is {0} bytes; at most 256 are allowed")]
    SaltTooLong(usize),
    #[error("hash type {0} is not supported (0 or 1)")]
    HashType(u32),
    #[error("data has no complete block of {0} bytes to protect")]
    NoData(u32),
    #[error("digest of {alg} is too big for {hash_block_size}-byte hash blocks")]
    DigestTooBig { alg: HashAlg, hash_block_size: u32 },
    #[error("hash offset {0} is not a multiple of 512")]
    HashOffsetAlign(u64),
    #[error("tree too deep ({0} levels)")]
    TooDeep(usize),
    #[error("hash area overflows 64-bit offsets")]
    Overflow,
    #[error(
        "data size overflows: {blocks} data blocks of {block_size} bytes is more than 2^64 bytes"
    )]
    DataOverflow { blocks: u64, block_size: u32 },
}

/// Checks that a block size is a power of two in 512 ..= 512 KiB.
pub fn check_block_size(which: &'static str, size: u64) -> Result<u32, GeometryError> {
    if size.is_power_of_two() && (MIN_BLOCK as u64..=MAX_BLOCK as u64).contains(&size) {
        Ok(size as u32)
    } else {
        Err(GeometryError::BlockSize { which, size })
    }
}

/// One level of the tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Level {
    /// First block of the level, in hash blocks from the start of the hash device.
    pub start: u64,
    /// Number of blocks in the level.
    pub blocks: u64,
}

/// A tree's layout on the hash device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Geometry {
    /// The parameters.
    pub params: Params,
    /// First tree block (the top level), in hash blocks from the start of the hash device.
    pub hash_start_block: u64,
    /// Levels, index 0 = digests of the data blocks. Empty when there is one data block.
    pub levels: Vec<Level>,
    /// log2 of the digests per hash block.
    pub hpb_bits: u32,
    /// Bytes between consecutive digests in a hash block (a power of two for format 1, the digest
    /// size for format 0).
    pub slot_size: usize,
}

impl Params {
    /// Validates the parameters on their own.
    pub fn check(&self) -> Result<(), GeometryError> {
        check_block_size("data", self.data_block_size as u64)?;
        check_block_size("hash", self.hash_block_size as u64)?;
        if self.salt.len() > MAX_SALT {
            return Err(GeometryError::SaltTooLong(self.salt.len()));
        }
        if self.hash_type > 1 {
            return Err(GeometryError::HashType(self.hash_type));
        }
        if self.data_blocks == 0 {
            return Err(GeometryError::NoData(self.data_block_size));
        }
        if 2 * self.alg.digest_size() > self.hash_block_size as usize {
            return Err(GeometryError::DigestTooBig {
                alg: self.alg,
                hash_block_size: self.hash_block_size,
            });
        }
        Ok(())
    }
}

/// Where the tree starts for a given hash offset: after the 512-byte superblock, rounded up to a
/// hash block; without a superblock, at the hash block that holds the offset.
pub fn hash_start_block(
    hash_offset: u64,
    hash_block_size: u32,
    superblock: bool,
) -> Result<u64, GeometryError> {
    if !hash_offset.is_multiple_of(512) {
        return Err(GeometryError::HashOffsetAlign(hash_offset));
    }
    let hbs = hash_block_size as u64;
    Ok(if superblock {
        hash_offset
            .checked_add(512)
            .ok_or(GeometryError::Overflow)?
            .div_ceil(hbs)
    } else {
        hash_offset / hbs
    })
}

impl Geometry {
    /// Lays out the tree for `params` starting at `hash_start_block`.
    pub fn new(params: Params, hash_start_block: u64) -> Result<Self, GeometryError> {
        params.check()?;
        // data_size() multiplies these; a crafted superblock must not make that wrap.
        params
            .data_blocks
            .checked_mul(params.data_block_size as u64)
            .ok_or(GeometryError::DataOverflow {
                blocks: params.data_blocks,
                block_size: params.data_block_size,
            })?;
        let d = params.alg.digest_size();
        let hbs = params.hash_block_size as usize;
        // Digests per block: the largest power of two that fits.
        let hpb_bits = (hbs / d).ilog2();
        let slot_size = if params.hash_type == 1 {
            hbs >> hpb_bits
        } else {
            d
        };
        let n = params.data_blocks;
        let mut counts = Vec::new();
        let mut blocks = n;
        while blocks > 1 {
            blocks = blocks.div_ceil(1u64 << hpb_bits);
            counts.push(blocks);
            if counts.len() > 63 {
                return Err(GeometryError::TooDeep(counts.len()));
            }
        }
        // On disk: top level first, level 0 last.
        let mut levels = vec![
            Level {
                start: 0,
                blocks: 0
            };
            counts.len()
        ];
        let mut pos = hash_start_block;
        for (i, &c) in counts.iter().enumerate().rev() {
            levels[i] = Level {
                start: pos,
                blocks: c,
            };
            pos = pos.checked_add(c).ok_or(GeometryError::Overflow)?;
        }
        pos.checked_mul(hbs as u64).ok_or(GeometryError::Overflow)?;
        Ok(Self {
            params,
            hash_start_block,
            levels,
            hpb_bits,
            slot_size,
        })
    }

    /// Digests per hash block.
    pub fn hashes_per_block(&self) -> u64 {
        1 << self.hpb_bits
    }

    /// Number of tree blocks (0 for a single data block).
    pub fn tree_blocks(&self) -> u64 {
        self.levels.iter().map(|l| l.blocks).sum()
    }

    /// Byte offset just past the tree on the hash device.
    pub fn hash_end(&self) -> u64 {
        (self.hash_start_block + self.tree_blocks()) * self.params.hash_block_size as u64
    }

    /// Bytes of data covered (cannot overflow: [`Geometry::new`] checked it).
    pub fn data_size(&self) -> u64 {
        self.params.data_blocks * self.params.data_block_size as u64
    }

    /// Number of blocks at `level`, where level -1 (as `None`) means the data.
    pub fn count_below(&self, level: usize) -> u64 {
        if level == 0 {
            self.params.data_blocks
        } else {
            self.levels[level - 1].blocks
        }
    }

    /// For entry `index` of the layer below `level` (data blocks for level 0), the hash block that
    /// holds its digest (absolute, in hash blocks) and the byte offset inside that block.
    pub fn locate(&self, level: usize, index: u64) -> (u64, usize) {
        let block = self.levels[level].start + (index >> self.hpb_bits);
        let slot = (index & (self.hashes_per_block() - 1)) as usize;
        (block, slot * self.slot_size)
    }

    /// The bytes of a hash block that hold digests when the block has `entries` slots used; the
    /// rest must be zero.
    pub fn used_bytes(&self, entries: u64) -> usize {
        if entries == 0 {
            0
        } else {
            (entries as usize - 1) * self.slot_size + self.params.alg.digest_size()
        }
    }

    /// The number of entries in block `block_index` of `level`.
    pub fn entries_in(&self, level: usize, block_index: u64) -> u64 {
        let below = self.count_below(level);
        let first = block_index << self.hpb_bits;
        (below - first).min(self.hashes_per_block())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(n: u64, alg: HashAlg, hbs: u32, hash_type: u32) -> Params {
        Params {
            alg,
            data_block_size: 4096,
            hash_block_size: hbs,
            data_blocks: n,
            salt: vec![],
            hash_type,
        }
    }

    #[test]
    fn level_sizes_match_the_spec_examples() {
        let g = Geometry::new(params(300, HashAlg::Sha256, 4096, 1), 1).unwrap();
        assert_eq!(
            g.levels,
            vec![
                Level {
                    start: 2,
                    blocks: 3
                },
                Level {
                    start: 1,
                    blocks: 1
                }
            ]
        );
        assert_eq!(g.hash_end(), 20480);
        let g = Geometry::new(params(16385, HashAlg::Sha256, 4096, 1), 1).unwrap();
        assert_eq!(
            g.levels.iter().map(|l| l.blocks).collect::<Vec<_>>(),
            vec![129, 2, 1]
        );
        assert_eq!(g.hash_end(), 544768);
        let g = Geometry::new(params(262144, HashAlg::Sha256, 4096, 1), 1).unwrap();
        assert_eq!(g.tree_blocks(), 2065);
        let g = Geometry::new(params(1, HashAlg::Sha256, 4096, 1), 1).unwrap();
        assert!(g.levels.is_empty());
        assert_eq!(g.hash_end(), 4096);
    }

    #[test]
    fn slots_per_format() {
        let g = Geometry::new(params(300, HashAlg::Sha1, 4096, 1), 1).unwrap();
        assert_eq!((g.hashes_per_block(), g.slot_size), (128, 32));
        let g = Geometry::new(params(300, HashAlg::Sha1, 4096, 0), 1).unwrap();
        assert_eq!((g.hashes_per_block(), g.slot_size), (128, 20));
        let g = Geometry::new(params(300, HashAlg::Sha512, 4096, 1), 1).unwrap();
        assert_eq!(g.hashes_per_block(), 64);
        assert_eq!(g.used_bytes(44), 43 * 64 + 64);
    }

    #[test]
    fn hash_start() {
        assert_eq!(hash_start_block(0, 4096, true), Ok(1));
        assert_eq!(hash_start_block(0, 512, true), Ok(1));
        assert_eq!(hash_start_block(1228800, 4096, true), Ok(301));
        assert_eq!(hash_start_block(8192, 4096, false), Ok(2));
        assert_eq!(
            hash_start_block(100, 4096, true),
            Err(GeometryError::HashOffsetAlign(100))
        );
    }

    #[test]
    fn rejects_bad_params() {
        assert!(matches!(
            check_block_size("data", 333),
            Err(GeometryError::BlockSize { .. })
        ));
        assert!(check_block_size("data", 1 << 20).is_err());
        let mut p = params(10, HashAlg::Sha256, 4096, 1);
        p.salt = vec![0; 257];
        assert_eq!(p.check(), Err(GeometryError::SaltTooLong(257)));
        let p = params(10, HashAlg::Sha512, 512, 1);
        assert!(p.check().is_ok());
        let p = params(0, HashAlg::Sha256, 4096, 1);
        assert_eq!(p.check(), Err(GeometryError::NoData(4096)));
    }
}
