//! `verity sign` and `verify-signature` on their own (no openssl): output forms, root-hash input
//! forms, and the exit codes for a refused key and for operational errors.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const ROOT: &str = "c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00";

fn key(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("keys")
        .join(name)
        .display()
        .to_string()
}

fn verity(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_verity"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn tmp(dir: &tempfile::TempDir, name: &str) -> String {
    let p: PathBuf = dir.path().join(name);
    p.display().to_string()
}

#[test]
fn stdout_file_and_root_hash_file_forms_give_the_same_signature() {
    let d = tempfile::tempdir().unwrap();
    let (k, c) = (key("rsa2048.pkcs1.key"), key("rsa2048.crt"));
    let out = tmp(&d, "a.p7s");
    let o = verity(&[
        "sign",
        "--key",
        &k,
        "--cert",
        &c,
        "--root-hash",
        ROOT,
        "-o",
        &out,
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let to_stdout = verity(&["sign", "--key", &k, "--cert", &c, "--root-hash", ROOT]);
    assert!(to_stdout.status.success());
    assert_eq!(std::fs::read(&out).unwrap(), to_stdout.stdout);
    // A root hash file with a newline (as `echo` writes it) and upper case: the signed content is
    // still the canonical lower-case hex.
    let rf = tmp(&d, "roothash");
    std::fs::write(&rf, format!("{}\n", ROOT.to_uppercase())).unwrap();
    let o = verity(&["sign", "--key", &k, "--cert", &c, "--root-hash-file", &rf]);
    assert_eq!(o.stdout, to_stdout.stdout);
    // And it verifies, with --json reporting the fingerprint sign printed.
    let trust = tmp(&d, "trust");
    std::fs::create_dir(&trust).unwrap();
    std::fs::copy(&c, Path::new(&trust).join("rsa.crt")).unwrap();
    let o = verity(&[
        "sign",
        "--key",
        &k,
        "--cert",
        &c,
        "--root-hash",
        ROOT,
        "-o",
        &out,
        "--json",
    ]);
    let signed: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let o = verity(&[
        "verify-signature",
        "--root-hash-file",
        &rf,
        "--signature",
        &out,
        "--trust",
        &trust,
        "--json",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let verified: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(verified["rootHash"], ROOT);
    assert_eq!(
        verified["certificateFingerprint"],
        signed["certificateFingerprint"]
    );
}

#[test]
fn a_key_that_does_not_match_the_certificate_fails_with_exit_1() {
    let o = verity(&[
        "sign",
        "--key",
        &key("other.key"),
        "--cert",
        &key("rsa2048.crt"),
        "--root-hash",
        ROOT,
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(o.stdout.is_empty());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(
            "the private key does not belong to the certificate CN=verity TEST-ONLY RSA 2048"
        ),
        "{err}"
    );
}

#[test]
fn operational_errors_exit_2() {
    let d = tempfile::tempdir().unwrap();
    let missing = tmp(&d, "missing");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec![
                "sign",
                "--key",
                &missing,
                "--cert",
                "x",
                "--root-hash",
                ROOT,
            ],
            "cannot read key",
        ),
        (
            vec![
                "sign",
                "--key",
                &missing,
                "--cert",
                "x",
                "--root-hash",
                "xyz",
            ],
            "invalid root hash",
        ),
        (
            vec![
                "verify-signature",
                "--root-hash",
                ROOT,
                "--signature",
                &missing,
            ],
            "cannot read signature",
        ),
        (
            vec!["verify-signature", "--signature", &missing],
            "give the root hash",
        ),
    ];
    for (args, want) in cases {
        let o = verity(&args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err:?} lacks {want:?}");
    }
}
