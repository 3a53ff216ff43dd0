//! The AVX-512 tier of the multi-buffer SHA-256: one message per 32-bit lane, 16 blocks per pass,
//! the message schedule and rounds in `zmm` registers (see the parent module for the tiers).
//! `unsafe` only for the `#[target_feature]` functions and their unaligned loads and stores.

use super::{Layout, K};
use std::arch::x86_64::*;

macro_rules! add {
    ($x:expr) => { $x };
    ($x:expr, $($r:expr),+) => { _mm512_add_epi32($x, add!($($r),+)) };
}

/// One round; the caller rotates the names of the working variables.
macro_rules! round {
    ($a:ident, $b:ident, $c:ident, $d:ident, $e:ident, $f:ident, $g:ident, $h:ident, $kw:expr) => {
        let s1 = _mm512_ternarylogic_epi32::<0x96>(
            _mm512_ror_epi32::<6>($e),
            _mm512_ror_epi32::<11>($e),
            _mm512_ror_epi32::<25>($e),
        );
        let ch = _mm512_ternarylogic_epi32::<0xCA>($e, $f, $g);
        let t1 = add!($h, s1, ch, $kw);
        let s0 = _mm512_ternarylogic_epi32::<0x96>(
            _mm512_ror_epi32::<2>($a),
            _mm512_ror_epi32::<13>($a),
            _mm512_ror_epi32::<22>($a),
        );
        let maj = _mm512_ternarylogic_epi32::<0xE8>($a, $b, $c);
        $d = _mm512_add_epi32($d, t1);
        $h = add!(t1, s0, maj);
    };
}

/// Message schedule: replaces `w[t % 16]` with W[t] for t >= 16.
macro_rules! sched {
    ($w:ident, $t:expr) => {
        let w15 = $w[($t - 15) % 16];
        let w2 = $w[($t - 2) % 16];
        let s0 = _mm512_ternarylogic_epi32::<0x96>(
            _mm512_ror_epi32::<7>(w15),
            _mm512_ror_epi32::<18>(w15),
            _mm512_srli_epi32::<3>(w15),
        );
        let s1 = _mm512_ternarylogic_epi32::<0x96>(
            _mm512_ror_epi32::<17>(w2),
            _mm512_ror_epi32::<19>(w2),
            _mm512_srli_epi32::<10>(w2),
        );
        $w[$t % 16] = add!($w[$t % 16], s0, $w[($t - 7) % 16], s1);
    };
}

macro_rules! kw {
    ($w:ident, $t:expr) => {
        _mm512_add_epi32($w[($t) % 16], _mm512_set1_epi32(K[$t] as i32))
    };
}

/// Eight rounds (and their schedule); afterwards the names are back in their places.
macro_rules! rounds8 {
    ($a:ident, $b:ident, $c:ident, $d:ident, $e:ident, $f:ident, $g:ident, $h:ident,
     $w:ident, $t:expr) => {
        if $t >= 16 {
            sched!($w, $t);
            sched!($w, $t + 1);
            sched!($w, $t + 2);
            sched!($w, $t + 3);
            sched!($w, $t + 4);
            sched!($w, $t + 5);
            sched!($w, $t + 6);
            sched!($w, $t + 7);
        }
        round!($a, $b, $c, $d, $e, $f, $g, $h, kw!($w, $t));
        round!($h, $a, $b, $c, $d, $e, $f, $g, kw!($w, $t + 1));
        round!($g, $h, $a, $b, $c, $d, $e, $f, kw!($w, $t + 2));
        round!($f, $g, $h, $a, $b, $c, $d, $e, kw!($w, $t + 3));
        round!($e, $f, $g, $h, $a, $b, $c, $d, kw!($w, $t + 4));
        round!($d, $e, $f, $g, $h, $a, $b, $c, kw!($w, $t + 5));
        round!($c, $d, $e, $f, $g, $h, $a, $b, kw!($w, $t + 6));
        round!($b, $c, $d, $e, $f, $g, $h, $a, kw!($w, $t + 7));
    };
}

