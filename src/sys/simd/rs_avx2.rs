//! AVX2 kernel for the Reed-Solomon parity of dm-verity's FEC: the LFSR of RS(255, 255 - R) over
//! GF(2^8)/0x11d run for 32 interleaved codewords per vector. Multiplying a vector of feedback
//! bytes by a generator coefficient is two `vpshufb` lookups in 16-entry tables (the products of
//! the low and of the high nibble) and an XOR; the two nibble vectors are shared by all R
//! coefficients of a row.
//!
//! This LFSR kernel has no GFNI form: where the parity fits in memory, `format` computes it with
//! the GFNI multiply-accumulate of [`super::gf_mac`] during the tree pass instead, and this
//! encoder serves the rest (many roots on large images, `repair --rebuild-parity`, decoding).
//!
//! `unsafe` here is limited to calling the `#[target_feature]` function after run-time detection
//! and to unaligned vector loads and stores from slices that cover the bytes touched.
#![allow(unsafe_code)]

/// True when this CPU can run the kernel and [`super::portable_forced`] does not forbid it.
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        is_x86_feature_detected!("avx2") && !super::portable_forced()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Computes the parity of `row_len` interleaved codewords. `rows` holds the k message rows back
/// to back (`row_len` bytes each; byte `c` of row `j` is message symbol `j` of codeword `c`).
/// `tables` holds two 32-byte tables per LFSR coefficient, in LFSR order (the coefficient of the
/// highest-degree parity byte first): the products of that coefficient with 0..16 and with
/// 0x00, 0x10 .. 0xf0, each repeated in both 16-byte halves. Codeword `c`'s R parity bytes go to
/// `out[c * R..]`. Returns false (and writes nothing) when the kernel cannot run here or the
/// shape is not one it handles (R outside 2..=24, `row_len` not a multiple of 32).
pub fn encode_rows(tables: &[[u8; 32]], rows: &[u8], row_len: usize, out: &mut [u8]) -> bool {
    let r = tables.len() / 2;
    if !available()
        || !tables.len().is_multiple_of(2)
        || !(2..=24).contains(&r)
        || row_len == 0
        || !row_len.is_multiple_of(32)
        || !rows.len().is_multiple_of(row_len)
        || out.len() != row_len * r
    {
        return false;
    }
    #[cfg(target_arch = "x86_64")]
    {
        macro_rules! fixed {
            ($($n:literal => $v:literal, $u:literal);*) => {
                match r {
                    // SAFETY: available() checked that the CPU has AVX2.
                    $($n => unsafe { kernel::encode::<$n, $v, $u>(tables, rows, row_len, out) },)*
                    _ => unreachable!("roots checked above"),
                }
            };
        }
        // Per root count: vectors of codewords per pass (their LFSR chains overlap) and rows
        // per step (fewer state and table loads); measured best on the CI machine.
        fixed!(2 => 4, 1; 3 => 2, 2; 4 => 2, 2; 5 => 1, 4; 6 => 1, 4; 7 => 1, 4; 8 => 1, 4;
               9 => 1, 4; 10 => 1, 4; 11 => 1, 4; 12 => 1, 4; 13 => 1, 4; 14 => 1, 4;
               15 => 1, 4; 16 => 1, 4; 17 => 1, 4; 18 => 1, 4; 19 => 1, 4; 20 => 1, 4;
               21 => 1, 4; 22 => 1, 4; 23 => 1, 4; 24 => 1, 4);
        true
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

#[cfg(target_arch = "x86_64")]
mod kernel {
    use std::arch::x86_64::*;

    #[target_feature(enable = "avx2")]
    #[inline]
    fn load(b: &[u8]) -> __m256i {
        let b: &[u8; 32] = b.try_into().expect("32 bytes");
        // SAFETY: `b` is a reference to exactly 32 bytes, one unaligned ymm load.
        unsafe { _mm256_loadu_si256(b.as_ptr().cast()) }
    }

    /// Rows to fetch ahead of the one being read.
    const AHEAD: usize = 16;

    /// Hints the line at `rows[at]` into the cache; nothing past the end of `rows`.
    #[inline(always)]
    fn prefetch(rows: &[u8], at: usize) {
        if let Some(b) = rows.get(at) {
            // SAFETY: a prefetch never faults and reads nothing; the address is inside `rows`.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(std::ptr::from_ref(b).cast()) };
        }
    }

    /// The generator's nibble tables, in registers as far as they fit.
    struct Tables<const R: usize> {
        lo: [__m256i; R],
        hi: [__m256i; R],
        nib: __m256i,
    }

    impl<const R: usize> Tables<R> {
        /// `f * coefficient[i]` from the nibbles of `f`.
        #[target_feature(enable = "avx2")]
        #[inline]
        fn mul(&self, fl: __m256i, fh: __m256i, i: usize) -> __m256i {
            _mm256_xor_si256(
                _mm256_shuffle_epi8(self.lo[i], fl),
                _mm256_shuffle_epi8(self.hi[i], fh),
            )
        }

        /// Advances one vector of codewords by `U` message rows (row `u`'s 32 bytes are at
        /// `rows[at + u * stride..]`).
        /// With `c[x] = 0` past the last coefficient and `s[x] = 0` past the last state byte,
        /// `U` LFSR steps are
        ///   f_u = m_u ^ s[u] ^ sum_{w < u} f_w * c[u - 1 - w]
        ///   s'[i] = s[i + U] ^ sum_{u < U} f_u * c[i + U - 1 - u],
        /// so each state vector and each table is loaded once per `U` rows instead of once per row
        /// (for many roots neither the state nor the tables fit the 16 ymm registers).
        #[target_feature(enable = "avx2")]
        #[inline]
        fn steps<const U: usize>(
            &self,
            s: &mut [__m256i; R],
            rows: &[u8],
            at: usize,
            stride: usize,
        ) {
            let mut fl = [_mm256_setzero_si256(); U];
            let mut fh = [_mm256_setzero_si256(); U];
            for u in 0..U {
                let o = at + u * stride;
                let mut f = _mm256_xor_si256(load(&rows[o..o + 32]), s[u]);
                for w in 0..u {
                    f = _mm256_xor_si256(f, self.mul(fl[w], fh[w], u - 1 - w));
                }
                fl[u] = _mm256_and_si256(f, self.nib);
                fh[u] = _mm256_and_si256(_mm256_srli_epi16::<4>(f), self.nib);
            }
            // Coefficient-major, so each table pair is loaded once per U rows: c[x] multiplies
            // f_u into s'[x + 1 + u - U].
            let mut n = [_mm256_setzero_si256(); R];
            let keep = R - U.min(R);
            n[..keep].copy_from_slice(&s[U..U + keep]);
            for x in 0..R {
                for u in 0..U {
                    if x + 1 + u >= U {
                        let i = x + 1 + u - U;
                        n[i] = _mm256_xor_si256(n[i], self.mul(fl[u], fh[u], x));
                    }
                }
            }
            *s = n;
        }
    }

    /// `R` parity bytes for every codeword, `V` vectors of 32 codewords per pass over the rows,
    /// `U` rows per LFSR step (`U <= R`).
    #[target_feature(enable = "avx2")]
    pub(super) fn encode<const R: usize, const V: usize, const U: usize>(
        tables: &[[u8; 32]],
        rows: &[u8],
        row_len: usize,
        out: &mut [u8],
    ) {
        let mut t = Tables::<R> {
            lo: [_mm256_setzero_si256(); R],
            hi: [_mm256_setzero_si256(); R],
            nib: _mm256_set1_epi8(0x0f),
        };
        for i in 0..R {
            t.lo[i] = load(&tables[2 * i]);
            t.hi[i] = load(&tables[2 * i + 1]);
        }
        let k = rows.len() / row_len;
        let width = 32 * V;
        let mut base = 0;
        while base < row_len {
            let w = width.min(row_len - base);
            let nv = w / 32;
            let mut s = [[_mm256_setzero_si256(); R]; V];
            let mut j = 0;
            while j + U <= k {
                // Each step reads U rows that lie a whole row apart, too many streams for the
                // hardware prefetcher: fetch the lines of the rows AHEAD steps on now.
                for u in 0..U {
                    let o = (j + u + AHEAD) * row_len + base;
                    for line in (0..w).step_by(64) {
                        prefetch(rows, o + line);
                    }
                }
                for (v, sv) in s.iter_mut().enumerate().take(nv) {
                    t.steps::<U>(sv, rows, j * row_len + base + 32 * v, row_len);
                }
                j += U;
            }
            while j < k {
                for (v, sv) in s.iter_mut().enumerate().take(nv) {
                    t.steps::<1>(sv, rows, j * row_len + base + 32 * v, row_len);
                }
                j += 1;
            }
            let mut tmp = [[0u8; 32]; R];
            for (v, sv) in s.iter().enumerate().take(nv) {
                for (x, vec) in tmp.iter_mut().zip(sv) {
                    // SAFETY: `x` is 32 bytes, exactly one unaligned ymm store.
                    unsafe { _mm256_storeu_si256(x.as_mut_ptr().cast(), *vec) };
                }
                let o = &mut out[(base + 32 * v) * R..(base + 32 * v + 32) * R];
                for (b, cw) in o.chunks_exact_mut(R).enumerate() {
                    for (i, x) in cw.iter_mut().enumerate() {
                        *x = tmp[i][b];
                    }
                }
            }
            base += w;
        }
    }
}
