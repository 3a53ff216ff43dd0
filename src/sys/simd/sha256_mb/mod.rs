//! Multi-buffer SHA-256 of many equal-length salted blocks, the hot loop of tree building and
//! verification. Each message is `salt || block` (format 1) or `block || salt` (format 0); all of
//! them have the same length, so padding and chunk boundaries are the same in every lane.
//!
//! Tiers, fastest first: AVX-512 with one message per dword lane (16 blocks per pass, no SHA-NI;
//! on the build machine it beats SHA-NI because `sha256rnds2` is a serial chain with a 3-cycle
//! throughput), SHA-NI with two interleaved streams, and the portable `sha2` crate. The tier is
//! chosen once at run time; tests can force one with [`hash_salted_blocks_with`].
//!
//! `unsafe` here is limited to calling `#[target_feature]` functions after run-time detection and
//! to unaligned vector loads/stores from references that cover the bytes touched.
#![allow(unsafe_code)]

use sha2::{Digest, Sha256};
use std::sync::OnceLock;

/// A SHA-256 implementation strategy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    /// 16 messages at once in zmm dword lanes (needs AVX-512 F and BW).
    Avx512,
    /// Two messages at once through the SHA extensions (needs SHA, SSE4.1, SSSE3).
    ShaNi2,
    /// The `sha2` crate, one message at a time (uses SHA-NI itself when present).
    Portable,
}

/// The tiers this CPU can run, fastest first; [`Tier::Portable`] is always last.
pub fn available_tiers() -> Vec<Tier> {
    let mut v = Vec::new();
    #[cfg(target_arch = "x86_64")]
    {
        if is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bw") {
            v.push(Tier::Avx512);
        }
        if has_sha_ni() {
            v.push(Tier::ShaNi2);
        }
    }
    v.push(Tier::Portable);
    v
}

#[cfg(target_arch = "x86_64")]
fn has_sha_ni() -> bool {
    is_x86_feature_detected!("sha")
        && is_x86_feature_detected!("sse4.1")
        && is_x86_feature_detected!("ssse3")
}

/// The tiers [`hash_salted_blocks`] may use, fastest first: those the CPU has that also pass a
/// known-answer self-test against the portable code, so a kernel that is wrong on some CPU
/// falls back instead of writing wrong trees; only the portable one under
/// `VERITY_SIMD=portable` ([`super`]). Detected and tested once.
fn usable_tiers() -> &'static [Tier] {
    static USABLE: OnceLock<Vec<Tier>> = OnceLock::new();
    USABLE.get_or_init(|| {
        available_tiers()
            .into_iter()
            .filter(|&t| t == Tier::Portable || !super::portable_forced())
            .filter(|&t| self_test(t))
            .collect()
    })
}

