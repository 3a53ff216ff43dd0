//! Root-hash signatures against openssl, both ways: `verity sign` output passes the three openssl
//! verify commands of spec/signing.md section 1.2 and equals openssl's bytes for RSA; openssl's
//! signatures (smime and cms, with and without signed attributes and embedded certificates) pass
//! `verity verify-signature`. Needs the `openssl` command; the tests fail without it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const ROOT: &str = "9f2c1e0b7a6d5c4b3a29180716253443526170809fa1b2c3d4e5f60718293a4b";

/// (key, cert) for every key type, in every key encoding the keys/ directory holds.
const PAIRS: &[(&str, &str)] = &[
    ("rsa2048.key", "rsa2048.crt"),
    ("rsa2048.pkcs1.key", "rsa2048.crt"),
    ("rsa4096.key", "rsa4096.crt"),
    ("rsa4096.pkcs8.key", "rsa4096.crt"),
    ("p256.key", "p256.crt"),
    ("p256.sec1.key", "p256.crt"),
    ("p384.key", "p384.crt"),
    ("p384.pkcs8.key", "p384.crt"),
];

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

fn openssl_ok(args: &[&str]) -> bool {
    run("openssl", args).status.success()
}

fn openssl(args: &[&str]) {
    let o = run("openssl", args);
    assert!(
        o.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

struct Dir(tempfile::TempDir);

impl Dir {
    fn new() -> Dir {
        Dir(tempfile::tempdir().unwrap())
    }
    fn path(&self, name: &str) -> String {
        self.0.path().join(name).display().to_string()
    }
    fn write(&self, name: &str, data: &[u8]) -> String {
        std::fs::write(self.0.path().join(name), data).unwrap();
        self.path(name)
    }
    /// A trust directory holding copies of the given certificates.
    fn trust(&self, name: &str, certs: &[&str]) -> String {
        let d = self.0.path().join(name);
        std::fs::create_dir_all(&d).unwrap();
        for c in certs {
            std::fs::copy(keys().join(c), d.join(c)).unwrap();
        }
        d.display().to_string()
    }
}

/// The three cross-checks of signing.md 1.2; true when all of them accept.
fn openssl_accepts(sig: &str, content: &str, cert: &str) -> [bool; 3] {
    let base = [
        "-verify",
        "-binary",
        "-inform",
        "der",
        "-in",
        sig,
        "-content",
        content,
        "-certfile",
        cert,
    ];
    let chain = ["-CAfile", cert, "-purpose", "any", "-out", "/dev/null"];
    let smime: Vec<&str> = ["smime"]
        .iter()
        .chain(&base)
        .chain(&chain)
        .copied()
        .collect();
    let cms: Vec<&str> = ["cms"].iter().chain(&base).chain(&chain).copied().collect();
    let systemd: Vec<&str> = ["smime"]
        .iter()
        .chain(&base)
        .chain(&["-nointern", "-noverify", "-out", "/dev/null"])
        .copied()
        .collect();
    [openssl_ok(&smime), openssl_ok(&cms), openssl_ok(&systemd)]
}

#[test]
fn openssl_accepts_our_signatures_for_every_key_type() {
    let d = Dir::new();
    let content = d.write("roothash", ROOT.as_bytes());
    let other = d.write("other", ROOT.replace('9', "8").as_bytes());
    for (k, c) in PAIRS {
        for embed in [false, true] {
            let sig = d.path("ours.p7s");
            let (kk, cc) = (key(k), key(c));
            let mut args = vec![
                "sign",
                "--key",
                &kk,
                "--cert",
                &cc,
                "--root-hash",
                ROOT,
                "-o",
                &sig,
            ];
            if embed {
                args.push("--embed-cert");
            }
            let o = verity(&args);
            assert!(
                o.status.success(),
                "{k}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            assert_eq!(
                openssl_accepts(&sig, &content, &cc),
                [true; 3],
                "{k} embed={embed}"
            );
            assert_eq!(
                openssl_accepts(&sig, &other, &cc),
                [false; 3],
                "{k} embed={embed}: openssl accepted other content"
            );
        }
    }
}

#[test]
fn openssl_rsa_signatures_are_byte_identical_to_smime_nocerts_noattr() {
    let d = Dir::new();
    let content = d.write("roothash", ROOT.as_bytes());
    for (k, c) in PAIRS.iter().filter(|(k, _)| k.starts_with("rsa")) {
        let (ours, theirs) = (d.path("ours.p7s"), d.path("theirs.p7s"));
        let (kk, cc) = (key(k), key(c));
        let o = verity(&[
            "sign",
            "--key",
            &kk,
            "--cert",
            &cc,
            "--root-hash",
            ROOT,
            "-o",
            &ours,
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        openssl(&[
            "smime", "-sign", "-nocerts", "-noattr", "-binary", "-in", &content, "-inkey", &kk,
            "-signer", &cc, "-outform", "der", "-out", &theirs,
        ]);
        let (a, b) = (
            std::fs::read(&ours).unwrap(),
            std::fs::read(&theirs).unwrap(),
        );
        assert_eq!(a, b, "{k}: {} vs {} bytes", a.len(), b.len());
    }
}

#[test]
fn openssl_signatures_pass_ours_in_every_form() {
    let d = Dir::new();
    let content = d.write("roothash", ROOT.as_bytes());
    for (k, c) in PAIRS {
        let (kk, cc) = (key(k), key(c));
        let trust = d.trust(&format!("trust-{c}"), &[c]);
        for tool in ["smime", "cms"] {
            for noattr in [false, true] {
                for nocerts in [false, true] {
                    let sig = d.path("theirs.p7s");
                    let mut args = vec![
                        tool, "-sign", "-binary", "-in", &content, "-inkey", &kk, "-signer", &cc,
                        "-outform", "der", "-out", &sig,
                    ];
                    if noattr {
                        args.push("-noattr");
                    }
                    if nocerts {
                        args.push("-nocerts");
                    }
                    openssl(&args);
                    let o = verity(&[
                        "verify-signature",
                        "--root-hash",
                        ROOT,
                        "--signature",
                        &sig,
                        "--trust",
                        &trust,
                        "--json",
                    ]);
                    let what = format!("{k} {tool} noattr={noattr} nocerts={nocerts}");
                    assert!(
                        o.status.success(),
                        "{what}: {}",
                        String::from_utf8_lossy(&o.stderr)
                    );
                    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
                    assert_eq!(v["verified"], true, "{what}");
                    assert_eq!(v["rootHash"], ROOT, "{what}");
                    let subject = run("openssl", &["x509", "-in", &cc, "-noout", "-subject"]);
                    let subject = String::from_utf8_lossy(&subject.stdout);
                    let cn = subject.trim().rsplit(" = ").next().unwrap().to_string();
                    assert_eq!(v["signer"], format!("CN={cn}"), "{what}");
                    let fp = run(
                        "openssl",
                        &["x509", "-in", &cc, "-noout", "-fingerprint", "-sha256"],
                    );
                    let fp = String::from_utf8_lossy(&fp.stdout);
                    let fp = fp
                        .trim()
                        .rsplit('=')
                        .next()
                        .unwrap()
                        .replace(':', "")
                        .to_lowercase();
                    assert_eq!(v["certificateFingerprint"], fp, "{what}");
                }
            }
        }
    }
}

#[test]
fn openssl_systemd_repart_style_signature_round_trips_through_default_trust_dirs() {
    // repart embeds the certificate; systemd looks in verity.d under the root.
    let d = Dir::new();
    let content = d.write("roothash", ROOT.as_bytes());
    let sig = d.path("repart.p7s");
    openssl(&[
        "smime",
        "-sign",
        "-noattr",
        "-binary",
        "-in",
        &content,
        "-inkey",
        &key("p256.key"),
        "-signer",
        &key("p256.crt"),
        "-outform",
        "der",
        "-out",
        &sig,
    ]);
    let root = d.0.path().join("root");
    std::fs::create_dir_all(root.join("usr/lib/verity.d")).unwrap();
    std::fs::copy(
        keys().join("p256.crt"),
        root.join("usr/lib/verity.d/vendor.crt"),
    )
    .unwrap();
    let r = root.display().to_string();
    let o = verity(&[
        "verify-signature",
        "--root",
        &r,
        "--root-hash",
        ROOT,
        "--signature",
        &sig,
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("CN=verity TEST-ONLY P-256"));
    // Masking the drop-in from /etc removes the trust.
    std::fs::create_dir_all(root.join("etc/verity.d")).unwrap();
    std::os::unix::fs::symlink("/dev/null", root.join("etc/verity.d/vendor.crt")).unwrap();
    let o = verity(&[
        "verify-signature",
        "--root",
        &r,
        "--root-hash",
        ROOT,
        "--signature",
        &sig,
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("only embedded"));
}

#[test]
fn openssl_cms_keyid_signers_are_matched_by_subject_key_identifier() {
    // `cms -keyid` names the signer by subjectKeyIdentifier (SignerInfo v3) instead of issuer+serial.
    let d = Dir::new();
    let content = d.write("roothash", ROOT.as_bytes());
    let trust = d.trust("trust", &["leaf.crt"]);
    let sig = d.path("keyid.p7s");
    for noattr in [true, false] {
        let mut args = vec![
            "cms", "-sign", "-keyid", "-nocerts", "-binary", "-in", &content, "-outform", "der",
            "-out", &sig,
        ];
        let (k, c) = (key("leaf.key"), key("leaf.crt"));
        args.extend(["-inkey", &k, "-signer", &c]);
        if noattr {
            args.push("-noattr");
        }
        openssl(&args);
        // The SignerInfo names its signer by the leaf's subjectKeyIdentifier: `[0] IMPLICIT`
        // primitive (tag 0x80), 20 bytes, the exact SKI of leaf.crt. Every PKCS#7 has some
        // `cont [ 0 ]`; only a v3 SignerInfo has these bytes.
        let ski = leaf_ski();
        let mut want = vec![0x80u8, ski.len() as u8];
        want.extend_from_slice(&ski);
        let der = std::fs::read(&sig).unwrap();
        assert!(
            der.windows(want.len()).any(|w| w == want.as_slice()),
            "no [0] subjectKeyIdentifier signer id in {sig}"
        );
        let o = verity(&[
            "verify-signature",
            "--root-hash",
            ROOT,
            "--signature",
            &sig,
            "--trust",
            &trust,
        ]);
        assert!(
            o.status.success(),
            "noattr={noattr}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let other = ROOT.replace('9', "7");
        let o = verity(&[
            "verify-signature",
            "--root-hash",
            &other,
            "--signature",
            &sig,
            "--trust",
            &trust,
        ]);
        assert_eq!(o.status.code(), Some(1));
    }
}

/// The subjectKeyIdentifier of keys/leaf.crt, as openssl prints it, in bytes.
fn leaf_ski() -> Vec<u8> {
    let c = key("leaf.crt");
    let o = run(
        "openssl",
        &["x509", "-noout", "-ext", "subjectKeyIdentifier", "-in", &c],
    );
    let text = String::from_utf8_lossy(&o.stdout);
    let hex = text.lines().nth(1).expect("leaf.crt has an SKI").trim();
    let ski: Vec<u8> = hex
        .split(':')
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .collect();
    assert_eq!(ski.len(), 20, "{text}");
    ski
}
