//! Where FEC codewords come from and where their parity goes: which blocks are covered (data, then
//! the hash device from the tree's first block, superblock excluded), the interleaving (symbol `j`
//! of round `n` is covered block `j * rounds + n`) and the parity offsets. Pure arithmetic.

use super::rs::{MAX_ROOTS, MIN_ROOTS, N};
use super::FecError;

/// The FEC geometry of one image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FecLayout {
    /// Data and hash block size (they must be equal).
    pub block_size: u32,
    /// Parity bytes per codeword.
    pub roots: u32,
    /// Data blocks covered (all of the tree's data blocks).
    pub data_blocks: u64,
    /// First tree block on the hash device, in blocks.
    pub hash_start: u64,
    /// Hash-device blocks covered, from `hash_start` on.
    pub hash_blocks: u64,
    /// Byte offset of the parity on the FEC device.
    pub fec_offset: u64,
}

/// Where a covered block's bytes live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// On the data device at this byte offset.
    Data(u64),
    /// On the hash device at this byte offset.
    Hash(u64),
    /// Virtual zero padding past the covered blocks.
    Zero,
}

/// How many hash-device blocks FEC covers, as veritysetup computes it: up to the end of the
/// hash device, or up to the parity when the parity is on the hash device itself.
pub fn covered_hash_blocks(
    hash_device_size: u64,
    fec_offset: u64,
    fec_on_hash_device: bool,
    block_size: u32,
    hash_start: u64,
) -> u64 {
    let end = if fec_on_hash_device {
        fec_offset
    } else {
        hash_device_size
    };
    (end / block_size as u64).saturating_sub(hash_start)
}

impl FecLayout {
    /// Checks the parameters the way veritysetup does.
    pub fn new(
        data_block_size: u32,
        hash_block_size: u32,
        roots: u32,
        data_blocks: u64,
        hash_start: u64,
        hash_blocks: u64,
        fec_offset: u64,
    ) -> Result<Self, FecError> {
        if data_block_size != hash_block_size {
            return Err(FecError::BlockSizes {
                data: data_block_size,
                hash: hash_block_size,
            });
        }
        if !(MIN_ROOTS..=MAX_ROOTS).contains(&roots) {
            return Err(FecError::Roots(roots));
        }
        if !fec_offset.is_multiple_of(512) {
            return Err(FecError::OffsetAlign(fec_offset));
        }
        if data_blocks == 0 {
            return Err(FecError::Empty);
        }
        Ok(Self {
            block_size: data_block_size,
            roots,
            data_blocks,
            hash_start,
            hash_blocks,
            fec_offset,
        })
    }

    /// Message symbols per codeword.
    pub fn k(&self) -> u64 {
        (N as u32 - self.roots) as u64
    }

    /// Covered blocks: the kernel's `fec_blocks`.
    pub fn covered_blocks(&self) -> u64 {
        self.data_blocks + self.hash_blocks
    }

    /// Rounds (interleaving depth in blocks): ceil(covered / k).
    pub fn rounds(&self) -> u64 {
        self.covered_blocks().div_ceil(self.k())
    }

    /// Parity size in blocks (veritysetup's "FEC blocks").
    pub fn parity_blocks(&self) -> u64 {
        self.rounds() * self.roots as u64
    }

    /// Parity size in bytes.
    pub fn parity_bytes(&self) -> u64 {
        self.parity_blocks() * self.block_size as u64
    }

    /// Bytes of parity per round (one codeword per byte of a block).
    pub fn round_parity_bytes(&self) -> usize {
        self.block_size as usize * self.roots as usize
    }

    /// Byte offset of round `n`'s parity on the FEC device.
    pub fn parity_offset(&self, round: u64) -> u64 {
        self.fec_offset + round * self.round_parity_bytes() as u64
    }

    /// The covered block at symbol `j` of round `n`.
    pub fn block_at(&self, round: u64, j: u64) -> u64 {
        j * self.rounds() + round
    }

    /// (round, symbol) of covered block `x`.
    pub fn position_of(&self, x: u64) -> (u64, usize) {
        let r = self.rounds();
        (x % r, (x / r) as usize)
    }

    /// Where covered block `x` is read from.
    pub fn origin(&self, x: u64) -> Origin {
        let bs = self.block_size as u64;
        if x < self.data_blocks {
            Origin::Data(x * bs)
        } else if x < self.covered_blocks() {
            Origin::Hash((x - self.data_blocks + self.hash_start) * bs)
        } else {
            Origin::Zero
        }
    }

    /// The covered index of hash-device block `abs` (counted from the start of the hash device),
    /// if FEC covers it.
    pub fn covered_hash_block(&self, abs: u64) -> Option<u64> {
        (abs >= self.hash_start && abs - self.hash_start < self.hash_blocks)
            .then(|| abs - self.hash_start + self.data_blocks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_sizes() {
        // dm-verity.md 3.3: vector B (300 data blocks, 4 tree blocks after a superblock).
        let hb = covered_hash_blocks(20480, 0, false, 4096, 1);
        assert_eq!(hb, 4);
        for (roots, rs_blocks, bytes) in [(2, 4, 16384), (7, 14, 57344)] {
            let l = FecLayout::new(4096, 4096, roots, 300, 1, hb, 0).unwrap();
            assert_eq!(l.covered_blocks(), 304);
            assert_eq!(l.rounds(), 2);
            assert_eq!(l.parity_blocks(), rs_blocks);
            assert_eq!(l.parity_bytes(), bytes);
        }
        // 1 GiB at 4 KiB, roots 2: B = 264209, R = 1045, 8560640 bytes.
        let l = FecLayout::new(4096, 4096, 2, 262144, 1, 2065, 0).unwrap();
        assert_eq!(
            (l.covered_blocks(), l.rounds(), l.parity_bytes()),
            (264209, 1045, 8560640)
        );
        // F2: one file, tree from block 301, parity at block 305.
        let hb = covered_hash_blocks(0, 1249280, true, 4096, 301);
        let l = FecLayout::new(4096, 4096, 2, 300, 301, hb, 1249280).unwrap();
        assert_eq!(l.covered_blocks(), 304);
        assert_eq!(l.origin(300), Origin::Hash(301 * 4096));
        assert_eq!(l.origin(303), Origin::Hash(304 * 4096));
        assert_eq!(l.origin(304), Origin::Zero);
        assert_eq!(l.covered_hash_block(302), Some(301));
        assert_eq!(l.covered_hash_block(300), None);
        assert_eq!(l.covered_hash_block(305), None);
    }

    #[test]
    fn interleaving_round_trips() {
        let l = FecLayout::new(512, 512, 3, 1000, 1, 20, 0).unwrap();
        let r = l.rounds();
        assert_eq!(r, 5);
        for x in 0..r * l.k() {
            let (n, j) = l.position_of(x);
            assert_eq!(l.block_at(n, j as u64), x);
        }
    }

    #[test]
    fn refuses_what_veritysetup_refuses() {
        assert_eq!(
            FecLayout::new(4096, 1024, 2, 1, 1, 1, 0),
            Err(FecError::BlockSizes {
                data: 4096,
                hash: 1024
            })
        );
        assert_eq!(
            FecLayout::new(4096, 4096, 25, 1, 1, 1, 0),
            Err(FecError::Roots(25))
        );
        assert_eq!(
            FecLayout::new(4096, 4096, 2, 1, 1, 1, 100),
            Err(FecError::OffsetAlign(100))
        );
    }
}
