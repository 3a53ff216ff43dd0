//! The SHA-NI tier of the multi-buffer SHA-256: two (or more) interleaved streams of
//! `sha256rnds2`, so one stream's latency hides behind the other's (see the parent module for
//! the tiers). `unsafe` only for the `#[target_feature]` functions and their unaligned loads and
//! stores.

use super::{Layout, K};
use std::arch::x86_64::*;

/// K[t..t + 4] as a vector.
#[target_feature(enable = "sse2")]
#[inline]
fn kvec(t: usize) -> __m128i {
    _mm_set_epi32(
        K[t + 3] as i32,
        K[t + 2] as i32,
        K[t + 1] as i32,
        K[t] as i32,
    )
}

/// Next four schedule words from the previous sixteen (`m[0..4]` oldest).
#[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
#[inline]
fn next4(m: &[__m128i; 4]) -> __m128i {
    let t = _mm_sha256msg1_epu32(m[0], m[1]);
    let t = _mm_add_epi32(t, _mm_alignr_epi8::<4>(m[3], m[2]));
    _mm_sha256msg2_epu32(t, m[3])
}

/// `N` compressions at once. Each state is (ABEF, CDGH) as the SHA instructions want it.
#[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
#[inline]
fn compress_n<const N: usize>(s: &mut [[__m128i; 2]; N], chunks: [&[u8; 64]; N]) {
    let bswap = _mm_set_epi8(12, 13, 14, 15, 8, 9, 10, 11, 4, 5, 6, 7, 0, 1, 2, 3);
    let mut m = [[_mm_setzero_si128(); 4]; N];
    for (mk, c) in m.iter_mut().zip(chunks) {
        for (i, v) in mk.iter_mut().enumerate() {
            // SAFETY: `c` is a reference to 64 bytes; this 16-byte load is inside it.
            let x = unsafe { _mm_loadu_si128(c.as_ptr().add(16 * i).cast()) };
            *v = _mm_shuffle_epi8(x, bswap);
        }
    }
    let mut st = *s;
    // `m[k][0]` always holds the words of group `g`; the words of group g + 4 are computed
    // before the rounds of group g, so the message ops are not stuck behind the serial
    // `sha256rnds2` chain.
    for g in 0..16 {
        let k4 = kvec(4 * g);
        let mut cur = [_mm_setzero_si128(); N];
        for (c, mk) in cur.iter_mut().zip(m.iter_mut()) {
            *c = _mm_add_epi32(mk[0], k4);
            let next = if g < 12 { next4(mk) } else { mk[0] };
            *mk = [mk[1], mk[2], mk[3], next];
        }
        for (x, c) in st.iter_mut().zip(cur) {
            x[1] = _mm_sha256rnds2_epu32(x[1], x[0], c);
        }
        for (x, c) in st.iter_mut().zip(cur) {
            x[0] = _mm_sha256rnds2_epu32(x[0], x[1], _mm_shuffle_epi32::<0x0E>(c));
        }
    }
    for (x, y) in s.iter_mut().zip(st) {
        x[0] = _mm_add_epi32(x[0], y[0]);
        x[1] = _mm_add_epi32(x[1], y[1]);
    }
}

/// (ABEF, CDGH) from the eight state words.
#[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
#[inline]
fn pack(s: &[u32; 8]) -> [__m128i; 2] {
    let i = |x: u32| x as i32;
    [
        _mm_set_epi32(i(s[0]), i(s[1]), i(s[4]), i(s[5])),
        _mm_set_epi32(i(s[2]), i(s[3]), i(s[6]), i(s[7])),
    ]
}

#[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
#[inline]
fn unpack(v: &[__m128i; 2]) -> [u8; 32] {
    let mut w = [[0u32; 4]; 2];
    for (dst, x) in w.iter_mut().zip(v) {
        // SAFETY: `dst` is 4 u32s, exactly one unaligned xmm store.
        unsafe { _mm_storeu_si128(dst.as_mut_ptr().cast(), *x) };
    }
    // Lanes from low to high: ABEF is [F, E, B, A], CDGH is [H, G, D, C].
    let words = [
        w[0][3], w[0][2], w[1][3], w[1][2], w[0][1], w[0][0], w[1][1], w[1][0],
    ];
    let mut out = [0u8; 32];
    for (o, x) in out.chunks_mut(4).zip(words) {
        o.copy_from_slice(&x.to_be_bytes());
    }
    out
}

/// Digests of the messages around `blocks` (`N` of them, which may repeat).
#[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
pub(super) fn group<const N: usize>(
    layout: &Layout<'_>,
    blocks: [&[u8]; N],
    out: &mut [[u8; 32]; N],
) {
    let mut s = [pack(&layout.init); N];
    let mut scratch = [[0u8; 64]; N];
    for j in 0..layout.chunks {
        let mut rows: [&[u8; 64]; N] = [&[0; 64]; N];
        for ((r, b), sc) in rows.iter_mut().zip(blocks).zip(scratch.iter_mut()) {
            *r = layout.chunk(b, j, sc);
        }
        compress_n(&mut s, rows);
    }
    for (o, x) in out.iter_mut().zip(&s) {
        *o = unpack(x);
    }
}
