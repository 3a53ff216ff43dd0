//! Tests of the decoder: what it corrects, and that it gives exactly what the straightforward
//! decoder it replaced gave (kept here as `reference_decode`) on words within and past capacity.

use super::super::gf::{alpha_pow, div, eval_low_first, mul};
use super::super::rs::{Code, DecodeError, MAX_ROOTS, MIN_ROOTS, N};
use proptest::prelude::*;

fn codeword(c: &Code, seed: u8) -> Vec<u8> {
    let mut cw: Vec<u8> = (0..c.k())
        .map(|i| (i as u8).wrapping_mul(31) ^ seed)
        .collect();
    let mut p = vec![0u8; c.roots()];
    c.encode(&cw, &mut p);
    cw.extend_from_slice(&p);
    cw
}

/// The syndromes as the replaced decoder computed them.
fn ref_syndromes(c: &Code, cw: &[u8]) -> Vec<u8> {
    (0..c.roots())
        .map(|j| {
            let a = alpha_pow(j);
            cw.iter().fold(0u8, |acc, &x| mul(acc, a) ^ x)
        })
        .collect()
}

/// The decoder `Code::decode` replaced, verbatim (heap vectors, a full Chien search, syndromes
/// recomputed over the corrected word): the new one must agree with it on every input.
fn reference_decode(c: &Code, cw: &mut [u8], erasures: &[usize]) -> Result<usize, DecodeError> {
    assert_eq!(cw.len(), N, "a codeword has 255 bytes");
    let nr = c.roots();
    let s = ref_syndromes(c, cw);
    if s.iter().all(|&x| x == 0) {
        return Ok(0);
    }
    let mut eras: Vec<usize> = erasures.to_vec();
    eras.sort_unstable();
    eras.dedup();
    if eras.len() > nr || eras.iter().any(|&p| p >= N) {
        return Err(DecodeError::TooManyErasures {
            given: eras.len(),
            roots: nr,
        });
    }
    // Erasure locator: prod (1 + X_k x), X_k = alpha^(254 - position).
    let mut lambda = vec![0u8; nr + 1];
    lambda[0] = 1;
    for (deg, &p) in eras.iter().enumerate() {
        let x = alpha_pow(N - 1 - p);
        for i in (1..=deg + 1).rev() {
            lambda[i] ^= mul(x, lambda[i - 1]);
        }
    }
    let ne = eras.len();
    // Berlekamp-Massey, seeded with the erasure locator.
    let mut b = lambda.clone();
    let mut el = ne;
    for r in ne + 1..=nr {
        let discr = (0..r).fold(0u8, |acc, i| acc ^ mul(lambda[i], s[r - 1 - i]));
        if discr == 0 {
            b.rotate_right(1);
            b[0] = 0;
            continue;
        }
        let mut t = lambda.clone();
        for i in 1..=nr {
            t[i] ^= mul(discr, b[i - 1]);
        }
        if 2 * el < r + ne {
            el = r + ne - el;
            for (bi, &li) in b.iter_mut().zip(&lambda) {
                *bi = div(li, discr);
            }
        } else {
            b.rotate_right(1);
            b[0] = 0;
        }
        lambda = t;
    }
    let deg = lambda.iter().rposition(|&x| x != 0).unwrap_or(0);
    if deg == 0 {
        return Err(DecodeError::Uncorrectable);
    }
    // Chien search over the 255 positions.
    let mut locs = Vec::with_capacity(deg);
    for p in 0..N {
        let xinv = alpha_pow(255 - (N - 1 - p));
        if eval_low_first(&lambda[..=deg], xinv) == 0 {
            locs.push(p);
        }
    }
    if locs.len() != deg {
        return Err(DecodeError::Uncorrectable);
    }
    // Omega = S * Lambda mod x^roots; Forney with fcr 0: e = X * Omega(X^-1) / Lambda'(X^-1).
    let omega: Vec<u8> = (0..nr)
        .map(|i| (0..=i.min(deg)).fold(0u8, |acc, j| acc ^ mul(s[i - j], lambda[j])))
        .collect();
    let mut fixed = cw.to_vec();
    let mut changed = 0;
    for &p in &locs {
        let xlog = N - 1 - p;
        let xinv = alpha_pow(255 - xlog);
        let num = eval_low_first(&omega, xinv);
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
            fixed[p] ^= e;
            changed += 1;
        }
    }
    // Past capacity the algebra can land on a wrong "solution"; only a real codeword counts.
    if ref_syndromes(c, &fixed).iter().any(|&x| x != 0) {
        return Err(DecodeError::Uncorrectable);
    }
    cw.copy_from_slice(&fixed);
    Ok(changed)
}

