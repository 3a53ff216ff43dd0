//! FEC against the real veritysetup (2.6.1): parity byte-identical for roots 2..24, three block
//! sizes and the three layouts it allows; its `verify --fec-device` decodes our parity; after
//! `verity repair` (also of many scattered bad blocks), its `verify` accepts the image; past
//! capacity `repair` changes nothing.
//! Needs `veritysetup` (package cryptsetup-bin): the tests fail if it is missing.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const SALT: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const UUID: &str = "12345678-1234-1234-1234-123456789abc";

fn pattern(n: usize, seed: usize) -> Vec<u8> {
    (0..n).map(|i| ((i + seed) % 251) as u8).collect()
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e} (is cryptsetup-bin installed?)"));
    out
}

fn ok(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn vs() -> Command {
    Command::new("veritysetup")
}

fn verity() -> Command {
    Command::new(env!("CARGO_BIN_EXE_verity"))
}

fn root_of(stdout: &str) -> String {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("Root hash:"))
        .expect("Root hash line")
        .trim()
        .to_string()
}

/// Formats with both tools in one layout; returns (root, files to compare as (ours, theirs)).
fn both(
    dir: &Path,
    layout: u8,
    bs: usize,
    blocks: usize,
    roots: u32,
) -> (String, Vec<(PathBuf, PathBuf)>) {
    let data = pattern(bs * blocks, roots as usize * 7 + bs);
    let p = |n: &str| dir.join(n);
    let common = |c: &mut Command| {
        c.args(["--salt", SALT, "--uuid", UUID])
            .arg(format!("--data-block-size={bs}"))
            .arg(format!("--hash-block-size={bs}"))
            .arg(format!("--fec-roots={roots}"));
    };
    // The tree's size, for placing the parity right after it.
    fs::write(p("d.img"), &data).unwrap();
    let _ = fs::remove_file(p("probe.hash"));
    ok(vs()
        .args(["format", "--salt", SALT, "--uuid", UUID])
        .arg(format!("--data-block-size={bs}"))
        .arg(format!("--hash-block-size={bs}"))
        .arg(p("d.img"))
        .arg(p("probe.hash")));
    let tree = fs::metadata(p("probe.hash")).unwrap().len();
    let mut roots_seen = Vec::new();
    let mut pairs = Vec::new();
    for who in ["ours", "theirs"] {
        let mut c = if who == "ours" { verity() } else { vs() };
        c.arg("format");
        common(&mut c);
        let f = |n: &str| p(&format!("{who}.{n}"));
        for n in ["hash", "fec", "all"] {
            let _ = fs::remove_file(f(n));
        }
        match layout {
            // Separate data, hash and FEC files.
            0 => {
                c.arg(format!("--fec-device={}", f("fec").display()))
                    .arg(p("d.img"))
                    .arg(f("hash"));
                pairs = vec!["hash", "fec"];
            }
            // FEC in the hash file, right after the tree.
            1 => {
                c.arg(format!("--fec-device={}", f("hash").display()))
                    .arg(format!("--fec-offset={tree}"))
                    .arg(p("d.img"))
                    .arg(f("hash"));
                pairs = vec!["hash"];
            }
            // Data, superblock + tree, FEC in one file.
            _ => {
                fs::write(f("all"), &data).unwrap();
                let off = data.len() as u64;
                c.arg(format!("--data-blocks={blocks}"))
                    .arg(format!("--hash-offset={off}"))
                    .arg(format!("--fec-device={}", f("all").display()))
                    .arg(format!("--fec-offset={}", off + tree))
                    .arg(f("all"))
                    .arg(f("all"));
                pairs = vec!["all"];
            }
        }
        roots_seen.push(root_of(&ok(&mut c)));
    }
    assert_eq!(roots_seen[0], roots_seen[1]);
    let files = pairs
        .iter()
        .map(|a| (p(&format!("ours.{a}")), p(&format!("theirs.{a}"))))
        .collect();
    (roots_seen.remove(0), files)
}