/// Compares `tier` with the portable code on 17 blocks (a full and a partial pass) with salts on
/// both sides of a chunk boundary, both salt positions and two block sizes.
fn self_test(tier: Tier) -> bool {
    if tier == Tier::Portable {
        return true;
    }
    let data: Vec<u8> = (0..17 * 4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    [
        (0usize, true),
        (33, true),
        (70, true),
        (32, false),
        (100, false),
    ]
    .into_iter()
    .all(|(salt_len, first)| {
        [512usize, 4096].into_iter().all(|bs| {
            let salt = &data[..salt_len];
            let blocks = &data[..17 * bs];
            let (mut a, mut b) = (vec![0u8; 17 * 32], vec![0u8; 17 * 32]);
            let layout = Layout::new(salt, first, bs);
            run(tier, &layout, blocks, bs, &mut a);
            portable(&layout, blocks, bs, &mut b);
            a == b
        })
    })
}

/// The tier [`hash_salted_blocks`] uses.
pub fn best_tier() -> Tier {
    usable_tiers()[0]
}

/// Hashes every `block_size` block of `blocks` as `salt || block` (`salt_first`) or
/// `block || salt`, writing the 32-byte digests back to back into `out`.
///
/// Panics if `block_size` is 0, `blocks` is not a whole number of blocks, or `out` is not exactly
/// 32 bytes per block.
pub fn hash_salted_blocks(
    salt: &[u8],
    salt_first: bool,
    blocks: &[u8],
    block_size: usize,
    out: &mut [u8],
) {
    let n = check_args(blocks, block_size, out);
    let tiers = usable_tiers();
    let layout = Layout::new(salt, salt_first, block_size);
    if tiers[0] == Tier::Avx512 && n % 16 < 8 {
        // A partial pass costs as much as a full one; below half a pass the next tier down
        // (SHA-NI, at least half the speed per block) is faster for the leftover blocks.
        let full = n / 16 * 16;
        let (b0, b1) = blocks.split_at(full * block_size);
        let (o0, o1) = out.split_at_mut(full * 32);
        run(Tier::Avx512, &layout, b0, block_size, o0);
        run(tiers[1], &layout, b1, block_size, o1);
    } else {
        run(tiers[0], &layout, blocks, block_size, out);
    }
}

/// [`hash_salted_blocks`] with a forced tier. Returns `false` (and writes nothing) when the CPU
/// cannot run it.
pub fn hash_salted_blocks_with(
    tier: Tier,
    salt: &[u8],
    salt_first: bool,
    blocks: &[u8],
    block_size: usize,
    out: &mut [u8],
) -> bool {
    check_args(blocks, block_size, out);
    if !available_tiers().contains(&tier) {
        return false;
    }
    run(
        tier,
        &Layout::new(salt, salt_first, block_size),
        blocks,
        block_size,
        out,
    );
    true
}

fn check_args(blocks: &[u8], block_size: usize, out: &[u8]) -> usize {
    assert!(block_size > 0, "block size must not be 0");
    assert_eq!(blocks.len() % block_size, 0, "blocks must be whole");
    let n = blocks.len() / block_size;
    assert_eq!(out.len(), n * 32, "one 32-byte digest per block");
    n
}

/// Streams interleaved by the SHA-NI tier: on the AMD EPYC CI machine 2 ways reached 2.4-2.7 GB/s
/// per core, 3 ways 1.96 and 4 ways 1.2-1.8 (one stream, the sha2 crate: 1.6).
const SHANI_WAYS: usize = 2;

fn run(tier: Tier, layout: &Layout<'_>, blocks: &[u8], block_size: usize, out: &mut [u8]) {
    if blocks.is_empty() {
        return;
    }
    match tier {
        #[cfg(target_arch = "x86_64")]
        Tier::Avx512 => {
            for (group, digests) in blocks.chunks(16 * block_size).zip(out.chunks_mut(16 * 32)) {
                let n = group.len() / block_size;
                let mut lanes: [&[u8]; 16] = [&group[..block_size]; 16];
                for (i, lane) in lanes.iter_mut().enumerate().take(n) {
                    *lane = &group[i * block_size..(i + 1) * block_size];
                }
                let mut d = [[0u8; 32]; 16];
                // SAFETY: Avx512 is only run when available_tiers() detected avx512f and avx512bw
                // (hash_salted_blocks uses best_tier(), hash_salted_blocks_with checks).
                unsafe { avx512::group16(layout, &lanes, &mut d) };
                for (o, dg) in digests.chunks_mut(32).zip(&d) {
                    o.copy_from_slice(dg);
                }
            }
        }
        #[cfg(target_arch = "x86_64")]
        Tier::ShaNi2 => {
            for (group, digests) in blocks
                .chunks(SHANI_WAYS * block_size)
                .zip(out.chunks_mut(SHANI_WAYS * 32))
            {
                let n = group.len() / block_size;
                let mut lanes: [&[u8]; SHANI_WAYS] = [&group[..block_size]; SHANI_WAYS];
                for (i, lane) in lanes.iter_mut().enumerate().take(n) {
                    *lane = &group[i * block_size..(i + 1) * block_size];
                }
                let mut d = [[0u8; 32]; SHANI_WAYS];
                // SAFETY: ShaNi2 is only run when available_tiers() detected sha, sse4.1, ssse3.
                unsafe { shani::group(layout, lanes, &mut d) };
                for (o, dg) in digests.chunks_mut(32).zip(&d) {
                    o.copy_from_slice(dg);
                }
            }
        }
        _ => portable(layout, blocks, block_size, out),
    }
}

/// The current code path: the salted prefix absorbed once, the state cloned per block.
fn portable(layout: &Layout<'_>, blocks: &[u8], block_size: usize, out: &mut [u8]) {
    let mut prefix = Sha256::new();
    prefix.update(layout.salt_prefix);
    for (b, o) in blocks.chunks(block_size).zip(out.chunks_mut(32)) {
        let mut h = prefix.clone();
        h.update(b);
        h.update(layout.salt_suffix);
        o.copy_from_slice(&h.finalize());
    }
}

const IV: [u32; 8] = [
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
];

const K: [u32; 64] = [
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
];

/// Plain scalar compression, used once per call to absorb whole 64-byte chunks of the salt.
fn compress_scalar(state: &mut [u32; 8], chunk: &[u8]) {
    let mut w = [0u32; 64];
    for (i, c) in chunk.chunks_exact(4).enumerate() {
        w[i] = u32::from_be_bytes([c[0], c[1], c[2], c[3]]);
    }
    for t in 16..64 {
        let s0 = w[t - 15].rotate_right(7) ^ w[t - 15].rotate_right(18) ^ (w[t - 15] >> 3);
        let s1 = w[t - 2].rotate_right(17) ^ w[t - 2].rotate_right(19) ^ (w[t - 2] >> 10);
        w[t] = w[t - 16]
            .wrapping_add(s0)
            .wrapping_add(w[t - 7])
            .wrapping_add(s1);
    }
    let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut h] = *state;
    for t in 0..64 {
        let s1 = e.rotate_right(6) ^ e.rotate_right(11) ^ e.rotate_right(25);
        let ch = (e & f) ^ (!e & g);
        let t1 = h
            .wrapping_add(s1)
            .wrapping_add(ch)
            .wrapping_add(K[t])
            .wrapping_add(w[t]);
        let s0 = a.rotate_right(2) ^ a.rotate_right(13) ^ a.rotate_right(22);
        let maj = (a & b) ^ (a & c) ^ (b & c);
        let t2 = s0.wrapping_add(maj);
        (h, g, f, e, d, c, b, a) = (g, f, e, d.wrapping_add(t1), c, b, a, t1.wrapping_add(t2));
    }
    for (s, v) in state.iter_mut().zip([a, b, c, d, e, f, g, h]) {
        *s = s.wrapping_add(v);
    }
}

