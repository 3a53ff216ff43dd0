//! Every refusal of `verity verify-signature` (and of `verity verify --root-hash-signature`) exits 1
//! with a message naming the check. The bad signatures are made by openssl, so these tests need the
//! `openssl` command and fail without it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const ROOT: &str = "0d1e2f3a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f6";

fn keys() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("keys")
}

fn key(name: &str) -> String {
    keys().join(name).display().to_string()
}

fn run(cmd: &str, args: &[&str]) -> Output {
    Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd} (is it installed?): {e}"))
}

fn verity(args: &[&str]) -> Output {
    run(env!("CARGO_BIN_EXE_verity"), args)
}

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let f = Fixture {
            dir: tempfile::tempdir().unwrap(),
        };
        for c in ["rsa2048.crt", "p256.crt", "expired.crt", "leaf.crt"] {
            f.copy_to("trust", c);
        }
        f.copy_to("ca", "ca.crt");
        f
    }
    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }
    fn copy_to(&self, sub: &str, cert: &str) {
        let d = self.dir.path().join(sub);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::copy(keys().join(cert), d.join(cert)).unwrap();
    }
    /// openssl signs `content` with `extra` options; returns the signature path.
    fn openssl_sign(&self, tool: &str, content: &[u8], signers: &[&str], extra: &[&str]) -> String {
        let input = self.path("content");
        std::fs::write(&input, content).unwrap();
        let out = self.path("sig.p7s");
        let mut args = vec![tool.to_string(), "-sign".into(), "-binary".into()];
        for s in signers {
            args.extend([
                "-signer".into(),
                key(&format!("{s}.crt")),
                "-inkey".into(),
                key(&format!("{s}.key")),
            ]);
        }
        args.extend(["-in".into(), input, "-outform".into(), "der".into()]);
        args.extend(["-out".into(), out.clone()]);
        args.extend(extra.iter().map(|s| s.to_string()));
        let a: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
        let o = run("openssl", &a);
        assert!(
            o.status.success(),
            "openssl {a:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        out
    }
    fn impostor_sign(&self, extra: &[&str]) -> String {
        // other.key with impostor.crt: rsa2048's issuer and serial, another key.
        let input = self.path("content");
        std::fs::write(&input, ROOT).unwrap();
        let out = self.path("sig.p7s");
        let (k, c) = (key("other.key"), key("impostor.crt"));
        let mut a = vec![
            "smime", "-sign", "-binary", "-noattr", "-signer", &c, "-inkey", &k, "-in", &input,
            "-outform", "der", "-out", &out,
        ];
        a.extend(extra);
        assert!(run("openssl", &a).status.success());
        out
    }
    fn verify(&self, sig: &str, root: &str, extra: &[&str]) -> Output {
        let trust = self.path("trust");
        let mut a = vec![
            "verify-signature",
            "--root-hash",
            root,
            "--signature",
            sig,
            "--trust",
            &trust,
        ];
        a.extend(extra);
        verity(&a)
    }
}

/// Asserts exit code 1 and that stderr names the check.
fn rejected(o: &Output, what: &str, want: &str) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(
        o.status.code(),
        Some(1),
        "{what}: exit {:?}, stderr {err}",
        o.status.code()
    );
    assert!(err.contains(want), "{what}: stderr {err:?} lacks {want:?}");
    assert!(
        o.stdout.is_empty(),
        "{what}: printed {:?}",
        String::from_utf8_lossy(&o.stdout)
    );
}

#[test]
fn openssl_wrong_key_is_refused() {
    let f = Fixture::new();
    let with_cert = f.impostor_sign(&[]);
    rejected(
        &f.verify(&with_cert, ROOT, &[]),
        "wrong key, embedded impostor",
        "wrong key: the signature was made with the key of the embedded certificate",
    );
    let bare = f.impostor_sign(&["-nocerts"]);
    rejected(
        &f.verify(&bare, ROOT, &[]),
        "wrong key, no certificate",
        "does not verify over this root hash: it was made with another key",
    );
}

#[test]
fn openssl_a_different_root_hash_is_refused() {
    let f = Fixture::new();
    let other = ROOT.replace('0', "1");
    let noattr = f.openssl_sign(
        "smime",
        ROOT.as_bytes(),
        &["rsa2048"],
        &["-noattr", "-nocerts"],
    );
    rejected(
        &f.verify(&noattr, &other, &[]),
        "different root, no attributes",
        "does not verify over this root hash",
    );
    let attrs = f.openssl_sign("cms", ROOT.as_bytes(), &["p256"], &[]);
    rejected(
        &f.verify(&attrs, &other, &[]),
        "different root, signed attributes",
        "the signed messageDigest does not match the sha256 of the root hash",
    );
}