/// Transposes 16 rows of 16 dwords so that output `k` holds dword `k` of every row.
#[target_feature(enable = "avx512f")]
#[inline]
fn transpose(r: [__m512i; 16]) -> [__m512i; 16] {
    let mut a = r;
    for i in 0..8 {
        a[2 * i] = _mm512_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
        a[2 * i + 1] = _mm512_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
    }
    // b[4i + m], 128-bit lane L: dword 4L + m of rows 4i..4i+3.
    let mut b = a;
    for i in 0..4 {
        b[4 * i] = _mm512_unpacklo_epi64(a[4 * i], a[4 * i + 2]);
        b[4 * i + 1] = _mm512_unpackhi_epi64(a[4 * i], a[4 * i + 2]);
        b[4 * i + 2] = _mm512_unpacklo_epi64(a[4 * i + 1], a[4 * i + 3]);
        b[4 * i + 3] = _mm512_unpackhi_epi64(a[4 * i + 1], a[4 * i + 3]);
    }
    // A 4x4 transpose of 128-bit lanes for each m.
    let mut c = b;
    for m in 0..4 {
        let t0 = _mm512_shuffle_i32x4::<0x44>(b[m], b[4 + m]);
        let t1 = _mm512_shuffle_i32x4::<0xEE>(b[m], b[4 + m]);
        let t2 = _mm512_shuffle_i32x4::<0x44>(b[8 + m], b[12 + m]);
        let t3 = _mm512_shuffle_i32x4::<0xEE>(b[8 + m], b[12 + m]);
        c[m] = _mm512_shuffle_i32x4::<0x88>(t0, t2);
        c[4 + m] = _mm512_shuffle_i32x4::<0xDD>(t0, t2);
        c[8 + m] = _mm512_shuffle_i32x4::<0x88>(t1, t3);
        c[12 + m] = _mm512_shuffle_i32x4::<0xDD>(t1, t3);
    }
    c
}

#[target_feature(enable = "avx512f,avx512bw")]
#[inline]
fn compress16(s: &mut [__m512i; 8], rows: &[&[u8; 64]; 16]) {
    let bswap = _mm512_broadcast_i32x4(_mm_set_epi8(
        12, 13, 14, 15, 8, 9, 10, 11, 4, 5, 6, 7, 0, 1, 2, 3,
    ));
    let mut r = [_mm512_setzero_si512(); 16];
    for (v, row) in r.iter_mut().zip(rows) {
        // SAFETY: `row` is a reference to 64 bytes, exactly one unaligned zmm load.
        *v = _mm512_shuffle_epi8(unsafe { _mm512_loadu_si512(row.as_ptr().cast()) }, bswap);
    }
    let mut w = transpose(r);
    let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut h] = *s;
    rounds8!(a, b, c, d, e, f, g, h, w, 0);
    rounds8!(a, b, c, d, e, f, g, h, w, 8);
    rounds8!(a, b, c, d, e, f, g, h, w, 16);
    rounds8!(a, b, c, d, e, f, g, h, w, 24);
    rounds8!(a, b, c, d, e, f, g, h, w, 32);
    rounds8!(a, b, c, d, e, f, g, h, w, 40);
    rounds8!(a, b, c, d, e, f, g, h, w, 48);
    rounds8!(a, b, c, d, e, f, g, h, w, 56);
    for (x, y) in s.iter_mut().zip([a, b, c, d, e, f, g, h]) {
        *x = _mm512_add_epi32(*x, y);
    }
}

/// Hashes the 16 messages around `lanes` (lanes may repeat) into `out`.
#[target_feature(enable = "avx512f,avx512bw")]
pub(super) fn group16(layout: &Layout<'_>, lanes: &[&[u8]; 16], out: &mut [[u8; 32]; 16]) {
    let mut s = [_mm512_setzero_si512(); 8];
    for (v, &x) in s.iter_mut().zip(&layout.init) {
        *v = _mm512_set1_epi32(x as i32);
    }
    let mut scratch = [[0u8; 64]; 16];
    for j in 0..layout.chunks {
        let mut rows: [&[u8; 64]; 16] = [&[0; 64]; 16];
        if let Some(off) = layout.direct(j) {
            for (r, lane) in rows.iter_mut().zip(lanes) {
                *r = lane[off..off + 64].try_into().expect("64 bytes");
            }
        } else {
            for ((r, lane), sc) in rows.iter_mut().zip(lanes).zip(scratch.iter_mut()) {
                *r = layout.chunk(lane, j, sc);
            }
        }
        compress16(&mut s, &rows);
    }
    let mut words = [[0u32; 16]; 8];
    for (dst, v) in words.iter_mut().zip(s) {
        // SAFETY: `dst` is 16 u32s, exactly one unaligned zmm store.
        unsafe { _mm512_storeu_si512(dst.as_mut_ptr().cast(), v) };
    }
    for (lane, o) in out.iter_mut().enumerate() {
        for (k, word) in words.iter().enumerate() {
            o[4 * k..4 * k + 4].copy_from_slice(&word[lane].to_be_bytes());
        }
    }
}
