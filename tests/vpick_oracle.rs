//! `merge::vpick` against systemd 257's own `systemd-vpick` (tests/oracle/systemd-257): the same
//! directories, generated from the pieces of the name grammar (basenames, versions that sort in
//! interesting ways, architecture words, boot counters, suffixes, and directories where files are
//! wanted), must give the same pick (file, version, architecture, tries) or the same refusal.
//! Needs the oracle (fetched once, then cached).

#[path = "support/systemd257.rs"]
mod systemd257;

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use verity::merge::vpick::{pick, Entry, EntryKind, Filter};

/// systemd-vpick 257 was built for x86-64: native x86-64, secondary x86.
const HOST: &[&str] = &["x86-64", "x86"];

/// xorshift64*: a fixed sequence, so a failure names a case that can be rerun.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[(self.next() % from.len() as u64) as usize]
    }
}

fn listing(rng: &mut Rng) -> Vec<Entry> {
    let bases = ["foo", "foo", "foo", "foo", "foo", "foobar", "fo", "quux"];
    let versions = [
        "1", "1.9", "1.10", "2.0~rc1", "2.0", "2.0^p1", "10", "1.0+git", "1_2", "", "2.0-1", "a",
        "007",
    ];
    let archs = [
        "", "", "_x86-64", "_x86", "_arm64", "_sparc", "_bogus", "_s390",
    ];
    let tries = ["", "", "+0", "+3", "+3-1", "+0-5", "+1-", "+x", "+3-2"];
    let suffixes = [".raw", ".raw", ".raw", ".raw", ".raw", ".img", ""];
    let n = 1 + rng.next() % 10;
    let mut out: Vec<Entry> = Vec::new();
    for _ in 0..n {
        let name = format!(
            "{}_{}{}{}{}",
            rng.pick(&bases),
            rng.pick(&versions),
            rng.pick(&archs),
            rng.pick(&tries),
            rng.pick(&suffixes)
        );
        let kind = if rng.next().is_multiple_of(10) {
            EntryKind::Directory
        } else {
            EntryKind::File
        };
        if !out.iter().any(|e| e.name == name) {
            out.push(Entry { name, kind });
        }
    }
    out
}

/// systemd-vpick's `--print=all` as key/value pairs, or None when it picked nothing.
fn oracle(vpick: &Path, dir: &Path, arch: Option<&str>) -> Option<HashMap<String, String>> {
    let mut c = Command::new(vpick);
    c.args(["-B", "foo", "-S", ".raw", "-t", "reg", "-p", "all"]);
    if let Some(a) = arch {
        c.args(["-A", a]);
    }
    let o = c.arg(dir).output().expect("run systemd-vpick");
    if !o.status.success() {
        return None;
    }
    Some(
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect(),
    )
}

#[test]
fn oracle_systemd_vpick_257_picks_the_same_entries() {
    let vpick = systemd257::tool("systemd-vpick");
    let t = tempfile::tempdir().unwrap();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let (mut picked, mut none) = (0, 0);
    for case in 0..250 {
        let entries = listing(&mut rng);
        let dir = t.path().join(format!("c{case}.raw.v"));
        std::fs::create_dir(&dir).unwrap();
        for e in &entries {
            match e.kind {
                EntryKind::Directory => std::fs::create_dir(dir.join(&e.name)).unwrap(),
                _ => std::fs::write(dir.join(&e.name), b"x").unwrap(),
            }
        }
        let arch = [None, None, None, Some("x86"), Some("s390")][case % 5];
        let f = Filter {
            basename: "foo",
            suffix: ".raw",
            kinds: &[EntryKind::File],
            architecture: arch,
            version: None,
        };
        let ours = pick(&entries, &f, HOST);
        let theirs = oracle(&vpick, &dir, arch);
        let names: Vec<_> = entries.iter().map(|e| (&e.name, e.kind)).collect();
        let ctx = format!("case {case} (-A {arch:?}) {names:?}");
        match (ours, theirs) {
            (Ok(Some(p)), Some(m)) => {
                picked += 1;
                assert_eq!(
                    m["Path"],
                    dir.join(&p.file_name).display().to_string(),
                    "{ctx}"
                );
                assert_eq!(m["Version"], p.version, "{ctx}");
                assert_eq!(m["Architecture"], p.architecture.unwrap_or("n/a"), "{ctx}");
                assert_eq!(
                    m.get("Tries left").map(String::as_str),
                    p.tries_left.map(|n| n.to_string()).as_deref(),
                    "{ctx}"
                );
                assert_eq!(
                    m.get("Tries done").map(String::as_str),
                    p.tries_done.map(|n| n.to_string()).as_deref(),
                    "{ctx}"
                );
            }
            (Ok(None) | Err(_), None) => none += 1,
            (ours, theirs) => panic!("{ctx}: verity {ours:?}, systemd-vpick {theirs:?}"),
        }
    }
    // The generator reaches both outcomes often enough for the comparison to mean something.
    assert!(picked > 100 && none > 30, "picked {picked}, none {none}");
}