#[test]
fn veritysetup_parity_is_byte_identical_in_every_layout() {
    let dir = tempfile::tempdir().unwrap();
    let mut cases = 0;
    for roots in [2u32, 3, 7, 16, 24] {
        for bs in [512usize, 1024, 4096] {
            for layout in 0..3u8 {
                // A few sizes: one round, and several rounds with a partial last one.
                for blocks in [37usize, 233 + 2 * 250 + (roots as usize * 11) % 50] {
                    let (_, files) = both(dir.path(), layout, bs, blocks, roots);
                    assert!(!files.is_empty());
                    for (ours, theirs) in files {
                        let a = fs::read(&ours).unwrap();
                        let b = fs::read(&theirs).unwrap();
                        assert!(
                            a == b,
                            "roots {roots} bs {bs} layout {layout} blocks {blocks}: {} differs from veritysetup's ({} vs {} bytes)",
                            ours.display(),
                            a.len(),
                            b.len()
                        );
                    }
                    cases += 1;
                }
            }
        }
    }
    assert_eq!(cases, 90);
}

#[test]
fn veritysetup_dump_lines_match() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    for (layout, roots) in [(0u8, 2u32), (1, 7)] {
        both(dir.path(), layout, 4096, 300, roots);
        let fec_args: Vec<String> = if layout == 0 {
            vec![format!("--fec-device={}", p("X.fec").display())]
        } else {
            let tree = fs::metadata(p("probe.hash")).unwrap().len();
            vec![
                format!("--fec-device={}", p("X.hash").display()),
                format!("--fec-offset={tree}"),
            ]
        };
        let dump = |who: &str, c: &mut Command| {
            let args: Vec<String> = fec_args
                .iter()
                .map(|a| a.replace("X.", &format!("{who}.")))
                .collect();
            ok(c.arg("dump")
                .args(&args)
                .arg(format!("--fec-roots={roots}"))
                .arg(p(&format!("{who}.hash"))))
            .replace(&format!("{who}.hash"), "H")
        };
        assert_eq!(
            dump("ours", &mut verity()),
            dump("theirs", &mut vs()),
            "layout {layout}"
        );
    }
}

#[test]
fn veritysetup_verify_decodes_our_parity() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    for roots in [2u32, 3, 7, 16, 24] {
        for bs in [512usize, 4096] {
            let (root, _) = both(dir.path(), 0, bs, 300, roots);
            let mut d = fs::read(p("d.img")).unwrap();
            d[bs * 5 + 3] ^= 0x40;
            fs::write(p("bad.img"), &d).unwrap();
            let out = run(vs()
                .arg("verify")
                .arg(format!("--fec-device={}", p("ours.fec").display()))
                .arg(format!("--fec-roots={roots}"))
                .arg(format!("--data-block-size={bs}"))
                .arg(format!("--hash-block-size={bs}"))
                .arg(p("bad.img"))
                .arg(p("ours.hash"))
                .arg(&root));
            let err = String::from_utf8_lossy(&out.stderr);
            let all = format!("{}{err}", String::from_utf8_lossy(&out.stdout));
            assert!(
                all.contains("Found 1 repairable errors with FEC device"),
                "roots {roots} bs {bs}: {all}"
            );
            assert!(out.status.success(), "roots {roots} bs {bs}: {all}");
        }
    }
}

fn corrupt_blocks(path: &Path, bs: usize, blocks: &[usize]) {
    let mut d = fs::read(path).unwrap();
    for &b in blocks {
        for (i, x) in d[b * bs..(b + 1) * bs].iter_mut().enumerate() {
            *x = x.wrapping_mul(3).wrapping_add(i as u8 | 1);
        }
    }
    fs::write(path, d).unwrap();
}