#[test]
fn corrects_errors_up_to_half_the_roots() {
    for roots in [2u32, 3, 7, 16, 24] {
        let c = Code::new(roots).unwrap();
        let good = codeword(&c, 1);
        let t = roots as usize / 2;
        let mut bad = good.clone();
        for e in 0..t {
            bad[e * 17 + 3] ^= 0x5a + e as u8;
        }
        assert_eq!(c.decode(&mut bad, &[]), Ok(t), "roots {roots}");
        assert_eq!(bad, good);
    }
}

#[test]
fn corrects_erasures_up_to_the_roots() {
    for roots in [2u32, 3, 7, 16, 24] {
        let c = Code::new(roots).unwrap();
        let good = codeword(&c, 2);
        let mut bad = good.clone();
        let pos: Vec<usize> = (0..roots as usize).map(|e| e * 10 + 1).collect();
        for &p in &pos {
            bad[p] ^= 0xff;
        }
        assert_eq!(c.decode(&mut bad, &pos), Ok(pos.len()), "roots {roots}");
        assert_eq!(bad, good);
    }
}

#[test]
fn mixes_errors_and_erasures() {
    // 2 * errors + erasures <= roots.
    let c = Code::new(7).unwrap();
    let good = codeword(&c, 3);
    let mut bad = good.clone();
    for p in [5, 100, 200, 250] {
        bad[p] ^= 0x11;
    }
    bad[30] ^= 1;
    assert_eq!(c.decode(&mut bad, &[5, 100, 200, 250, 3]), Ok(5));
    assert_eq!(bad, good);
}

#[test]
fn past_capacity_fails_and_leaves_the_word() {
    let c = Code::new(2).unwrap();
    let mut bad = codeword(&c, 4);
    bad[0] ^= 1;
    bad[1] ^= 2;
    let before = bad.clone();
    assert_eq!(c.decode(&mut bad, &[]), Err(DecodeError::Uncorrectable));
    assert_eq!(bad, before);
    assert!(matches!(
        c.decode(&mut bad, &[1, 2, 3]),
        Err(DecodeError::TooManyErasures { given: 3, roots: 2 })
    ));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Encode, corrupt within capacity (2 * errors + erasures <= roots), decode: the original.
    #[test]
    fn decode_undoes_corruption_within_capacity(
        roots in MIN_ROOTS..=MAX_ROOTS,
        msg in proptest::collection::vec(any::<u8>(), 253),
        positions in proptest::collection::vec(0usize..N, 0..24),
        values in proptest::collection::vec(1u8..=255, 24),
        erase_first in 0usize..24,
    ) {
        let code = Code::new(roots).unwrap();
        let k = code.k();
        let mut cw = msg[..k].to_vec();
        let mut parity = vec![0u8; roots as usize];
        code.encode(&cw, &mut parity);
        cw.extend_from_slice(&parity);
        let good = cw.clone();
        let mut pos = positions;
        pos.sort_unstable();
        pos.dedup();
        // Choose how many are erasures (known) and errors (unknown) so the budget holds.
        let n_eras = erase_first.min(pos.len()).min(roots as usize);
        let n_err = ((roots as usize - n_eras) / 2).min(pos.len() - n_eras);
        pos.truncate(n_eras + n_err);
        for (p, v) in pos.iter().zip(&values) {
            cw[*p] ^= v;
        }
        let eras = &pos[..n_eras];
        let fixed = code.decode(&mut cw, eras);
        prop_assert!(fixed.is_ok(), "roots {} eras {} errs {}", roots, n_eras, n_err);
        prop_assert_eq!(fixed.unwrap(), pos.len());
        prop_assert_eq!(cw, good);
    }
}

