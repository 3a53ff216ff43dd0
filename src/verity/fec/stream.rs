//! FEC parity computed while the tree is built, so `format --fec-device` reads the data once.
//!
//! The round encoder ([`super::encode_parity`]) gathers each round's k blocks from all over the
//! image, so after tree hashing it reads the whole image a second time; on a 1 GiB image that copy
//! costs five times the RS arithmetic. But systematic RS parity is linear in the message:
//! parity(m) = XOR over j of m_j * P_j, where P_j is the parity of the message that is 1 at
//! symbol j and 0 elsewhere. So a covered block can add its share to its round's parity in any
//! order, on any thread, right after it was hashed and while it is still in the cache: for every
//! parity byte one multiply-accumulate of the whole block by a constant
//! (`crate::sys::simd::gf_mac`, GFNI or AVX2).
//!
//! The price is memory: every round's parity stays open until the last block is in, which is the
//! whole parity (`roots / k` of the image: 8.2 MiB per GiB at 2 roots). [`ParityStream::new`]
//! therefore only offers the stream when that fits [`BUDGET`] and a SIMD kernel can run; else the
//! caller uses the round encoder, whose memory is independent of the image size.

use super::encode::read_covered;
use super::gf::{mac_coef, MUL};
use super::layout::FecLayout;
use super::rs::Code;
use super::FecIoError;
use crate::sys::simd::gf_mac::{self, Coef, Kernel};
use crate::verity::{BlockSink, BlockSource};
use std::sync::{Mutex, MutexGuard};

/// Most parity bytes held open at once: with the tree pass's own 10-15 MiB this keeps a 4 GiB
/// image at 2 roots (34 MiB of parity) under the 64 MiB peak RSS that issue 15 sets.
pub const BUDGET: u64 = 40 << 20;

/// Covered blocks read at once when the hash blocks are added at the end.
const HASH_RUN: usize = 64;

/// Rounds turned into the on-disk layout and written at once.
const WRITE_ROUNDS: usize = 128;

/// The parity of every round, accumulated block by block.
pub struct ParityStream {
    layout: FecLayout,
    kernel: Option<Kernel>,
    /// `coefs[j * roots + i]`: what message symbol `j` contributes to parity byte `i`.
    coefs: Vec<Coef>,
    /// The same coefficients as bytes, for the portable path.
    raw: Vec<u8>,
    /// Per round, its parity in planes: plane `i` holds parity byte `i` of the round's
    /// block-size codewords, so a block adds to each plane with one contiguous pass.
    rounds: Vec<Mutex<Vec<u8>>>,
}

impl std::fmt::Debug for ParityStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParityStream")
            .field("layout", &self.layout)
            .field("kernel", &self.kernel)
            .finish_non_exhaustive()
    }
}

impl ParityStream {
    /// A stream for `layout` if it pays: a SIMD multiply-accumulate kernel runs here and the
    /// parity fits [`BUDGET`]. None means "use the round encoder".
    pub fn new(layout: &FecLayout) -> Option<Self> {
        let kernel = gf_mac::best()?;
        (layout.parity_bytes() <= BUDGET).then(|| Self::with_kernel(layout, Some(kernel)))
    }

    /// A stream with a chosen kernel (None: the portable byte loop), whatever its size; for tests
    /// that compare the kernels and for callers that decided on memory themselves.
    pub fn with_kernel(layout: &FecLayout, kernel: Option<Kernel>) -> Self {
        let code = Code::new(layout.roots).expect("roots checked by FecLayout");
        let (k, r) = (code.k(), code.roots());
        let mut raw = vec![0u8; k * r];
        let mut unit = vec![0u8; k];
        for (j, p) in raw.chunks_exact_mut(r).enumerate() {
            unit[j] = 1;
            code.encode(&unit, p);
            unit[j] = 0;
        }
        let plane_bytes = r * layout.block_size as usize;
        Self {
            layout: *layout,
            kernel,
            coefs: raw.iter().map(|&c| mac_coef(c)).collect(),
            raw,
            rounds: (0..layout.rounds())
                .map(|_| Mutex::new(vec![0u8; plane_bytes]))
                .collect(),
        }
    }

    /// The layout this stream encodes.
    pub fn layout(&self) -> &FecLayout {
        &self.layout
    }

