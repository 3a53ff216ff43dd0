//! The errors-and-erasures decoder of the RS(255, k) code (Berlekamp-Massey, root search,
//! Forney), split in two so a whole round can be decoded without gathering codewords: the
//! syndromes of all of a round's codewords come from re-encoding its message rows with the fast
//! encoder ([`Code::remainder_syndromes`]), and [`Code::solve`] turns one codeword's syndromes
//! into error positions and values. Nothing on the way allocates: correcting 100 bad blocks means
//! solving about 400,000 codewords, so per-codeword heap traffic would dominate.

use super::gf::{alpha_pow, div, eval_low_first, mul, LOG};
use super::rs::{Code, DecodeError, MAX_ROOTS as MAX_ROOTS_U32, N};

/// Most parity symbols, as an array length.
const MAX_ROOTS: usize = MAX_ROOTS_U32 as usize;

/// Syndromes of one codeword; only the first `roots` are meaningful.
pub type Syndromes = [u8; MAX_ROOTS];

/// The corrections [`Code::solve`] found: distinct positions (0 ..= 254, message first) and the
/// non-zero values to XOR into them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Errata {
    len: usize,
    pos: [u8; MAX_ROOTS],
    val: [u8; MAX_ROOTS],
}

impl Errata {
    const NONE: Self = Self {
        len: 0,
        pos: [0; MAX_ROOTS],
        val: [0; MAX_ROOTS],
    };

    /// (position, value) pairs.
    pub fn iter(&self) -> impl Iterator<Item = (usize, u8)> + '_ {
        self.pos[..self.len]
            .iter()
            .zip(&self.val[..self.len])
            .map(|(&p, &v)| (p as usize, v))
    }

    /// Bytes to change.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when the codeword was already correct (or the errors cancelled out).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Code {
    /// Syndromes S_j = c(alpha^j), j < roots, of a whole 255-byte codeword (first byte = highest
    /// degree). All zero means `cw` is a codeword.
    pub fn syndromes(&self, cw: &[u8]) -> Syndromes {
        let mut s = [0u8; MAX_ROOTS];
        for (j, sj) in s[..self.roots()].iter_mut().enumerate() {
            let a = alpha_pow(j);
            *sj = cw.iter().fold(0u8, |acc, &c| mul(acc, a) ^ c);
        }
        s
    }

    /// The same syndromes from `diff`, the XOR of a codeword's stored parity and the parity the
    /// encoder computes from its message (`roots` bytes, highest degree first). The codeword is
    /// c = m x^r + p and m x^r + p' is a multiple of g, so c(alpha^j) = (p + p')(alpha^j) at
    /// every root of g: `roots` symbols to evaluate instead of 255.
    pub fn remainder_syndromes(&self, diff: &[u8]) -> Syndromes {
        assert_eq!(diff.len(), self.roots(), "one remainder per codeword");
        self.syndromes(diff)
    }

    /// Corrects a 255-byte codeword in place (message first, then parity). `erasures` are
    /// positions (0 ..= 254) known or suspected to be wrong. Returns the number of bytes changed;
    /// on error `cw` is left as it was.
    pub fn decode(&self, cw: &mut [u8], erasures: &[usize]) -> Result<usize, DecodeError> {
        assert_eq!(cw.len(), N, "a codeword has 255 bytes");
        let fix = self.solve(&self.syndromes(cw), erasures)?;
        for (p, v) in fix.iter() {
            cw[p] ^= v;
        }
        Ok(fix.len())
    }

    /// The errors of a codeword with syndromes `s` (see [`Code::syndromes`]), given `erasures`
    /// as in [`Code::decode`]: where they are and what to XOR there. Accepted only if the
    /// corrected word is a codeword (all its syndromes zero).
    pub fn solve(&self, s: &Syndromes, erasures: &[usize]) -> Result<Errata, DecodeError> {
        let nr = self.roots();
        let s = &s[..nr];
        if s.iter().all(|&x| x == 0) {
            return Ok(Errata::NONE);
        }
        let mut eras = [0usize; MAX_ROOTS];
        let ne = sorted_erasures(erasures, nr, &mut eras)?;
        let eras = &eras[..ne];
        let lambda = locator(s, eras, nr);
        let deg = lambda.iter().rposition(|&x| x != 0).unwrap_or(0);
        if deg == 0 {
            return Err(DecodeError::Uncorrectable);
        }
        let mut locs = [0u8; MAX_ROOTS];
        if !find_roots(&lambda[..=deg], eras, &mut locs[..deg]) {
            return Err(DecodeError::Uncorrectable);
        }
        // Omega = S * Lambda mod x^roots; Forney with fcr 0: e = X * Omega(X^-1) / Lambda'(X^-1).
        let mut omega = [0u8; MAX_ROOTS];
        for (i, o) in omega[..nr].iter_mut().enumerate() {
            *o = (0..=i.min(deg)).fold(0u8, |acc, j| acc ^ mul(s[i - j], lambda[j]));
        }
        let mut fix = Errata::NONE;
        // The syndromes of the corrected word, updated per correction (they are linear in it).
        let mut after = [0u8; MAX_ROOTS];
        after[..nr].copy_from_slice(s);
        for &p in &locs[..deg] {
            let xlog = N - 1 - p as usize;
            let xinv = alpha_pow(255 - xlog);
            let num = eval_low_first(&omega[..nr], xinv);
            // Formal derivative in characteristic 2: the odd terms, one degree lower.
            let mut den = 0u8;
            let mut i = 1;
            while i <= deg {
                den ^= mul(lambda[i], alpha_pow((255 - xlog) * (i - 1)));
                i += 2;
            }
            if den == 0 {
                return Err(DecodeError::Uncorrectable);
            }
            let e = mul(alpha_pow(xlog), div(num, den));
            if e != 0 {
                fix.pos[fix.len] = p;
                fix.val[fix.len] = e;
                fix.len += 1;
                for (j, a) in after[..nr].iter_mut().enumerate() {
                    *a ^= mul(e, alpha_pow(j * xlog));
                }
            }
        }
        // Past capacity the algebra can land on a wrong "solution"; only a real codeword counts.
        if after[..nr].iter().any(|&x| x != 0) {
            return Err(DecodeError::Uncorrectable);
        }
        Ok(fix)
    }
}

