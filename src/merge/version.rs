//! systemd's version-aware name comparison (`strverscmp_improved`, src/fundamental), which decides
//! the order of extensions in the overlay: the name that sorts last is the top layer and wins.
//!
//! Rules, as systemd's: characters other than `[0-9A-Za-z~^.-]` are skipped; `~` sorts before
//! anything (pre-releases), `-` before anything but `~`, `^` and `.` before
//! alphanumerics but after the end of the string; numeric runs compare by value (leading zeros ignored) and are newer than letters;
//! letter runs compare bytewise, longer being newer; with everything equal, more segments is newer.

use std::cmp::Ordering;

fn valid(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'~' | b'-' | b'^' | b'.')
}

/// Compares two version-ish strings the way systemd sorts extension names.
pub fn strverscmp_improved(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let at = |s: &[u8], i: usize| s.get(i).copied().unwrap_or(0);
    let (mut i, mut j) = (0usize, 0usize);
    loop {
        while i < a.len() && !valid(a[i]) {
            i += 1;
        }
        while j < b.len() && !valid(b[j]) {
            j += 1;
        }
        let (ca, cb) = (at(a, i), at(b, j));
        if ca == b'~' || cb == b'~' {
            let r = (ca != b'~').cmp(&(cb != b'~'));
            if r != Ordering::Equal {
                return r;
            }
            i += 1;
            j += 1;
        }
        let (ca, cb) = (at(a, i), at(b, j));
        if ca == 0 || cb == 0 {
            return ca.cmp(&cb);
        }
        if ca == b'-' || cb == b'-' {
            let r = (ca != b'-').cmp(&(cb != b'-'));
            if r != Ordering::Equal {
                return r;
            }
            i += 1;
            j += 1;
        }
        let (ca, cb) = (at(a, i), at(b, j));
        if ca == b'^' || cb == b'^' {
            let r = (ca != b'^').cmp(&(cb != b'^'));
            if r != Ordering::Equal {
                return r;
            }
            i += 1;
            j += 1;
        }
        let (ca, cb) = (at(a, i), at(b, j));
        if ca == b'.' || cb == b'.' {
            let r = (ca != b'.').cmp(&(cb != b'.'));
            if r != Ordering::Equal {
                return r;
            }
            i += 1;
            j += 1;
        }
        let (ca, cb) = (at(a, i), at(b, j));
        let (ni, nj);
        if ca.is_ascii_digit() || cb.is_ascii_digit() {
            let mut aa = i;
            while at(a, aa).is_ascii_digit() {
                aa += 1;
            }
            let mut bb = j;
            while at(b, bb).is_ascii_digit() {
                bb += 1;
            }
            let r = (i != aa).cmp(&(j != bb));
            if r != Ordering::Equal {
                return r;
            }
            while at(a, i) == b'0' && i < aa {
                i += 1;
            }
            while at(b, j) == b'0' && j < bb {
                j += 1;
            }
            let r = (aa - i).cmp(&(bb - j));
            if r != Ordering::Equal {
                return r;
            }
            let r = a[i..aa].cmp(&b[j..bb]);
            if r != Ordering::Equal {
                return r;
            }
            (ni, nj) = (aa, bb);
        } else {
            let mut aa = i;
            while at(a, aa).is_ascii_alphabetic() {
                aa += 1;
            }
            let mut bb = j;
            while at(b, bb).is_ascii_alphabetic() {
                bb += 1;
            }
            let n = (aa - i).min(bb - j);
            let r = a[i..i + n].cmp(&b[j..j + n]);
            if r != Ordering::Equal {
                return r;
            }
            let r = (aa - i).cmp(&(bb - j));
            if r != Ordering::Equal {
                return r;
            }
            (ni, nj) = (aa, bb);
        }
        i = ni;
        j = nj;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Ordering::*;

    // systemd's test-string-util.c TEST(strverscmp_improved): the list is ascending.
    const ASCENDING: &[&str] = &[
        "~1",
        "",
        "ab",
        "abb",
        "abc",
        "0001",
        "002",
        "12",
        "122",
        "122.9",
        "123~rc1",
        "123",
        "123-a",
        "123-a.1",
        "123-a1",
        "123-a1.1",
        "123-3",
        "123-3.1",
        "123^patch1",
        "123^1",
        "123.a-1",
        "123.1-1",
        "123a-1",
        "124",
    ];

    #[test]
    fn systemd_ascending_list_sorts_in_order() {
        for (i, a) in ASCENDING.iter().enumerate() {
            for (j, b) in ASCENDING.iter().enumerate() {
                let want = i.cmp(&j);
                assert_eq!(strverscmp_improved(a, b), want, "{a:?} vs {b:?}");
            }
        }
    }

    #[test]
    fn systemd_corner_cases() {
        assert_eq!(strverscmp_improved("123_aa2-67.89", "123aa+2-67.89"), Equal);
        assert_eq!(strverscmp_improved("123.", "123"), Greater);
        assert_eq!(strverscmp_improved("12_3", "123"), Less);
        assert_eq!(strverscmp_improved("12_3", "12.3"), Greater);
        assert_eq!(strverscmp_improved("123..0", "123.0"), Less);
        assert_eq!(strverscmp_improved("_0_", "0"), Equal);
        assert_eq!(strverscmp_improved("", "~"), Greater);
        assert_eq!(strverscmp_improved("1.0^git1", "1.01"), Less);
        assert_eq!(strverscmp_improved("10.0001", "10.1"), Equal);
        assert_eq!(strverscmp_improved("1b.fc17", "1.fc17"), Greater);
    }

    #[test]
    fn leading_zeros_and_skipped_characters() {
        assert_eq!(strverscmp_improved("123", "0123"), Equal);
        assert_eq!(strverscmp_improved("foo_2", "foo_10"), Less);
        assert_eq!(strverscmp_improved("a", "b"), Less);
        assert_eq!(strverscmp_improved("zz", "aaa"), Greater);
    }
}