#[test]
fn openssl_upper_case_or_newline_in_the_signed_content_is_refused() {
    let f = Fixture::new();
    let upper = ROOT.to_uppercase();
    for (signed, want) in [
        (upper.clone(), "covers the root hash in upper-case hex"),
        (
            format!("{ROOT}\n"),
            "covers the root hash followed by a newline",
        ),
        (format!("{upper}\n"), "upper-case hex"),
    ] {
        for extra in [&["-noattr"][..], &[]] {
            let sig = f.openssl_sign("smime", signed.as_bytes(), &["rsa2048"], extra);
            // Upper-case input on our side is canonicalised, so it cannot rescue the signature.
            for given in [ROOT, upper.as_str()] {
                rejected(
                    &f.verify(&sig, given, &[]),
                    &format!("{signed:?} {extra:?}"),
                    want,
                );
            }
        }
    }
}

#[test]
fn openssl_signer_not_in_the_trust_store_is_refused() {
    let f = Fixture::new();
    let sig = f.openssl_sign(
        "smime",
        ROOT.as_bytes(),
        &["other"],
        &["-noattr", "-nocerts"],
    );
    rejected(
        &f.verify(&sig, ROOT, &[]),
        "untrusted signer",
        "the signer (issuer CN=verity TEST-ONLY untrusted, serial 1005) is not in the trust store",
    );
    let empty = f.path("empty-trust");
    std::fs::create_dir_all(&empty).unwrap();
    let o = verity(&[
        "verify-signature",
        "--root-hash",
        ROOT,
        "--signature",
        &sig,
        "--trust",
        &empty,
    ]);
    rejected(&o, "empty trust store", "no certificate in");
}

#[test]
fn openssl_embedded_only_certificate_is_refused() {
    let f = Fixture::new();
    let sig = f.openssl_sign("smime", ROOT.as_bytes(), &["other"], &["-noattr"]);
    rejected(
        &f.verify(&sig, ROOT, &[]),
        "embedded only",
        "the signer CN=verity TEST-ONLY untrusted is only embedded in the signature",
    );
}

#[test]
fn openssl_truncated_or_padded_der_is_refused() {
    let f = Fixture::new();
    let sig = f.openssl_sign(
        "smime",
        ROOT.as_bytes(),
        &["rsa2048"],
        &["-noattr", "-nocerts"],
    );
    let good = std::fs::read(&sig).unwrap();
    assert!(f.verify(&sig, ROOT, &[]).status.success());
    for cut in [1, 4, good.len() / 3, good.len() - 1] {
        std::fs::write(&sig, &good[..cut]).unwrap();
        rejected(
            &f.verify(&sig, ROOT, &[]),
            &format!("cut at {cut}"),
            "truncated",
        );
    }
    let mut padded = good.clone();
    padded.extend_from_slice(b"garbage");
    std::fs::write(&sig, &padded).unwrap();
    rejected(
        &f.verify(&sig, ROOT, &[]),
        "trailing garbage",
        "the signature has 7 bytes of trailing data",
    );
    std::fs::write(&sig, b"").unwrap();
    rejected(
        &f.verify(&sig, ROOT, &[]),
        "empty",
        "the signature is empty",
    );
    let mut flipped = good.clone();
    flipped[0] = 0x31;
    std::fs::write(&sig, &flipped).unwrap();
    rejected(
        &f.verify(&sig, ROOT, &[]),
        "not a SEQUENCE",
        "not valid DER PKCS#7",
    );
}

#[test]
fn openssl_two_signer_infos_are_refused() {
    let f = Fixture::new();
    let sig = f.openssl_sign(
        "cms",
        ROOT.as_bytes(),
        &["rsa2048", "p256"],
        &["-noattr", "-nocerts"],
    );
    rejected(
        &f.verify(&sig, ROOT, &[]),
        "two signers",
        "the signature has 2 signer infos; exactly one is required",
    );
}

