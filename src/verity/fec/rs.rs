//! The RS(255, k) code dm-verity uses (fcr 0, prim 1, 2 to 24 roots): a per-codeword encoder, a
//! byte-sliced encoder that advances thousands of interleaved codewords with one message row at a
//! time. The errors-and-erasures decoder is in [`super::decode`].

use super::gf::{alpha_pow, mul};
use super::FecError;

/// Symbols in a full codeword.
pub const N: usize = 255;
/// Fewest parity bytes the kernel accepts.
pub const MIN_ROOTS: u32 = 2;
/// Most parity bytes the kernel accepts.
pub const MAX_ROOTS: u32 = 24;

/// Why a codeword could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// More erasures than parity symbols, or an erasure position outside the codeword.
    #[error("{given} erasures given, at most {roots} can be used")]
    TooManyErasures { given: usize, roots: usize },
    /// The errors exceed what the parity can correct.
    #[error("too many errors in the codeword to correct")]
    Uncorrectable,
}

/// One RS(255, 255 - roots) code.
#[derive(Debug, Clone)]
pub struct Code {
    roots: usize,
    /// Generator coefficients, lowest degree first; `gen[roots] == 1`.
    gen: Vec<u8>,
    /// `feedback[f * roots + i] = f * gen[roots - 1 - i]`: the whole LFSR update for a feedback
    /// byte `f` in one contiguous row.
    feedback: Vec<u8>,
    /// For the SIMD kernel, per LFSR coefficient `gen[roots - 1 - i]`: its products with the 16 low
    /// nibbles and with the 16 high nibbles, each table twice (one per 128-bit lane).
    nibbles: Vec<[u8; 32]>,
}

impl Code {
    /// The code with `roots` parity bytes (2 ..= 24).
    pub fn new(roots: u32) -> Result<Self, FecError> {
        if !(MIN_ROOTS..=MAX_ROOTS).contains(&roots) {
            return Err(FecError::Roots(roots));
        }
        let r = roots as usize;
        // g(x) = prod_{i < roots} (x - alpha^i)
        let mut gen = vec![0u8; r + 1];
        gen[0] = 1;
        for i in 0..r {
            let root = alpha_pow(i);
            for j in (1..=i + 1).rev() {
                gen[j] = gen[j - 1] ^ mul(gen[j], root);
            }
            gen[0] = mul(gen[0], root);
        }
        let mut feedback = vec![0u8; 256 * r];
        for f in 0..256 {
            for i in 0..r {
                feedback[f * r + i] = mul(f as u8, gen[r - 1 - i]);
            }
        }
        let mut nibbles = Vec::with_capacity(2 * r);
        for i in 0..r {
            let c = gen[r - 1 - i];
            let lo: [u8; 32] = std::array::from_fn(|x| mul(c, (x % 16) as u8));
            let hi: [u8; 32] = std::array::from_fn(|x| mul(c, ((x % 16) << 4) as u8));
            nibbles.push(lo);
            nibbles.push(hi);
        }
        Ok(Self {
            roots: r,
            gen,
            feedback,
            nibbles,
        })
    }

    /// Parity bytes per codeword.
    pub fn roots(&self) -> usize {
        self.roots
    }

    /// Message bytes per codeword.
    pub fn k(&self) -> usize {
        N - self.roots
    }

    /// Generator coefficients, lowest degree first.
    pub fn generator(&self) -> &[u8] {
        &self.gen
    }

    /// Parity of one message (up to k bytes; a shorter message is a shortened codeword, as if
    /// preceded by zeros). The reference the fast encoder is tested against.
    pub fn encode(&self, msg: &[u8], parity: &mut [u8]) {
        let r = self.roots;
        assert!(msg.len() <= self.k() && parity.len() == r);
        parity.fill(0);
        for &d in msg {
            let f = (d ^ parity[0]) as usize;
            let t = &self.feedback[f * r..f * r + r];
            for i in 0..r - 1 {
                parity[i] = parity[i + 1] ^ t[i];
            }
            parity[r - 1] = t[r - 1];
        }
    }

    /// Feeds one message row to `row.len()` interleaved codewords at once: byte `b` of `row` is
    /// the next message symbol of codeword `b`, whose LFSR state is `state[b * roots..][..roots]`
    /// (which is also the on-disk parity layout once every row is in).
    pub fn absorb_row(&self, state: &mut [u8], row: &[u8]) {
        assert_eq!(state.len(), row.len() * self.roots);
        macro_rules! fixed {
            ($($n:literal)*) => {
                match self.roots {
                    $($n => absorb_fixed::<$n>(&self.feedback, state, row),)*
                    _ => unreachable!("roots checked in Code::new"),
                }
            };
        }
        fixed!(2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24);
    }