    fn round(&self, n: u64) -> MutexGuard<'_, Vec<u8>> {
        self.rounds[n as usize]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Adds covered block `x` (its `block_size` bytes) to its round. Safe to call from many
    /// threads; each block must be added exactly once.
    pub fn absorb(&self, x: u64, block: &[u8]) {
        let r = self.layout.roots as usize;
        assert_eq!(block.len(), self.layout.block_size as usize);
        assert!(x < self.layout.covered_blocks(), "block {x} is not covered");
        let (n, j) = self.layout.position_of(x);
        let mut planes = self.round(n);
        let ran = self
            .kernel
            .is_some_and(|k| gf_mac::mul_acc(k, &self.coefs[j * r..][..r], block, &mut planes));
        if !ran {
            for (plane, &c) in planes
                .chunks_exact_mut(block.len())
                .zip(&self.raw[j * r..][..r])
            {
                let t = &MUL[c as usize];
                for (p, &m) in plane.iter_mut().zip(block) {
                    *p ^= t[m as usize];
                }
            }
        }
    }

    /// Adds the data blocks `first..` held back to back in `buf`; blocks whose `has_data` is false
    /// are zeros and add nothing (the tree pass reports holes that way).
    pub fn absorb_run(&self, first: u64, buf: &[u8], has_data: &[bool]) {
        let bs = self.layout.block_size as usize;
        for (i, (b, &has)) in buf.chunks_exact(bs).zip(has_data).enumerate() {
            if has {
                self.absorb(first + i as u64, b);
            }
        }
    }

    /// Adds the covered hash blocks (read from `hash`, after the tree is written) and writes the
    /// parity at `layout.fec_offset` of `sink`; `progress` gets the rounds written. Every data
    /// block must have been added before.
    pub fn finish<D, H, S>(
        self,
        data: &D,
        hash: &H,
        sink: &mut S,
        progress: &dyn Fn(u64),
    ) -> Result<(), FecIoError>
    where
        D: BlockSource + ?Sized,
        H: BlockSource + ?Sized,
        S: BlockSink + ?Sized,
    {
        let l = self.layout;
        let bs = l.block_size as usize;
        let mut buf = vec![0u8; HASH_RUN * bs];
        let mut x = l.data_blocks;
        while x < l.covered_blocks() {
            let n = ((l.covered_blocks() - x) as usize).min(HASH_RUN);
            read_covered(&l, data, hash, x, n, &mut buf)?;
            for (i, b) in buf[..n * bs].chunks_exact(bs).enumerate() {
                self.absorb(x + i as u64, b);
            }
            x += n as u64;
        }
        self.write(sink, progress)
    }