/// Where each 64-byte chunk of every lane's padded message comes from. The message, after the
/// whole salt chunks already absorbed into `init`, is `head || block || tail`, where `tail` is the
/// salt suffix (format 0) followed by the padding and the bit length.
struct Layout<'s> {
    salt_prefix: &'s [u8],
    salt_suffix: &'s [u8],
    init: [u32; 8],
    head: &'s [u8],
    tail: Vec<u8>,
    block_size: usize,
    chunks: usize,
}

impl<'s> Layout<'s> {
    fn new(salt: &'s [u8], salt_first: bool, block_size: usize) -> Self {
        let (prefix, suffix): (&[u8], &[u8]) = if salt_first { (salt, &[]) } else { (&[], salt) };
        let whole = prefix.len() / 64 * 64;
        let mut init = IV;
        for c in prefix[..whole].chunks_exact(64) {
            compress_scalar(&mut init, c);
        }
        let head = &prefix[whole..];
        let mut tail = suffix.to_vec();
        tail.push(0x80);
        while (head.len() + block_size + tail.len()) % 64 != 56 {
            tail.push(0);
        }
        let bits = (salt.len() as u64 + block_size as u64) * 8;
        tail.extend_from_slice(&bits.to_be_bytes());
        let chunks = (head.len() + block_size + tail.len()) / 64;
        Self {
            salt_prefix: prefix,
            salt_suffix: suffix,
            init,
            head,
            tail,
            block_size,
            chunks,
        }
    }

    /// The offset in the block of chunk `j` when it lies wholly inside the block.
    #[inline]
    fn direct(&self, j: usize) -> Option<usize> {
        let o = j * 64;
        let h = self.head.len();
        (o >= h && o + 64 <= h + self.block_size).then(|| o - h)
    }

    /// Assembles chunk `j` of the message around `block` into `dst`.
    fn fill(&self, block: &[u8], j: usize, dst: &mut [u8; 64]) {
        let o = j * 64;
        let mut start = 0;
        for seg in [self.head, block, &self.tail[..]] {
            let (a, b) = (o.max(start), (o + 64).min(start + seg.len()));
            if a < b {
                dst[a - o..b - o].copy_from_slice(&seg[a - start..b - start]);
            }
            start += seg.len();
        }
    }

    /// Chunk `j` of the message around `block`: borrowed in place, or assembled in `scratch`.
    #[inline]
    fn chunk<'a>(&self, block: &'a [u8], j: usize, scratch: &'a mut [u8; 64]) -> &'a [u8; 64] {
        match self.direct(j) {
            Some(off) => block[off..off + 64].try_into().expect("64 bytes"),
            None => {
                self.fill(block, j, scratch);
                scratch
            }
        }
    }
}

// The AVX-512 intrinsics are stable since Rust 1.89, past the crate's declared rust-version 1.87;
// the toolchain in use is newer, and rust-version should be raised to 1.89 with this module.
#[cfg(target_arch = "x86_64")]
#[allow(clippy::incompatible_msrv)]
mod avx512;
#[cfg(target_arch = "x86_64")]
mod shani;