    /// The parity of `row_len` interleaved codewords whose k message rows lie back to back in
    /// `rows` (byte `c` of row `j` is message symbol `j` of codeword `c`): codeword `c`'s parity
    /// goes to `out[c * roots..][..roots]`, the on-disk layout. Runs the AVX2 kernel
    /// (`crate::sys::simd::rs_avx2`) when the CPU has it and `VERITY_SIMD` allows it, else
    /// [`Code::encode_rows_portable`]; both give the same bytes (tested against each other).
    pub fn encode_rows(&self, rows: &[u8], row_len: usize, out: &mut [u8]) {
        assert_eq!(rows.len(), row_len * self.k(), "k rows of row_len bytes");
        assert_eq!(out.len(), row_len * self.roots, "roots bytes per codeword");
        // Layering exception, as in the tree hasher: the SIMD kernel needs `unsafe`, so it sits
        // in `sys`, and is pure computation.
        if crate::sys::simd::rs_avx2::encode_rows(&self.nibbles, rows, row_len, out) {
            return;
        }
        self.encode_rows_portable(rows, row_len, out);
    }

    /// [`Code::encode_rows`] without SIMD: tiles of codewords narrow enough that their state stays
    /// in the L1 cache while all k rows pass through it; 2 roots word-sliced (8 codewords per u64
    /// operation), more roots with the byte-sliced feedback table.
    pub fn encode_rows_portable(&self, rows: &[u8], row_len: usize, out: &mut [u8]) {
        assert_eq!(rows.len(), row_len * self.k(), "k rows of row_len bytes");
        assert_eq!(out.len(), row_len * self.roots, "roots bytes per codeword");
        const TILE: usize = 512;
        let r = self.roots;
        let mut base = 0;
        while base < row_len {
            let w = TILE.min(row_len - base);
            let o = &mut out[base * r..(base + w) * r];
            let row = |j: usize| &rows[j * row_len + base..j * row_len + base + w];
            if r == 2 && w.is_multiple_of(8) {
                let mut st = WideState::new(self, w);
                for j in 0..self.k() {
                    self.absorb_row_wide(&mut st, row(j));
                }
                st.write_parity(o);
            } else {
                o.fill(0);
                for j in 0..self.k() {
                    self.absorb_row(o, row(j));
                }
            }
            base += w;
        }
    }

    /// Feeds a row of zeros (the virtual padding past the covered blocks).
    pub fn absorb_zero_row(&self, state: &mut [u8]) {
        let zeros = vec![0u8; state.len() / self.roots];
        self.absorb_row(state, &zeros);
    }
}

/// Parity state of `width` interleaved codewords in word-sliced form: row `i` (parity byte `i` of
/// every codeword) is `width / 8` little-endian u64 words, so one word op advances 8 codewords.
#[derive(Debug, Clone)]
pub struct WideState {
    words: usize,
    rows: Vec<u64>,
}

impl WideState {
    /// A zero state for `width` codewords (`width` a multiple of 8).
    pub fn new(code: &Code, width: usize) -> Self {
        assert!(width.is_multiple_of(8), "width must be a multiple of 8");
        Self {
            words: width / 8,
            rows: vec![0; code.roots * width / 8],
        }
    }

    /// Writes the parity in the on-disk layout: codeword `b`'s `roots` bytes at `b * roots`.
    pub fn write_parity(&self, out: &mut [u8]) {
        let r = self.rows.len() / self.words;
        assert_eq!(out.len(), self.words * 8 * r);
        for i in 0..r {
            for (t, w) in self.rows[i * self.words..(i + 1) * self.words]
                .iter()
                .enumerate()
            {
                for (k, byte) in w.to_le_bytes().iter().enumerate() {
                    out[(t * 8 + k) * r + i] = *byte;
                }
            }
        }
    }
}

/// x * 2 in every byte lane of a word: shift, and reduce the lanes whose top bit fell off.
#[inline(always)]
fn double_lanes(x: u64) -> u64 {
    let carry = (x >> 7) & 0x0101_0101_0101_0101;
    ((x & 0x7f7f_7f7f_7f7f_7f7f) << 1) ^ (carry * 0x1d)
}

impl Code {
    /// Word-sliced [`Code::absorb_row`]: the same LFSR, 8 codewords per u64 operation, multiplying
    /// by each generator coefficient as an XOR of the feedback's doublings (no table lookups).
    pub fn absorb_row_wide(&self, state: &mut WideState, row: &[u8]) {
        assert_eq!(row.len(), state.words * 8);
        macro_rules! fixed {
            ($($n:literal)*) => {
                match self.roots {
                    $($n => absorb_wide::<$n>(&self.gen, state, row),)*
                    _ => unreachable!("roots checked in Code::new"),
                }
            };
        }
        fixed!(2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24);
    }
}