    /// Writes the accumulated parity in the on-disk layout (codeword `b`'s `roots` bytes at
    /// `b * roots` of its round).
    fn write<S: BlockSink + ?Sized>(
        self,
        sink: &mut S,
        progress: &dyn Fn(u64),
    ) -> Result<(), FecIoError> {
        let l = self.layout;
        let (bs, r) = (l.block_size as usize, l.roots as usize);
        let per_round = l.round_parity_bytes();
        let rounds: Vec<Vec<u8>> = self
            .rounds
            .into_iter()
            .map(|m| m.into_inner().unwrap_or_else(|e| e.into_inner()))
            .collect();
        let mut out = vec![0u8; WRITE_ROUNDS * per_round];
        for (g, group) in rounds.chunks(WRITE_ROUNDS).enumerate() {
            for (planes, o) in group.iter().zip(out.chunks_exact_mut(per_round)) {
                for (i, plane) in planes.chunks_exact(bs).enumerate() {
                    for (b, &p) in plane.iter().enumerate() {
                        o[b * r + i] = p;
                    }
                }
            }
            let first = (g * WRITE_ROUNDS) as u64;
            let offset = l.parity_offset(first);
            sink.write_at(&out[..group.len() * per_round], offset)
                .map_err(|source| FecIoError::Write { offset, source })?;
            progress(first + group.len() as u64);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verity::fec::encode_parity;
    use crate::verity::fec::layout::covered_hash_blocks;

    fn pattern(n: usize, seed: u8) -> Vec<u8> {
        (0..n)
            .map(|i| ((i * 131 + seed as usize) % 251) as u8 ^ seed)
            .collect()
    }

    /// Every kernel this CPU has, and the portable loop.
    fn kernels() -> Vec<Option<Kernel>> {
        let mut v = vec![None];
        v.extend(
            [Kernel::Gfni512, Kernel::Avx2]
                .into_iter()
                .filter(|&k| gf_mac::can_run(k))
                .map(Some),
        );
        v
    }

    /// Blocks added in a scrambled order, data holes skipped, give the round encoder's bytes.
    #[test]
    fn streamed_parity_equals_the_round_encoder_in_any_order() {
        for (bs, blocks, hash_len, roots) in [
            (512u32, 600usize, 9usize, 2u32),
            (512, 1000, 3, 7),
            (1024, 300, 5, 24),
            (4096, 20, 2, 3),
            (4096, 1, 1, 2),
        ] {
            let mut data = pattern(blocks * bs as usize, 7);
            // A hole: blocks of zeros the tree pass reports as without data.
            let hole = (blocks / 3) * bs as usize..(blocks / 2) * bs as usize;
            data[hole.clone()].fill(0);
            let hash = pattern((hash_len + 1) * bs as usize, 0x5c);
            let hb = covered_hash_blocks(hash.len() as u64, 0, false, bs, 1);
            let l = FecLayout::new(bs, bs, roots, blocks as u64, 1, hb, 512).unwrap();
            let mut want = Vec::new();
            encode_parity(&l, &data[..], &hash[..], &mut want, &|_| ()).unwrap();
            for kernel in kernels() {
                let s = ParityStream::with_kernel(&l, kernel);
                // Back to front in runs of 5, as threads finishing out of order would.
                let runs: Vec<usize> = (0..blocks).step_by(5).collect();
                for &first in runs.iter().rev() {
                    let n = 5.min(blocks - first);
                    let buf = &data[first * bs as usize..(first + n) * bs as usize];
                    let has: Vec<bool> = (first..first + n)
                        .map(|b| !hole.contains(&(b * bs as usize)))
                        .collect();
                    s.absorb_run(first as u64, buf, &has);
                }
                let mut got = Vec::new();
                s.finish(&data[..], &hash[..], &mut got, &|_| ()).unwrap();
                assert_eq!(got, want, "bs {bs} roots {roots} kernel {kernel:?}");
            }
        }
    }

    /// The check spec/performance.md ran on the GFNI matrices, for every kernel here: each of
    /// the 256 constants times each of the 256 bytes, accumulated onto a non-zero plane.
    #[test]
    fn every_kernel_multiplies_by_every_constant() {
        let src: Vec<u8> = (0..=255u8).collect();
        for kernel in kernels().into_iter().flatten() {
            for c in 0..=255u8 {
                let coefs = [mac_coef(c), mac_coef(c ^ 0x5a)];
                let mut planes = vec![0xa5u8; 512];
                assert!(gf_mac::mul_acc(kernel, &coefs, &src, &mut planes));
                for x in 0..256 {
                    assert_eq!(planes[x], 0xa5 ^ MUL[c as usize][x], "{kernel:?} {c} * {x}");
                    assert_eq!(planes[256 + x], 0xa5 ^ MUL[(c ^ 0x5a) as usize][x]);
                }
            }
            // Shapes the kernels do not take are refused, with nothing changed.
            let mut planes = vec![1u8; 96];
            assert!(!gf_mac::mul_acc(
                kernel,
                &[mac_coef(3)],
                &src[..96],
                &mut planes
            ));
            assert!(planes.iter().all(|&b| b == 1));
        }
    }

    #[test]
    fn offered_only_within_the_budget() {
        // 1 GiB at 2 roots: 8.2 MiB of parity, offered when a kernel runs here.
        let l = FecLayout::new(4096, 4096, 2, 262144, 1, 2065, 0).unwrap();
        assert_eq!(ParityStream::new(&l).is_some(), gf_mac::best().is_some());
        // 1 GiB at 24 roots: 117 MiB, never.
        let l = FecLayout::new(4096, 4096, 24, 262144, 1, 2065, 0).unwrap();
        assert!(l.parity_bytes() > BUDGET);
        assert!(ParityStream::new(&l).is_none());
    }
}