#[test]
fn veritysetup_accepts_image_after_repair() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    for (layout, roots, bad) in [
        (0u8, 2u32, vec![0usize, 1, 2]), // a burst of whole blocks up to the depth (3 rounds)
        (0, 4, vec![10, 13, 16, 19]),    // `roots` located bad blocks in one round
        (2, 2, vec![100]),               // one file
    ] {
        let bs = 4096;
        let blocks = 700;
        let (root, _) = both(dir.path(), layout, bs, blocks, roots);
        let (data, hash, fec, extra): (PathBuf, PathBuf, PathBuf, Vec<String>) = if layout == 0 {
            (p("d.img"), p("ours.hash"), p("ours.fec"), vec![])
        } else {
            let off = (bs * blocks) as u64;
            let tree = fs::metadata(p("probe.hash")).unwrap().len();
            (
                p("ours.all"),
                p("ours.all"),
                p("ours.all"),
                vec![
                    format!("--hash-offset={off}"),
                    format!("--fec-offset={}", off + tree),
                ],
            )
        };
        let good = fs::read(&data).unwrap();
        corrupt_blocks(&data, bs, &bad);
        let out = run(verity()
            .arg("repair")
            .arg(&data)
            .arg(&hash)
            .arg(&root)
            .arg(format!("--fec-device={}", fec.display()))
            .arg(format!("--fec-roots={roots}"))
            .args(&extra));
        assert!(
            out.status.success(),
            "layout {layout} roots {roots}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            fs::read(&data).unwrap(),
            good,
            "layout {layout} roots {roots}"
        );
        let v = run(vs()
            .arg("verify")
            .args(&extra)
            .arg(&data)
            .arg(&hash)
            .arg(&root));
        assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stderr));
    }
}

/// Many scattered bad blocks at once, like issue 15's benchmark but small: runs of adjacent
/// blocks (each in the next RS block) and many bad blocks in one RS block, past what plain
/// decoding corrects, so the erasures located by the hash tree are needed too. `verify
/// --fec-device` succeeds without writing, `repair` restores the image byte for byte, and
/// veritysetup's own verify accepts the repaired image.
#[test]
fn veritysetup_accepts_image_after_repairing_many_scattered_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    let cases: [(u32, usize, Vec<usize>); 2] = [
        // 4 MiB in 5 RS blocks: 100 bad blocks, 20 in each (24 erasures fit, 12 errors do not).
        (
            24,
            1024,
            (100..140).chain((300..).step_by(11).take(60)).collect(),
        ),
        // 16 MiB in 17 RS blocks: two runs of 16 adjacent blocks, two bad blocks in most RS
        // blocks (past the one error 2 roots correct, within its two erasures).
        (2, 4096, (1000..1016).chain(2000..2016).collect()),
    ];
    for (roots, blocks, bad) in cases {
        let bs = 4096;
        let (root, _) = both(dir.path(), 0, bs, blocks, roots);
        let good = fs::read(p("d.img")).unwrap();
        corrupt_blocks(&p("d.img"), bs, &bad);
        let corrupted = fs::read(p("d.img")).unwrap();
        let hash_before = fs::read(p("ours.hash")).unwrap();
        let with_fec = |verb: &str| {
            run(verity()
                .arg(verb)
                .arg(p("d.img"))
                .arg(p("ours.hash"))
                .arg(&root)
                .arg(format!("--fec-device={}", p("ours.fec").display()))
                .arg(format!("--fec-roots={roots}")))
        };
        let v = with_fec("verify");
        let err = String::from_utf8_lossy(&v.stderr);
        assert!(v.status.success(), "roots {roots}: {err}");
        assert!(
            err.contains(&format!("{} blocks", bad.len())),
            "roots {roots}: {err}"
        );
        assert_eq!(fs::read(p("d.img")).unwrap(), corrupted, "verify wrote");
        let r = with_fec("repair");
        let err = String::from_utf8_lossy(&r.stderr);
        assert!(r.status.success(), "roots {roots}: {err}");
        assert!(
            fs::read(p("d.img")).unwrap() == good,
            "roots {roots}: not restored"
        );
        assert_eq!(fs::read(p("ours.hash")).unwrap(), hash_before);
        let v = run(vs()
            .arg("verify")
            .arg(p("d.img"))
            .arg(p("ours.hash"))
            .arg(&root));
        assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stderr));
    }
}