fn absorb_wide<const R: usize>(gen: &[u8], state: &mut WideState, row: &[u8]) {
    let coef: [u8; R] = std::array::from_fn(|i| gen[R - 1 - i]);
    let top = coef.iter().fold(0u8, |a, &c| a | c);
    let doublings = 8 - top.leading_zeros() as usize;
    let w = state.words;
    let st = &mut state.rows;
    if R == 2 && coef[..] == [3, 2] {
        // g(x) = x^2 + 3x + 2, the default: straight-line code the compiler can vectorize.
        let (s0, s1) = st.split_at_mut(w);
        for ((a, b), m) in s0.iter_mut().zip(s1.iter_mut()).zip(row.chunks_exact(8)) {
            let f = u64::from_le_bytes(m.try_into().expect("8 bytes")) ^ *a;
            let f2 = double_lanes(f);
            *a = *b ^ f2 ^ f;
            *b = f2;
        }
        return;
    }
    for (t, m) in row.chunks_exact(8).enumerate() {
        let m = u64::from_le_bytes(m.try_into().expect("8 bytes"));
        let mut pw = [0u64; 8];
        pw[0] = m ^ st[t];
        for i in 1..doublings {
            pw[i] = double_lanes(pw[i - 1]);
        }
        let mulc = |mut c: u8| {
            let mut acc = 0u64;
            while c != 0 {
                acc ^= pw[c.trailing_zeros() as usize];
                c &= c - 1;
            }
            acc
        };
        for i in 0..R - 1 {
            st[i * w + t] = st[(i + 1) * w + t] ^ mulc(coef[i]);
        }
        st[(R - 1) * w + t] = mulc(coef[R - 1]);
    }
}

/// The byte-sliced LFSR step with the root count known at compile time, so the shift and the
/// feedback XOR over `R` bytes become straight-line code.
fn absorb_fixed<const R: usize>(feedback: &[u8], state: &mut [u8], row: &[u8]) {
    for (st, &m) in state.chunks_exact_mut(R).zip(row) {
        let st: &mut [u8; R] = st.try_into().expect("chunk of R");
        let old = *st;
        let f = (m ^ old[0]) as usize;
        let t: &[u8; R] = feedback[f * R..f * R + R].try_into().expect("row of R");
        // From a copy, so the shift-and-XOR has no overlapping reads and writes to order.
        for i in 0..R - 1 {
            st[i] = old[i + 1] ^ t[i];
        }
        st[R - 1] = t[R - 1];
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verity::fec::gf::eval_low_first;

    #[test]
    fn generator_roots_are_consecutive_powers() {
        for roots in MIN_ROOTS..=MAX_ROOTS {
            let c = Code::new(roots).unwrap();
            for i in 0..roots as usize {
                assert_eq!(eval_low_first(c.generator(), alpha_pow(i)), 0);
            }
            assert_ne!(eval_low_first(c.generator(), alpha_pow(roots as usize)), 0);
        }
        // Spec: roots 2 gives g(x) = x^2 + 3x + 2.
        assert_eq!(Code::new(2).unwrap().generator(), &[2, 3, 1]);
        assert_eq!(Code::new(1).unwrap_err(), FecError::Roots(1));
        assert_eq!(Code::new(25).unwrap_err(), FecError::Roots(25));
    }

    fn codeword(c: &Code, seed: u8) -> Vec<u8> {
        let mut cw: Vec<u8> = (0..c.k())
            .map(|i| (i as u8).wrapping_mul(31) ^ seed)
            .collect();
        let mut p = vec![0u8; c.roots()];
        c.encode(&cw, &mut p);
        cw.extend_from_slice(&p);
        cw
    }

    #[test]
    fn encoded_words_have_zero_syndromes() {
        for roots in [2, 3, 7, 16, 24] {
            let c = Code::new(roots).unwrap();
            let cw = codeword(&c, 7);
            assert!(c.syndromes(&cw).iter().all(|&s| s == 0));
        }
    }

    #[test]
    fn byte_sliced_encoder_matches_per_codeword() {
        for roots in [2, 3, 5, 7, 16, 24] {
            let c = Code::new(roots).unwrap();
            let width = 37;
            let rows: Vec<Vec<u8>> = (0..c.k())
                .map(|j| (0..width).map(|b| (j * 7 + b * 13 + 1) as u8).collect())
                .collect();
            let mut state = vec![0u8; width * c.roots()];
            for row in &rows {
                c.absorb_row(&mut state, row);
            }
            for b in 0..width {
                let msg: Vec<u8> = rows.iter().map(|r| r[b]).collect();
                let mut p = vec![0u8; c.roots()];
                c.encode(&msg, &mut p);
                assert_eq!(&state[b * c.roots()..(b + 1) * c.roots()], &p[..]);
            }
        }
    }

    #[test]
    fn word_sliced_encoder_matches_table_encoder() {
        for roots in MIN_ROOTS..=MAX_ROOTS {
            let c = Code::new(roots).unwrap();
            let width = 64;
            let mut narrow = vec![0u8; width * c.roots()];
            let mut wide = WideState::new(&c, width);
            for j in 0..c.k() {
                let row: Vec<u8> = (0..width)
                    .map(|b| (j * 131 + b * 7 + b * b) as u8)
                    .collect();
                c.absorb_row(&mut narrow, &row);
                c.absorb_row_wide(&mut wide, &row);
            }
            let mut out = vec![0u8; width * c.roots()];
            wide.write_parity(&mut out);
            assert_eq!(out, narrow, "roots {roots}");
        }
    }
}
