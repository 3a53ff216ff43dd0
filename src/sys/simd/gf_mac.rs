//! Multiply-accumulate over GF(2^8)/0x11d: `plane[i] ^= c[i] * src` for a few constants at once.
//! This is the whole cost of the streamed FEC encoder (`crate::verity::fec::stream`), which adds
//! each covered block's share to its round's parity while the block is still in cache from tree
//! hashing, because RS parity is linear in the message.
//!
//! Two kernels: GFNI with AVX-512 (one `vgf2p8affineqb` per constant and 64 bytes: the
//! instruction applies any 8x8 bit matrix, and multiplying by a constant is GF(2)-linear whatever
//! the polynomial; spec/performance.md), and AVX2 (two `vpshufb` nibble lookups per constant and
//! 32 bytes). The caller builds the matrices and tables ([`Coef`]); this file only runs them.
//!
//! `unsafe` here is limited to calling the `#[target_feature]` functions after run-time detection
//! and to unaligned vector loads and stores from slices that cover the bytes touched.
#![allow(unsafe_code)]

/// One constant `c`, in the forms the kernels use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Coef {
    /// The 8x8 bit matrix of `x -> c * x` in `vgf2p8affineqb` layout (output bit `i` is the
    /// parity of `x & byte[7 - i]`).
    pub matrix: u64,
    /// `c * n` for the 16 low nibbles `n`, twice (one copy per 128-bit lane).
    pub lo: [u8; 32],
    /// `c * (n << 4)` for the 16 high nibbles, twice.
    pub hi: [u8; 32],
}

/// A kernel this file can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    /// GFNI affine transforms on 512-bit vectors.
    Gfni512,
    /// AVX2 nibble-table lookups.
    Avx2,
}

/// The fastest kernel this CPU can run, or None (no SIMD, or `VERITY_SIMD=portable`).
pub fn best() -> Option<Kernel> {
    #[cfg(target_arch = "x86_64")]
    {
        if super::portable_forced() {
            return None;
        }
        if is_x86_feature_detected!("gfni")
            && is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512bw")
        {
            return Some(Kernel::Gfni512);
        }
        if is_x86_feature_detected!("avx2") {
            return Some(Kernel::Avx2);
        }
        None
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        None
    }
}

/// Whether this CPU can run `k` (regardless of `VERITY_SIMD`; for tests that compare kernels).
pub fn can_run(k: Kernel) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        match k {
            Kernel::Gfni512 => {
                is_x86_feature_detected!("gfni")
                    && is_x86_feature_detected!("avx512f")
                    && is_x86_feature_detected!("avx512bw")
            }
            Kernel::Avx2 => is_x86_feature_detected!("avx2"),
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = k;
        false
    }
}

/// `planes[i * len..(i + 1) * len] ^= coefs[i] * src` for every `i`, with `len = src.len()`.
/// Returns false (and changes nothing) when `kernel` cannot run here or the shape is not one it
/// handles (`len` not a multiple of 64, `planes` not `coefs.len()` planes of `len` bytes).
pub fn mul_acc(kernel: Kernel, coefs: &[Coef], src: &[u8], planes: &mut [u8]) -> bool {
    let len = src.len();
    if !can_run(kernel) || len == 0 || !len.is_multiple_of(64) || planes.len() != len * coefs.len()
    {
        return false;
    }
    #[cfg(target_arch = "x86_64")]
    {
        match kernel {
            // SAFETY: can_run() checked that the CPU has GFNI, AVX-512F and AVX-512BW.
            Kernel::Gfni512 => unsafe { x86::gfni512(coefs, src, planes) },
            // SAFETY: can_run() checked that the CPU has AVX2.
            Kernel::Avx2 => unsafe { x86::avx2(coefs, src, planes) },
        }
        true
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::Coef;
    use std::arch::x86_64::*;

    /// The GFNI kernel: per 64 source bytes, one load, then per constant one affine transform and
    /// an XOR into its plane.
    #[target_feature(enable = "gfni,avx512f,avx512bw")]
    pub(super) fn gfni512(coefs: &[Coef], src: &[u8], planes: &mut [u8]) {
        let len = src.len();
        for (s, off) in src.chunks_exact(64).zip((0..len).step_by(64)) {
            let s: &[u8; 64] = s.try_into().expect("64 bytes");
            // SAFETY: `s` is exactly 64 readable bytes, one unaligned zmm load.
            let v = unsafe { _mm512_loadu_si512(s.as_ptr().cast()) };
            for (i, c) in coefs.iter().enumerate() {
                let at = i * len + off;
                let d: &mut [u8; 64] = (&mut planes[at..at + 64]).try_into().expect("64 bytes");
                let m = _mm512_set1_epi64(c.matrix as i64);
                let p = _mm512_gf2p8affine_epi64_epi8::<0>(v, m);
                // SAFETY: `d` is exactly 64 bytes we hold mutably: one unaligned zmm load and
                // one store of the same bytes.
                unsafe {
                    let acc = _mm512_loadu_si512(d.as_ptr().cast());
                    _mm512_storeu_si512(d.as_mut_ptr().cast(), _mm512_xor_si512(acc, p));
                }
            }
        }
    }

    /// The AVX2 kernel: per 32 source bytes, the two nibble vectors once, then per constant two
    /// table lookups and an XOR into its plane.
    #[target_feature(enable = "avx2")]
    pub(super) fn avx2(coefs: &[Coef], src: &[u8], planes: &mut [u8]) {
        let len = src.len();
        let nib = _mm256_set1_epi8(0x0f);
        for (s, off) in src.chunks_exact(32).zip((0..len).step_by(32)) {
            let s: &[u8; 32] = s.try_into().expect("32 bytes");
            // SAFETY: `s` is exactly 32 readable bytes, one unaligned ymm load.
            let v = unsafe { _mm256_loadu_si256(s.as_ptr().cast()) };
            let lo = _mm256_and_si256(v, nib);
            let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(v), nib);
            for (i, c) in coefs.iter().enumerate() {
                let at = i * len + off;
                let d: &mut [u8; 32] = (&mut planes[at..at + 32]).try_into().expect("32 bytes");
                // SAFETY: the tables are 32-byte arrays and `d` is exactly 32 bytes we hold
                // mutably: unaligned ymm loads and one store of the same bytes.
                unsafe {
                    let tl = _mm256_loadu_si256(c.lo.as_ptr().cast());
                    let th = _mm256_loadu_si256(c.hi.as_ptr().cast());
                    let p =
                        _mm256_xor_si256(_mm256_shuffle_epi8(tl, lo), _mm256_shuffle_epi8(th, hi));
                    let acc = _mm256_loadu_si256(d.as_ptr().cast());
                    _mm256_storeu_si256(d.as_mut_ptr().cast(), _mm256_xor_si256(acc, p));
                }
            }
        }
    }
}