#[test]
fn veritysetup_past_capacity_repair_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    let (root, _) = both(dir.path(), 0, 4096, 700, 2);
    // Three bad blocks in one round: past the two erasures roots 2 can fill.
    corrupt_blocks(&p("d.img"), 4096, &[0, 3, 6]);
    let before = fs::read(p("d.img")).unwrap();
    let hash_before = fs::read(p("ours.hash")).unwrap();
    let out = run(verity()
        .arg("repair")
        .arg(p("d.img"))
        .arg(p("ours.hash"))
        .arg(&root)
        .arg(format!("--fec-device={}", p("ours.fec").display()))
        .arg("--fec-roots=2"));
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("not correctable"));
    assert_eq!(fs::read(p("d.img")).unwrap(), before);
    assert_eq!(fs::read(p("ours.hash")).unwrap(), hash_before);
    // veritysetup agrees the image is bad.
    assert!(!run(vs()
        .arg("verify")
        .arg(p("d.img"))
        .arg(p("ours.hash"))
        .arg(&root))
    .status
    .success());
}

#[test]
fn veritysetup_rebuild_parity_restores_damaged_parity() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    let (root, _) = both(dir.path(), 0, 1024, 500, 3);
    let theirs = fs::read(p("theirs.fec")).unwrap();
    let mut f = theirs.clone();
    f[100] ^= 1;
    f[5000] ^= 0xff;
    fs::write(p("ours.fec"), &f).unwrap();
    ok(verity()
        .arg("repair")
        .arg("--data-block-size=1024")
        .arg("--hash-block-size=1024")
        .arg(p("d.img"))
        .arg(p("ours.hash"))
        .arg(&root)
        .arg(format!("--fec-device={}", p("ours.fec").display()))
        .arg("--fec-roots=3")
        .arg("--rebuild-parity"));
    assert_eq!(fs::read(p("ours.fec")).unwrap(), theirs);
}

/// Data, tree and parity in one file with `--fec-offset` past the end of the tree: veritysetup
/// fails on the short file ("Failed to read RS block"), so its reference is the same command on a
/// copy already extended to the offset; we extend the file ourselves and must give those bytes.
#[test]
fn veritysetup_one_file_fec_offset_past_the_end_extends_like_a_preextended_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    for (bs, blocks, roots, gap_blocks) in [(4096usize, 64usize, 2u32, 7u64), (512, 300, 5, 33)] {
        let data = pattern(bs * blocks, blocks + roots as usize);
        let off = data.len() as u64;
        let fec_off = off + (gap_blocks + 8) * bs as u64;
        let args = |c: &mut Command, f: &Path| {
            c.args(["format", "--salt", SALT, "--uuid", UUID])
                .arg(format!("--data-block-size={bs}"))
                .arg(format!("--hash-block-size={bs}"))
                .arg(format!("--fec-roots={roots}"))
                .arg(format!("--data-blocks={blocks}"))
                .arg(format!("--hash-offset={off}"))
                .arg(format!("--fec-device={}", f.display()))
                .arg(format!("--fec-offset={fec_off}"))
                .arg(f)
                .arg(f);
        };
        // veritysetup itself refuses the short file: the case is real.
        fs::write(p("short"), &data).unwrap();
        let mut c = vs();
        args(&mut c, &p("short"));
        assert!(!run(&mut c).status.success());
        fs::write(p("theirs"), &data).unwrap();
        fs::OpenOptions::new()
            .write(true)
            .open(p("theirs"))
            .unwrap()
            .set_len(fec_off)
            .unwrap();
        let mut c = vs();
        args(&mut c, &p("theirs"));
        let theirs_root = root_of(&ok(&mut c));
        fs::write(p("ours"), &data).unwrap();
        let mut c = verity();
        args(&mut c, &p("ours"));
        let ours_root = root_of(&ok(&mut c));
        assert_eq!(ours_root, theirs_root);
        let (a, b) = (fs::read(p("ours")).unwrap(), fs::read(p("theirs")).unwrap());
        assert!(a.len() as u64 > fec_off, "no parity after the offset");
        assert!(a == b, "bs {bs}: {} vs {} bytes differ", a.len(), b.len());
        // And veritysetup verifies it with the parity in place.
        ok(vs()
            .args(["verify", "--hash-offset", &off.to_string()])
            .arg(format!("--data-blocks={blocks}"))
            .arg(format!("--fec-device={}", p("ours").display()))
            .arg(format!("--fec-offset={fec_off}"))
            .arg(format!("--fec-roots={roots}"))
            .arg(p("ours"))
            .arg(p("ours"))
            .arg(&ours_root));
    }
}

