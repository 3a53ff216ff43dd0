//! Versions: systemd's version-aware comparison (`strverscmp_improved`, src/fundamental), which
//! decides the order of extensions in the overlay (the name that sorts last is the top layer and
//! wins) and whether a release is older than a rollback floor, and the version alphabet an
//! `IMAGE_VERSION=` may use ([`version_problem`]). Here in `image` (layer L8) because the image
//! builder, the merge planner, vpick and the rollback floors all order or check versions.
//! Hand-written on purpose (issue 16, point 5): no maintained crate implements systemd's ordering
//! (`~` pre-releases, `^` post-releases, the handling of separators), and a different order would
//! pick a different top layer or floor than systemd.
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

/// Longest version string kept as a floor (systemd's own versions are far shorter).
pub const MAX_VERSION_LEN: usize = 128;

/// Whether `v` may be stored as a floor or written as `IMAGE_VERSION=`: 1-128 characters from
/// systemd's version alphabet (`version_is_valid`: letters, digits, `.,_+-`) plus the `~` and `^`
/// that `strverscmp_improved` orders. No `:`, so a version fits an event string's field; no
/// space or quote, so it needs no quoting in an os-release file.
pub fn version_is_valid(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= MAX_VERSION_LEN
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".,_+-~^".contains(&b))
}

/// What a version is refused for, in words, or None when it is valid.
pub fn version_problem(v: &str) -> Option<String> {
    if v.is_empty() {
        return Some("is empty".into());
    }
    if v.len() > MAX_VERSION_LEN {
        return Some(format!("is longer than {MAX_VERSION_LEN} characters"));
    }
    if let Some(c) = v
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || ".,_+-~^".contains(*c)))
    {
        return Some(format!(
            "contains {c:?}; versions use letters, digits and . , _ + - ~ ^"
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use Ordering::*;

    #[test]
    fn versions_valid_and_refused() {
        for v in [
            "1",
            "1.2.3",
            "2024.01.05-rc1",
            "1.0~rc1",
            "1.0^git3",
            "7_x",
            "1+2,3",
        ] {
            assert!(version_is_valid(v), "{v}");
            assert_eq!(version_problem(v), None);
        }
        for v in ["", "1 2", "1:2", "a\"b", "é", &"9".repeat(129)] {
            assert!(!version_is_valid(v), "{v}");
            assert!(version_problem(v).is_some(), "{v}");
        }
        assert!(version_problem("1:2").unwrap().contains("':'"));
    }

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