/// A codeword from `msg`, then `errors` (position, XOR value) applied.
fn corrupted(c: &Code, msg: &[u8], errors: &[(usize, u8)]) -> Vec<u8> {
    let mut cw = msg[..c.k()].to_vec();
    let mut p = vec![0u8; c.roots()];
    c.encode(&cw, &mut p);
    cw.extend_from_slice(&p);
    for &(pos, v) in errors {
        cw[pos] ^= v;
    }
    cw
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    /// Any number of errors (also far past capacity, where wrong "solutions" lurk), any erasure
    /// list (also too long, duplicated or out of range): the same result and the same word as
    /// the replaced decoder.
    #[test]
    fn decode_matches_the_replaced_decoder(
        roots in MIN_ROOTS..=MAX_ROOTS,
        msg in proptest::collection::vec(any::<u8>(), 253),
        errors in proptest::collection::vec((0usize..N, 1u8..=255), 0..30),
        erasures in proptest::collection::vec(0usize..N + 2, 0..27),
        n_eras in 0usize..27,
    ) {
        let code = Code::new(roots).unwrap();
        let cw = corrupted(&code, &msg, &errors);
        // Erasures that hit real errors are the interesting case: the errors' positions first.
        let eras: Vec<usize> =
            errors.iter().map(|e| e.0).chain(erasures).take(n_eras).collect();
        for e in [&eras[..], &[]] {
            let mut ours = cw.clone();
            let mut theirs = cw.clone();
            let a = code.decode(&mut ours, e);
            let b = reference_decode(&code, &mut theirs, e);
            prop_assert_eq!(a, b, "roots {} erasures {:?}", roots, e);
            prop_assert_eq!(ours, theirs);
        }
    }

    /// Syndromes from the re-encoded remainder equal those of the whole word.
    #[test]
    fn remainder_syndromes_match_the_codeword(
        roots in MIN_ROOTS..=MAX_ROOTS,
        msg in proptest::collection::vec(any::<u8>(), 253),
        errors in proptest::collection::vec((0usize..N, 1u8..=255), 0..30),
    ) {
        let code = Code::new(roots).unwrap();
        let cw = corrupted(&code, &msg, &errors);
        let (m, p) = cw.split_at(code.k());
        let mut again = vec![0u8; code.roots()];
        code.encode(m, &mut again);
        let diff: Vec<u8> = again.iter().zip(p).map(|(a, b)| a ^ b).collect();
        let want = ref_syndromes(&code, &cw);
        prop_assert_eq!(&code.remainder_syndromes(&diff)[..code.roots()], &want[..]);
        prop_assert_eq!(&code.syndromes(&cw)[..code.roots()], &want[..]);
    }
}

/// Erasures on the exact error positions make the locator's roots the erasures (the fast path
/// of the root search); one extra error beside them must still be found by the full search.
#[test]
fn erasure_roots_and_the_full_search_agree_with_the_reference() {
    for roots in [4u32, 8, 24] {
        let c = Code::new(roots).unwrap();
        let msg: Vec<u8> = (0..253).map(|i| (i * 7 + 3) as u8).collect();
        let r = roots as usize;
        let eras: Vec<usize> = (0..r - 2).map(|i| i * 9 + 4).collect();
        let mut errors: Vec<(usize, u8)> = eras.iter().map(|&p| (p, 0x33)).collect();
        errors.push((200, 0x81));
        let cw = corrupted(&c, &msg, &errors);
        let mut ours = cw.clone();
        let mut theirs = cw.clone();
        assert_eq!(c.decode(&mut ours, &eras), Ok(r - 1), "roots {roots}");
        assert_eq!(reference_decode(&c, &mut theirs, &eras), Ok(r - 1));
        assert_eq!(ours, theirs);
        assert_eq!(ours, corrupted(&c, &msg, &[]));
    }
}
