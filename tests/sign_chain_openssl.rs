//! Issue 12 point 8: `verify-signature --require-chain` refuses SHA-1 signatures, RSA keys under
//! 2048 bits and unknown critical extensions anywhere in the chain (leaf, intermediate, root), and
//! accepts a sound root / intermediate / leaf chain. Each test makes its own chain with openssl in a
//! temp dir, signs a root hash with the leaf, and checks that `openssl verify -auth_level 2` agrees
//! wherever it has an opinion. Needs the `openssl` command.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const ROOT_HASH: &str = "7a3c41d0e9f8b7a6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2";

fn run(cmd: &str, args: &[&str]) -> Output {
    Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd} (is it installed?): {e}"))
}

fn ok(o: &Output, what: &str) {
    assert!(
        o.status.success(),
        "{what}: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

/// How one certificate of the chain is made.
#[derive(Clone, Copy)]
struct Spec {
    /// `rsa:BITS` or `ec`.
    key: &'static str,
    /// Digest its issuer signs it with.
    md: &'static str,
    /// An extra critical extension with an OID nobody knows.
    unknown_critical: bool,
}

const GOOD_RSA: Spec = Spec {
    key: "rsa:2048",
    md: "sha256",
    unknown_critical: false,
};
const GOOD_EC: Spec = Spec {
    key: "ec",
    md: "sha256",
    unknown_critical: false,
};

/// A root CA, an intermediate CA it issued, and a leaf the intermediate issued, in `dir`, plus a
/// trust dir (the leaf), a CA dir (root and intermediate) and a root-hash signature by the leaf.
struct Chain {
    dir: PathBuf,
}

impl Chain {
    fn new(dir: &Path, root: Spec, inter: Spec, leaf: Spec) -> Chain {
        let c = Chain {
            dir: dir.to_path_buf(),
        };
        std::fs::write(
            c.p("ext.cnf"),
            "[ca]\nbasicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n\
             subjectKeyIdentifier=hash\n\
             [ca_unknown]\nbasicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n\
             1.3.6.1.4.1.55555.12.8=critical,ASN1:UTF8String:must-understand\n\
             [leaf]\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n\
             [leaf_unknown]\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n\
             1.3.6.1.4.1.55555.12.8=critical,ASN1:UTF8String:must-understand\n",
        )
        .unwrap();
        c.key("root", root);
        c.key("inter", inter);
        c.key("leaf", leaf);
        // The root signs itself with its own digest; its extensions come from the CA section.
        let sect = if root.unknown_critical {
            "ca_unknown"
        } else {
            "ca"
        };
        ok(
            &run(
                "openssl",
                &[
                    "req",
                    "-x509",
                    "-new",
                    "-key",
                    &c.s("root.key"),
                    "-subj",
                    "/CN=verity TEST-ONLY chain root",
                    "-days",
                    "3650",
                    &format!("-{}", root.md),
                    "-config",
                    &c.s("ext.cnf"),
                    "-extensions",
                    sect,
                    "-out",
                    &c.s("root.crt"),
                ],
            ),
            "root certificate",
        );
        c.issue(
            "inter",
            "root",
            inter,
            "ca",
            "/CN=verity TEST-ONLY chain intermediate",
        );
        c.issue(
            "leaf",
            "inter",
            leaf,
            "leaf",
            "/CN=verity TEST-ONLY chain leaf",
        );
        std::fs::create_dir_all(c.p("trust")).unwrap();
        std::fs::copy(c.p("leaf.crt"), c.p("trust/leaf.crt")).unwrap();
        std::fs::create_dir_all(c.p("cas")).unwrap();
        std::fs::copy(c.p("root.crt"), c.p("cas/root.crt")).unwrap();
        std::fs::copy(c.p("inter.crt"), c.p("cas/inter.crt")).unwrap();
        std::fs::write(c.p("content"), ROOT_HASH).unwrap();
        ok(
            &run(
                "openssl",
                &[
                    "cms",
                    "-sign",
                    "-binary",
                    "-noattr",
                    "-nocerts",
                    "-md",
                    "sha256",
                    "-signer",
                    &c.s("leaf.crt"),
                    "-inkey",
                    &c.s("leaf.key"),
                    "-in",
                    &c.s("content"),
                    "-outform",
                    "der",
                    "-out",
                    &c.s("sig.p7s"),
                ],
            ),
            "signing the root hash",
        );
        c
    }

    fn p(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn s(&self, name: &str) -> String {
        self.p(name).display().to_string()
    }

    fn key(&self, name: &str, spec: Spec) {
        let out = self.s(&format!("{name}.key"));
        let o = match spec.key.strip_prefix("rsa:") {
            Some(bits) => run(
                "openssl",
                &[
                    "genpkey",
                    "-quiet",
                    "-algorithm",
                    "RSA",
                    "-pkeyopt",
                    &format!("rsa_keygen_bits:{bits}"),
                    "-out",
                    &out,
                ],
            ),
            None => run(
                "openssl",
                &[
                    "genpkey",
                    "-quiet",
                    "-algorithm",
                    "EC",
                    "-pkeyopt",
                    "ec_paramgen_curve:P-256",
                    "-out",
                    &out,
                ],
            ),
        };
        ok(&o, &format!("{name} key"));
    }

    fn issue(&self, name: &str, issuer: &str, spec: Spec, section: &str, subject: &str) {
        let csr = self.s(&format!("{name}.csr"));
        ok(
            &run(
                "openssl",
                &[
                    "req",
                    "-new",
                    "-key",
                    &self.s(&format!("{name}.key")),
                    "-subj",
                    subject,
                    "-out",
                    &csr,
                ],
            ),
            &format!("{name} request"),
        );
        let sect = if spec.unknown_critical {
            format!("{section}_unknown")
        } else {
            section.to_string()
        };
        let serial = format!("0x{:x}", 0x3000 + name.len());
        ok(
            &run(
                "openssl",
                &[
                    "x509",
                    "-req",
                    "-in",
                    &csr,
                    "-CA",
                    &self.s(&format!("{issuer}.crt")),
                    "-CAkey",
                    &self.s(&format!("{issuer}.key")),
                    "-set_serial",
                    &serial,
                    "-days",
                    "3650",
                    &format!("-{}", spec.md),
                    "-extfile",
                    &self.s("ext.cnf"),
                    "-extensions",
                    &sect,
                    "-out",
                    &self.s(&format!("{name}.crt")),
                ],
            ),
            &format!("{name} certificate"),
        );
    }

    /// `verity verify-signature --require-chain` over the CA dir.
    fn verity(&self) -> Output {
        run(
            env!("CARGO_BIN_EXE_verity"),
            &[
                "verify-signature",
                "--root-hash",
                ROOT_HASH,
                "--signature",
                &self.s("sig.p7s"),
                "--trust",
                &self.s("trust"),
                "--require-chain",
                &self.s("cas"),
                "--json",
            ],
        )
    }

    /// `openssl verify -auth_level 2 -x509_strict` with the root as anchor.
    fn openssl_verify(&self) -> Output {
        run(
            "openssl",
            &[
                "verify",
                "-auth_level",
                "2",
                "-x509_strict",
                "-CAfile",
                &self.s("root.crt"),
                "-untrusted",
                &self.s("inter.crt"),
                &self.s("leaf.crt"),
            ],
        )
    }
}

/// Builds the chain, expects `verity` to refuse it with exit 1 naming `cert` and `why`, and (when
/// `openssl_refuses`) openssl to refuse it too.
fn refused(root: Spec, inter: Spec, leaf: Spec, cert: &str, why: &str, openssl_refuses: bool) {
    let t = tempfile::tempdir().unwrap();
    let c = Chain::new(t.path(), root, inter, leaf);
    let o = c.verity();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(
        o.status.code(),
        Some(1),
        "stdout {:?} stderr {err}",
        o.stdout
    );
    assert!(o.stdout.is_empty(), "no verdict on stdout for a refusal");
    assert!(err.contains(cert), "{err:?} does not name {cert:?}");
    assert!(err.contains(why), "{err:?} does not say {why:?}");
    if openssl_refuses {
        let v = c.openssl_verify();
        assert!(
            !v.status.success(),
            "openssl accepts what verity refused: {}",
            String::from_utf8_lossy(&v.stdout)
        );
    }
}

#[test]
fn openssl_point8_sound_chain_is_accepted_by_both() {
    let t = tempfile::tempdir().unwrap();
    let c = Chain::new(t.path(), GOOD_EC, GOOD_RSA, GOOD_RSA);
    let v = c.openssl_verify();
    ok(&v, "openssl verify of the sound chain");
    let o = c.verity();
    ok(&o, "verity --require-chain on the sound chain");
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["chainVerified"], true);
    assert_eq!(j["signer"], "CN=verity TEST-ONLY chain leaf");
    // Without the intermediate in the CA dir there is no path: refused, not silently accepted.
    std::fs::remove_file(c.p("cas/inter.crt")).unwrap();
    let o = c.verity();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no CA certificate"));
}

#[test]
fn openssl_point8_sha1_signed_leaf_is_refused() {
    let leaf = Spec {
        md: "sha1",
        ..GOOD_RSA
    };
    refused(
        GOOD_EC,
        GOOD_RSA,
        leaf,
        "CN=verity TEST-ONLY chain leaf",
        "sha1WithRSAEncryption",
        true,
    );
}

#[test]
fn openssl_point8_sha1_signed_intermediate_is_refused() {
    // The root is an EC key: the intermediate is signed with ecdsa-with-SHA1.
    let inter = Spec {
        md: "sha1",
        ..GOOD_RSA
    };
    refused(
        GOOD_EC,
        inter,
        GOOD_RSA,
        "CN=verity TEST-ONLY chain intermediate",
        "ecdsa-with-SHA1",
        true,
    );
}

#[test]
fn openssl_point8_sha1_self_signed_root_is_refused() {
    // openssl does not check a trust anchor's self-signature: it has no opinion here.
    let root = Spec {
        md: "sha1",
        ..GOOD_RSA
    };
    refused(
        root,
        GOOD_RSA,
        GOOD_RSA,
        "CN=verity TEST-ONLY chain root",
        "sha1WithRSAEncryption",
        false,
    );
}

#[test]
fn openssl_point8_rsa1024_intermediate_is_refused() {
    let inter = Spec {
        key: "rsa:1024",
        ..GOOD_RSA
    };
    refused(
        GOOD_EC,
        inter,
        GOOD_RSA,
        "CN=verity TEST-ONLY chain intermediate",
        "RSA key has 1024 bits",
        true,
    );
}

#[test]
fn openssl_point8_rsa1024_root_is_refused() {
    let root = Spec {
        key: "rsa:1024",
        ..GOOD_RSA
    };
    refused(
        root,
        GOOD_RSA,
        GOOD_RSA,
        "CN=verity TEST-ONLY chain root",
        "RSA key has 1024 bits",
        true,
    );
}

#[test]
fn openssl_point8_rsa1024_leaf_is_refused() {
    // The signature check itself already refuses a signer key this small, before the chain.
    let leaf = Spec {
        key: "rsa:1024",
        ..GOOD_RSA
    };
    refused(
        GOOD_EC,
        GOOD_RSA,
        leaf,
        "CN=verity TEST-ONLY chain leaf",
        "1024 bits",
        true,
    );
}

#[test]
fn openssl_point8_unknown_critical_extension_is_refused_in_leaf_and_intermediate() {
    let unknown = Spec {
        unknown_critical: true,
        ..GOOD_RSA
    };
    refused(
        GOOD_EC,
        GOOD_RSA,
        unknown,
        "CN=verity TEST-ONLY chain leaf",
        "critical extension 1.3.6.1.4.1.55555.12.8",
        true,
    );
    refused(
        GOOD_EC,
        unknown,
        GOOD_RSA,
        "CN=verity TEST-ONLY chain intermediate",
        "critical extension 1.3.6.1.4.1.55555.12.8",
        true,
    );
}
