//! GF(2^8) arithmetic for dm-verity's Reed-Solomon code: polynomial 0x11d, alpha = 2. The tables are
//! built at compile time so the hot loops are plain array lookups with no initialisation step.

/// The field polynomial x^8 + x^4 + x^3 + x^2 + 1.
pub const POLY: u16 = 0x11d;

const fn build_exp() -> [u8; 512] {
    let mut t = [0u8; 512];
    let mut x: u16 = 1;
    let mut i = 0;
    while i < 255 {
        t[i] = x as u8;
        t[i + 255] = x as u8;
        x <<= 1;
        if x & 0x100 != 0 {
            x ^= POLY;
        }
        i += 1;
    }
    // Indices up to 510 are used by mul without a modulo; 510 = 2 * 254 needs entries up to 509.
    t[510] = t[0];
    t[511] = t[1];
    t
}

const fn build_log(exp: &[u8; 512]) -> [u8; 256] {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 255 {
        t[exp[i] as usize] = i as u8;
        i += 1;
    }
    t
}

/// alpha^i for i in 0..510 (doubled so sums of two logs need no reduction).
pub static EXP: [u8; 512] = build_exp();
/// log_alpha(x) for x != 0; `LOG[0]` is meaningless.
pub static LOG: [u8; 256] = build_log(&build_exp());

const fn build_mul() -> [[u8; 256]; 256] {
    let exp = build_exp();
    let log = build_log(&exp);
    let mut t = [[0u8; 256]; 256];
    let mut a = 1;
    while a < 256 {
        let mut b = 1;
        while b < 256 {
            t[a][b] = exp[log[a] as usize + log[b] as usize];
            b += 1;
        }
        a += 1;
    }
    t
}

/// Full multiplication table: `MUL[a][b] = a * b`. Row `MUL[c]` multiplies a byte stream by `c`.
pub static MUL: [[u8; 256]; 256] = build_mul();

/// a * b.
#[inline]
pub fn mul(a: u8, b: u8) -> u8 {
    MUL[a as usize][b as usize]
}

/// a / b; `b` must not be zero.
#[inline]
pub fn div(a: u8, b: u8) -> u8 {
    debug_assert!(b != 0, "division by zero in GF(256)");
    if a == 0 {
        0
    } else {
        EXP[LOG[a as usize] as usize + 255 - LOG[b as usize] as usize]
    }
}

/// alpha^e for any exponent (reduced modulo 255).
#[inline]
pub fn alpha_pow(e: usize) -> u8 {
    EXP[e % 255]
}

/// `c` in the forms the multiply-accumulate kernels take (`crate::sys::simd::gf_mac`): the bit
/// matrix of `x -> c * x` (column `j` is `c * 2^j`; output bit `i` reads matrix byte `7 - i`) and
/// the products with the 16 low and the 16 high nibbles.
pub fn mac_coef(c: u8) -> crate::sys::simd::gf_mac::Coef {
    let mut matrix = 0u64;
    for i in 0..8 {
        let row = (0..8).fold(0u8, |r, j| r | (((mul(c, 1 << j) >> i) & 1) << j));
        matrix |= (row as u64) << (8 * (7 - i));
    }
    crate::sys::simd::gf_mac::Coef {
        matrix,
        lo: std::array::from_fn(|x| mul(c, (x % 16) as u8)),
        hi: std::array::from_fn(|x| mul(c, ((x % 16) << 4) as u8)),
    }
}

/// Evaluates a polynomial whose coefficients are given lowest degree first at `x`.
pub fn eval_low_first(poly: &[u8], x: u8) -> u8 {
    poly.iter().rev().fold(0u8, |acc, &c| mul(acc, x) ^ c)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Carry-less multiply with reduction, the definition the tables must agree with.
    fn slow_mul(mut a: u8, mut b: u8) -> u8 {
        let mut r = 0u8;
        while b != 0 {
            if b & 1 != 0 {
                r ^= a;
            }
            let hi = a & 0x80 != 0;
            a <<= 1;
            if hi {
                a ^= (POLY & 0xff) as u8;
            }
            b >>= 1;
        }
        r
    }

    #[test]
    fn tables_match_definition() {
        for a in 0..=255u8 {
            for b in 0..=255u8 {
                assert_eq!(mul(a, b), slow_mul(a, b), "{a} * {b}");
                if b != 0 {
                    assert_eq!(mul(div(a, b), b), a);
                }
            }
        }
    }

    #[test]
    fn mac_matrices_are_the_ones_spec_performance_gives() {
        assert_eq!(mac_coef(2).matrix, 0x8001828488102040);
        assert_eq!(mac_coef(3).matrix, 0x8103868c983060c0);
    }

    #[test]
    fn alpha_is_primitive() {
        let mut seen = [false; 256];
        for i in 0..255 {
            let x = alpha_pow(i);
            assert!(!seen[x as usize], "alpha^{i} repeats");
            seen[x as usize] = true;
        }
        assert_eq!(alpha_pow(8), 0x1d);
        assert_eq!(alpha_pow(255), 1);
    }
}