#[test]
fn openssl_unsupported_digests_are_refused() {
    let f = Fixture::new();
    for md in ["md5", "sha1"] {
        for extra in [&["-noattr", "-md", md][..], &["-md", md]] {
            let sig = f.openssl_sign("cms", ROOT.as_bytes(), &["rsa2048"], extra);
            rejected(
                &f.verify(&sig, ROOT, &[]),
                &format!("{extra:?}"),
                &format!("unsupported digest algorithm {md} ("),
            );
        }
    }
}

#[test]
fn openssl_expired_certificate_passes_like_systemd_but_not_under_require_chain() {
    let f = Fixture::new();
    let ca = f.path("ca");
    let expired = f.openssl_sign(
        "smime",
        ROOT.as_bytes(),
        &["expired"],
        &["-noattr", "-nocerts"],
    );
    // systemd does no expiry check (PKCS7_NOVERIFY), and neither does the default policy.
    let o = f.verify(&expired, ROOT, &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    rejected(
        &f.verify(&expired, ROOT, &["--require-chain", &ca]),
        "expired under --require-chain",
        "--require-chain: certificate CN=verity TEST-ONLY expired expired at",
    );
    // The same CA's valid leaf passes the chain; a self-signed signer has no issuer there.
    let leaf = f.openssl_sign("smime", ROOT.as_bytes(), &["leaf"], &["-noattr"]);
    let o = f.verify(&leaf, ROOT, &["--require-chain", &ca, "--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["chainVerified"], true);
    assert_eq!(v["signer"], "CN=verity TEST-ONLY leaf");
    let selfsigned = f.openssl_sign("smime", ROOT.as_bytes(), &["rsa2048"], &["-noattr"]);
    rejected(
        &f.verify(&selfsigned, ROOT, &["--require-chain", &ca]),
        "self-signed under --require-chain",
        "no CA certificate in the CA directories issued CN=verity TEST-ONLY RSA 2048",
    );
    // The chain is on top of the trust store, not instead of it.
    let untrusted_dir = f.path("only-p256");
    std::fs::create_dir_all(&untrusted_dir).unwrap();
    std::fs::copy(
        keys().join("p256.crt"),
        Path::new(&untrusted_dir).join("p256.crt"),
    )
    .unwrap();
    let o = verity(&[
        "verify-signature",
        "--root-hash",
        ROOT,
        "--signature",
        &leaf,
        "--trust",
        &untrusted_dir,
        "--require-chain",
        &ca,
    ]);
    rejected(&o, "chain without trust", "only embedded");
}

#[test]
fn openssl_verify_checks_the_root_hash_signature_before_the_tree() {
    let f = Fixture::new();
    let data = f.path("data.img");
    std::fs::write(&data, vec![0x5au8; 64 * 4096]).unwrap();
    let hash = f.path("data.verity");
    let rootfile = f.path("roothash");
    let o = verity(&[
        "format",
        &data,
        &hash,
        "--salt",
        "-",
        "--uuid",
        "12345678-1234-1234-1234-123456789012",
        "--root-hash-file",
        &rootfile,
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let root = std::fs::read_to_string(&rootfile).unwrap();
    assert_eq!(root.len(), 64);
    let rootsig = f.path("root.p7s");
    std::fs::copy(
        f.openssl_sign(
            "smime",
            root.as_bytes(),
            &["p256"],
            &["-noattr", "-nocerts"],
        ),
        &rootsig,
    )
    .unwrap();
    let trust = f.path("trust");
    let o = verity(&[
        "verify",
        &data,
        &hash,
        &root,
        "--root-hash-signature",
        &rootsig,
        "--trust",
        &trust,
        "--json",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["verified"], true);
    assert_eq!(v["signer"], "CN=verity TEST-ONLY P-256");
    // A signature over another root: refused (exit 1) before the data is even opened.
    let wrong = f.openssl_sign(
        "smime",
        ROOT.as_bytes(),
        &["p256"],
        &["-noattr", "-nocerts"],
    );
    let missing = f.path("no-such-data");
    let o = verity(&[
        "verify",
        &missing,
        &hash,
        &root,
        "--root-hash-signature",
        &wrong,
        "--trust",
        &trust,
    ]);
    rejected(
        &o,
        "verify with a wrong signature",
        "does not verify over this root hash",
    );
    // Untrusted signer, via veritysetup-style option order.
    let o = verity(&[
        "--root-hash-signature",
        &rootsig,
        "verify",
        &data,
        &hash,
        &root,
        "--trust",
        &f.path("ca"),
    ]);
    rejected(
        &o,
        "verify with an untrusted signer",
        "is not in the trust store",
    );
}