#[test]
fn veritysetup_parity_is_byte_identical_on_the_portable_paths() {
    // VERITY_SIMD=portable: the SHA-256 and RS code a CPU without SHA-NI/AVX2 runs.
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    fs::write(p("d.img"), pattern(4096 * 700, 5)).unwrap();
    for roots in [2u32, 5, 24] {
        let mut files = Vec::new();
        for who in ["ours", "theirs"] {
            let mut c = if who == "ours" { verity() } else { vs() };
            c.env("VERITY_SIMD", "portable");
            let (h, f) = (p(&format!("{who}.hash")), p(&format!("{who}.fec")));
            let _ = fs::remove_file(&h);
            let _ = fs::remove_file(&f);
            ok(c.args(["format", "--salt", SALT, "--uuid", UUID])
                .arg(format!("--fec-roots={roots}"))
                .arg(format!("--fec-device={}", f.display()))
                .arg(p("d.img"))
                .arg(&h));
            files.push((fs::read(&h).unwrap(), fs::read(&f).unwrap()));
        }
        assert!(
            files[0] == files[1],
            "roots {roots}: portable paths differ from veritysetup"
        );
    }
}

#[test]
fn veritysetup_fec_verify_with_a_wrong_root_exits_1_where_veritysetup_says_0() {
    // veritysetup 2.6 `verify --fec-device` with a wrong root hash returns 0 when the data has
    // repairable errors (it reports "Found N repairable errors" and stops there). We must not: a
    // root hash that does not match is a failed verification, exit 1, clean or damaged data alike.
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    fs::write(p("data"), pattern(65536, 3)).unwrap();
    let out = ok(verity()
        .arg("format")
        .arg(p("data"))
        .arg(p("hash"))
        .arg(format!("--fec-device={}", p("fec").display()))
        .arg("--fec-roots=24")
        .arg(format!("--salt={SALT}"))
        .arg(format!("--uuid={UUID}")));
    let root = root_of(&out);
    let wrong = format!("{}00", &root[..root.len() - 2]);
    let wrong = if wrong == root {
        format!("{}11", &root[..root.len() - 2])
    } else {
        wrong
    };
    let verify = |tool: &mut Command, r: &str| {
        run(tool
            .arg("verify")
            .arg(p("data"))
            .arg(p("hash"))
            .arg(r)
            .arg(format!("--fec-device={}", p("fec").display()))
            .arg("--fec-roots=24"))
    };
    let o = verify(&mut verity(), &wrong);
    assert_eq!(o.status.code(), Some(1), "clean data, wrong root: {o:?}");
    // Damage data block 0: one block per codeword, within what 24 roots repair.
    corrupt_blocks(&p("data"), 4096, &[0]);
    let o = verify(&mut verity(), &root);
    assert_eq!(
        o.status.code(),
        Some(0),
        "repairable data, right root: {o:?}"
    );
    let o = verify(&mut verity(), &wrong);
    assert_eq!(
        o.status.code(),
        Some(1),
        "repairable data, wrong root: {o:?}"
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains(&wrong), "{o:?}");
    // The documented difference (README): veritysetup accepts this case.
    let v = verify(&mut vs(), &wrong);
    assert_eq!(v.status.code(), Some(0), "veritysetup changed: {v:?}");
}
