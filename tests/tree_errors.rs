//! Bad input: each case fails with exit 2 (usage/operation) or 1 (a failed check), a message that
//! names the problem, and no hash file left behind when format refuses.

mod tree_support;
use std::path::Path;
use tree_support::*;

fn expect_fail(args: &[&str], dir: &Path, code: i32, needle: &str) {
    let o = run(verity().current_dir(dir).args(args));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(code), "{args:?}: {err}");
    assert!(
        err.contains(needle),
        "{args:?}: expected {needle:?} in {err}"
    );
    assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
}

#[test]
fn format_refusals_name_the_problem_and_leave_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("data"), pattern(4096 * 10)).unwrap();
    let cases: &[(&[&str], &str)] = &[
        (
            &["format", "missing", "out"],
            "cannot open data device missing",
        ),
        (
            &["format", "data", "out", "--data-blocks=11"],
            "--data-blocks 11 is past the end",
        ),
        (
            &["format", "data", "out", "--data-block-size=333"],
            "data block size 333 is not a power of two",
        ),
        (
            &["format", "data", "out", "--hash-block-size=1048576"],
            "hash block size 1048576",
        ),
        (
            &["format", "data", "out", "--hash=md4"],
            "unsupported hash algorithm \"md4\"",
        ),
        (&["format", "data", "out", "--salt=abc"], "odd length"),
        (
            &["format", "data", "out", "--salt=zz"],
            "invalid hex character",
        ),
        (&["format", "data", "out", "--uuid=nope"], "is not a UUID"),
        (&["format", "data", "out", "--format=2"], "--format 2"),
        (
            &["format", "data", "out", "--hash-offset=100"],
            "not a multiple of 512",
        ),
        (
            &["format", "data", "data", "--hash-offset=8192"],
            "data area overlaps with hash area",
        ),
    ];
    for (args, needle) in cases {
        expect_fail(args, d, 2, needle);
        assert!(!d.join("out").exists(), "{args:?} left a hash file");
    }
    let long_salt = "ab".repeat(257);
    expect_fail(
        &["format", "data", "out", "--salt", &long_salt],
        d,
        2,
        "257 bytes, at most 256",
    );
    std::fs::write(d.join("tiny"), [1u8; 100]).unwrap();
    expect_fail(
        &["format", "tiny", "out"],
        d,
        2,
        "less than one 4096-byte block",
    );
    // The data file in a same-file layout is untouched by a refused overlap.
    assert_eq!(std::fs::read(d.join("data")).unwrap(), pattern(4096 * 10));
    // Every temporary file is gone.
    let names: Vec<_> = std::fs::read_dir(d)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
}

#[test]
fn verify_and_dump_refusals() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("data"), pattern(4096 * 10)).unwrap();
    let out = ok(verity().current_dir(d).args(["format", "data", "hash"]));
    let root = field(&out, "Root hash:").unwrap();
    let hash = std::fs::read(d.join("hash")).unwrap();
    std::fs::write(d.join("trunc"), &hash[..300]).unwrap();
    let mut foreign = hash.clone();
    foreign[..8].copy_from_slice(b"LUKS\xba\xbe\0\x01");
    std::fs::write(d.join("foreign"), &foreign).unwrap();
    let mut badver = hash.clone();
    badver[8] = 9;
    std::fs::write(d.join("badver"), &badver).unwrap();
    expect_fail(
        &["verify", "data", "trunc", &root],
        d,
        1,
        "superblock truncated",
    );
    expect_fail(
        &["verify", "data", "foreign", &root],
        d,
        1,
        "not a valid verity hash device",
    );
    expect_fail(
        &["verify", "data", "badver", &root],
        d,
        1,
        "unsupported verity superblock version 9",
    );
    expect_fail(&["dump", "foreign"], d, 1, "bad signature");
    expect_fail(
        &["dump", "missing"],
        d,
        2,
        "cannot open hash device missing",
    );
    expect_fail(
        &["verify", "data", "hash", "abc"],
        d,
        2,
        "invalid root hash",
    );
    expect_fail(
        &["verify", "data", "hash", "abcd"],
        d,
        2,
        "root hash has 2 bytes",
    );
    expect_fail(&["verify", "data", "hash"], d, 2, "a root hash is needed");
    expect_fail(
        &["verify", "missing", "hash", &root],
        d,
        2,
        "cannot open data device missing",
    );
    // Data shorter than the superblock says.
    std::fs::write(d.join("short"), pattern(4096 * 5)).unwrap();
    expect_fail(
        &["verify", "short", "hash", &root],
        d,
        2,
        "data device holds 20480 bytes",
    );
    // Hash file cut inside the tree.
    std::fs::write(d.join("cut"), &hash[..6000]).unwrap();
    expect_fail(
        &["verify", "data", "cut", &root],
        d,
        2,
        "hash device holds 6000 bytes",
    );
    // A usage error from the parser is exit 2 too.
    expect_fail(&["format"], d, 2, "required");
}

#[test]
fn root_hash_file_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("data"), pattern(4096 * 10)).unwrap();
    let out =
        ok(verity()
            .current_dir(d)
            .args(["format", "data", "hash", "--root-hash-file", "rh"]));
    let root = field(&out, "Root hash:").unwrap();
    // Written as hex without a newline, like veritysetup.
    assert_eq!(std::fs::read_to_string(d.join("rh")).unwrap(), root);
    ok(verity()
        .current_dir(d)
        .args(["verify", "data", "hash", "--root-hash-file", "rh"]));
    ok(veritysetup()
        .current_dir(d)
        .args(["verify", "data", "hash", "--root-hash-file", "rh"]));
}

#[test]
fn json_output_carries_the_same_facts() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("data"), pattern(4096 * 300)).unwrap();
    let text = ok(verity()
        .current_dir(d)
        .args(["format", "data", "h1", "--salt", SALT, "--uuid", UUID]));
    let json = ok(verity().current_dir(d).args([
        "format", "data", "h2", "--salt", SALT, "--uuid", UUID, "--json",
    ]));
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(
        v["root_hash"].as_str(),
        field(&text, "Root hash:").as_deref()
    );
    assert_eq!(v["salt"], SALT);
    assert_eq!(v["data_blocks"], 300);
    assert_eq!(v["hash_blocks"], 4);
    let vj = ok(verity().current_dir(d).args([
        "verify",
        "data",
        "h2",
        v["root_hash"].as_str().unwrap(),
        "--json",
    ]));
    let vj: serde_json::Value = serde_json::from_str(&vj).unwrap();
    assert_eq!(vj["verified"], true);
}