/// Sorts and deduplicates `erasures` into `out`; fails when more than `nr` remain or one lies
/// outside the codeword.
fn sorted_erasures(
    erasures: &[usize],
    nr: usize,
    out: &mut [usize; MAX_ROOTS],
) -> Result<usize, DecodeError> {
    let too_many = |given: usize| DecodeError::TooManyErasures { given, roots: nr };
    if erasures.len() > MAX_ROOTS {
        // Callers pass at most `roots`; only a misuse ends up here, so the heap is fine.
        let mut v = erasures.to_vec();
        v.sort_unstable();
        v.dedup();
        if v.len() > nr || v.iter().any(|&p| p >= N) {
            return Err(too_many(v.len()));
        }
        out[..v.len()].copy_from_slice(&v);
        return Ok(v.len());
    }
    let e = &mut out[..erasures.len()];
    e.copy_from_slice(erasures);
    e.sort_unstable();
    let mut n = 0;
    for i in 0..e.len() {
        if n == 0 || e[n - 1] != e[i] {
            e[n] = e[i];
            n += 1;
        }
    }
    if n > nr || e[..n].iter().any(|&p| p >= N) {
        return Err(too_many(n));
    }
    Ok(n)
}

/// The error-and-erasure locator: Berlekamp-Massey seeded with the erasure locator
/// prod (1 + X_k x), X_k = alpha^(254 - position). Coefficients lowest degree first.
fn locator(s: &[u8], eras: &[usize], nr: usize) -> [u8; MAX_ROOTS + 1] {
    let mut lambda = [0u8; MAX_ROOTS + 1];
    lambda[0] = 1;
    for (deg, &p) in eras.iter().enumerate() {
        let x = alpha_pow(N - 1 - p);
        for i in (1..=deg + 1).rev() {
            lambda[i] ^= mul(x, lambda[i - 1]);
        }
    }
    let ne = eras.len();
    let mut b = lambda;
    let mut el = ne;
    // b <- x * b, within the nr + 1 coefficients in use.
    let shift = |b: &mut [u8; MAX_ROOTS + 1]| {
        b[..=nr].rotate_right(1);
        b[0] = 0;
    };
    for r in ne + 1..=nr {
        let discr = (0..r).fold(0u8, |acc, i| acc ^ mul(lambda[i], s[r - 1 - i]));
        if discr == 0 {
            shift(&mut b);
            continue;
        }
        let mut t = lambda;
        for i in 1..=nr {
            t[i] ^= mul(discr, b[i - 1]);
        }
        if 2 * el < r + ne {
            el = r + ne - el;
            for i in 0..=nr {
                b[i] = div(lambda[i], discr);
            }
        } else {
            shift(&mut b);
        }
        lambda = t;
    }
    lambda
}

/// Finds the positions p (0 ..= 254) whose X^-1 = alpha^-(254 - p) is a root of `lambda` (degree
/// `locs.len()`, lambda(0) = 1) into `locs`; true when there are exactly that many, i.e. the
/// locator splits into distinct factors at positions of the codeword. Every non-zero field element
/// is some position's X^-1, so this is "all roots are distinct and non-zero". A degree-1 locator
/// has its root in closed form, and when the erasures already give `deg` roots there can be no
/// other; otherwise every position is tried (the Chien search).
fn find_roots(lambda: &[u8], eras: &[usize], locs: &mut [u8]) -> bool {
    let deg = locs.len();
    let is_root = |p: usize| eval_low_first(lambda, alpha_pow(255 - (N - 1 - p))) == 0;
    if deg == 1 {
        // 1 + l1 x = 0 at x = 1 / l1 = alpha^-(254 - p), so l1 = alpha^(254 - p).
        locs[0] = (N - 1 - LOG[lambda[1] as usize] as usize) as u8;
        return true;
    }
    let mut n = 0;
    for &p in eras {
        if is_root(p) {
            locs[n] = p as u8;
            n += 1;
        }
    }
    if n == deg {
        return true;
    }
    n = 0;
    for p in 0..N {
        if is_root(p) {
            if n == deg {
                return false;
            }
            locs[n] = p as u8;
            n += 1;
        }
    }
    n == deg
}

#[cfg(test)]
mod tests;
