//! Differential test against veritysetup (cryptsetup-bin 2.6): over a matrix of algorithms, block
//! sizes, formats, salts, superblock and layout, both tools must write byte-identical hash files
//! with equal roots, and each must accept the other's output. Also: sha384, the large block sizes
//! veritysetup accepts (64 KiB, 512 KiB; 1 MiB it refuses) and sparse data files.

mod tree_support;
use std::path::{Path, PathBuf};
use tree_support::*;

#[derive(Clone, Debug)]
struct Case {
    alg: &'static str,
    dbs: usize,
    hbs: usize,
    format: u32,
    salt: bool,
    superblock: bool,
    same_file: bool,
    bytes: usize,
}

fn digest_size(alg: &str) -> usize {
    match alg {
        "sha1" => 20,
        "sha256" => 32,
        "sha384" => 48,
        _ => 64,
    }
}

fn hpb(alg: &str, hbs: usize) -> usize {
    let n = hbs / digest_size(alg);
    1 << n.ilog2()
}

fn cases() -> Vec<Case> {
    let mut v = Vec::new();
    for alg in ["sha1", "sha256", "sha512"] {
        for (dbs, hbs) in [
            (512, 512),
            (1024, 1024),
            (4096, 4096),
            (512, 4096),
            (4096, 1024),
        ] {
            let h = hpb(alg, hbs);
            let mut sizes = vec![dbs, (h - 1) * dbs, (h + 1) * dbs, 3 * dbs + 100];
            if (h * h + 1) * dbs <= 8 << 20 {
                sizes.push((h * h + 1) * dbs);
            }
            for (i, bytes) in sizes.into_iter().enumerate() {
                // Walk the binary options in a pattern that covers every combination of
                // (format, salt, superblock, same_file) across the sizes of each block-size pair.
                for combo in 0..16u32 {
                    if !(combo as usize + i).is_multiple_of(4) {
                        continue;
                    }
                    v.push(Case {
                        alg,
                        dbs,
                        hbs,
                        format: combo & 1,
                        salt: combo & 2 != 0,
                        superblock: combo & 4 != 0,
                        same_file: combo & 8 != 0,
                        bytes,
                    });
                }
            }
        }
    }
    v
}

fn common_args(c: &Case, data_len: usize) -> (Vec<String>, u64) {
    let mut a = vec![
        format!("--hash={}", c.alg),
        format!("--data-block-size={}", c.dbs),
        format!("--hash-block-size={}", c.hbs),
        format!("--format={}", c.format),
        format!("--salt={}", if c.salt { SALT } else { "-" }),
    ];
    if !c.superblock {
        a.push("--no-superblock".into());
    }
    let mut offset = 0;
    if c.same_file {
        offset = (data_len as u64).div_ceil(4096) * 4096;
        a.push(format!("--hash-offset={offset}"));
        a.push(format!("--data-blocks={}", data_len / c.dbs));
    }
    (a, offset)
}

fn paths(dir: &Path, tag: &str, c: &Case, data: &[u8]) -> (PathBuf, PathBuf) {
    let d = dir.join(format!("{tag}.data"));
    std::fs::write(&d, data).unwrap();
    if c.same_file {
        (d.clone(), d)
    } else {
        (d, dir.join(format!("{tag}.hash")))
    }
}

fn check(c: &Case, dir: &Path, idx: usize) {
    let data = pattern(c.bytes);
    let (args, _) = common_args(c, c.bytes);
    let uuid = format!("--uuid={UUID}");
    let (od, oh) = paths(dir, &format!("ours{idx}"), c, &data);
    let (td, th) = paths(dir, &format!("theirs{idx}"), c, &data);
    let mut ours = verity();
    ours.arg("format").args(&args).arg(&od).arg(&oh);
    let mut theirs = veritysetup();
    theirs.arg("format").args(&args).arg(&td).arg(&th);
    if c.superblock {
        ours.arg(&uuid);
        theirs.arg(&uuid);
    }
    let our_root = field(&ok(&mut ours), "Root hash:").expect("our root");
    let their_root = field(&ok(&mut theirs), "Root hash:").expect("their root");
    assert_eq!(our_root, their_root, "root differs for {c:?}");
    let (a, b) = (std::fs::read(&oh).unwrap(), std::fs::read(&th).unwrap());
    assert_eq!(a.len(), b.len(), "hash file size differs for {c:?}");
    assert!(a == b, "hash file bytes differ for {c:?}");
    // Each accepts the other's output (the files are identical, so verify across names).
    ok(veritysetup()
        .arg("verify")
        .args(&args)
        .arg(&td)
        .arg(&oh)
        .arg(&our_root));
    ok(verity()
        .arg("verify")
        .args(&args)
        .arg(&od)
        .arg(&th)
        .arg(&their_root));
    // Both reject a wrong root.
    let mut wrong = our_root.clone().into_bytes();
    wrong[0] = if wrong[0] == b'0' { b'1' } else { b'0' };
    let wrong = String::from_utf8(wrong).unwrap();
    let o = run(verity()
        .arg("verify")
        .args(&args)
        .arg(&od)
        .arg(&oh)
        .arg(&wrong));
    assert_eq!(
        o.status.code(),
        Some(1),
        "wrong root must fail with 1 for {c:?}"
    );
    for p in [od, oh, td, th] {
        let _ = std::fs::remove_file(p);
    }
}

#[test]
fn veritysetup_matrix_is_byte_identical() {
    let all = cases();
    assert!(all.len() > 100, "matrix too small: {}", all.len());
    // Every dimension must be covered.
    for f in [0, 1] {
        assert!(all
            .iter()
            .any(|c| c.format == f && c.salt && c.superblock && c.same_file));
        assert!(all
            .iter()
            .any(|c| c.format == f && !c.salt && !c.superblock && !c.same_file));
    }
    let dir = tempfile::tempdir().unwrap();
    let chunks: Vec<Vec<(usize, Case)>> = {
        let mut v = vec![Vec::new(), Vec::new()];
        for (i, c) in all.into_iter().enumerate() {
            v[i % 2].push((i, c));
        }
        v
    };
    std::thread::scope(|s| {
        for chunk in &chunks {
            let dir = dir.path();
            s.spawn(move || {
                for (i, c) in chunk {
                    check(c, dir, *i);
                }
            });
        }
    });
}

#[test]
fn veritysetup_large_three_level_tree() {
    // hashes-per-block squared plus one at the default sizes: 16385 blocks, three levels.
    let c = Case {
        alg: "sha256",
        dbs: 4096,
        hbs: 4096,
        format: 1,
        salt: true,
        superblock: true,
        same_file: false,
        bytes: 16385 * 4096,
    };
    let dir = tempfile::tempdir().unwrap();
    check(&c, dir.path(), 0);
}

#[test]
fn veritysetup_large_blocks_and_every_algorithm() {
    // Block sizes from 512 B to 512 KiB (veritysetup's maximum), mixed data/hash sizes, with
    // sha384 too (the matrix above has sha1, sha256, sha512 only).
    let dir = tempfile::tempdir().unwrap();
    let mut i = 0;
    for alg in ["sha1", "sha256", "sha384", "sha512"] {
        for (dbs, hbs) in [
            (512, 512),
            (1024, 1024),
            (65536, 65536),
            (524288, 524288),
            (512, 524288),
            (524288, 1024),
            (65536, 512),
        ] {
            for superblock in [false, true] {
                let c = Case {
                    alg,
                    dbs,
                    hbs,
                    format: 1,
                    salt: true,
                    superblock,
                    same_file: superblock,
                    bytes: 5 * dbs.max(hbs) + 100,
                };
                check(&c, dir.path(), i);
                i += 1;
            }
        }
    }
}

#[test]
fn veritysetup_refuses_and_we_refuse_one_mebibyte_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("d");
    std::fs::write(&d, pattern(2 << 20)).unwrap();
    for tool in [verity(), veritysetup()] {
        let mut cmd = tool;
        let o = run(cmd
            .arg("format")
            .arg("--data-block-size=1048576")
            .arg("--hash-block-size=1048576")
            .arg(&d)
            .arg(dir.path().join("h")));
        assert!(!o.status.success(), "{cmd:?} accepted 1 MiB blocks");
    }
}

/// A data file of `len` bytes that is a hole except for `written` (offset, bytes) runs.
fn sparse_file(p: &Path, len: u64, written: &[(u64, &[u8])]) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::create(p).unwrap();
    f.set_len(len).unwrap();
    for (off, b) in written {
        f.write_all_at(b, *off).unwrap();
    }
}

#[test]
fn veritysetup_sparse_data_files_are_byte_identical() {
    // Holes read as zeros; a tool that skipped them (SEEK_DATA) or mis-sized the file would differ.
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    let block = pattern(4096);
    type Runs<'a> = Vec<(u64, &'a [u8])>;
    let shapes: [(u64, Runs); 4] = [
        (64 << 20, vec![]),
        (64 << 20, vec![(0, &block), (33 << 20, &block[..100])]),
        (8 << 20, vec![((8 << 20) - 4096, &block)]),
        (40 << 20, vec![(4096 * 1000 + 17, &block)]),
    ];
    for (i, (len, runs)) in shapes.iter().enumerate() {
        for alg in ["sha256", "sha512"] {
            sparse_file(&p("data"), *len, runs);
            let args = [
                format!("--hash={alg}"),
                format!("--salt={SALT}"),
                format!("--uuid={UUID}"),
            ];
            let ours = ok(verity()
                .arg("format")
                .args(&args)
                .arg(p("data"))
                .arg(p("o")));
            let theirs = ok(veritysetup()
                .arg("format")
                .args(&args)
                .arg(p("data"))
                .arg(p("t")));
            let root = field(&ours, "Root hash:").unwrap();
            assert_eq!(
                Some(root.clone()),
                field(&theirs, "Root hash:"),
                "shape {i}"
            );
            assert!(
                std::fs::read(p("o")).unwrap() == std::fs::read(p("t")).unwrap(),
                "hash files differ for sparse shape {i} {alg}"
            );
            ok(verity().arg("verify").arg(p("data")).arg(p("t")).arg(&root));
            ok(veritysetup()
                .arg("verify")
                .arg(p("data"))
                .arg(p("o"))
                .arg(&root));
        }
    }
}
