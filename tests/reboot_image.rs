//! `verity image build --class root`: a signed DDI whose file system is a whole OS tree, where an
//! os-release and an executable init are required instead of forbidden. Needs mkfs.erofs.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_verity");

fn keys() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("keys")
}

/// A minimal OS tree; `init` is (path, contents, mode) and the interpreter /bin/sh is a stub ELF
/// (only its header is checked at build time).
/// An init file to place: (path inside the tree, contents, mode).
type Init<'a> = Option<(&'a str, &'a [u8], u32)>;

fn tree(dir: &Path, os_release: bool, init: Init<'_>) -> PathBuf {
    let t = dir.join("tree");
    for d in ["bin", "sbin", "etc", "usr/lib", "dev", "proc", "sys", "run"] {
        std::fs::create_dir_all(t.join(d)).unwrap();
    }
    let sh = t.join("bin/sh");
    std::fs::write(&sh, b"\x7fELF\x02\x01\x01stub").unwrap();
    std::fs::set_permissions(&sh, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    if os_release {
        std::fs::write(t.join("etc/os-release"), "ID=rootos\nVERSION_ID=1\n").unwrap();
    }
    if let Some((p, body, mode)) = init {
        let f = t.join(p.trim_start_matches('/'));
        std::fs::write(&f, body).unwrap();
        std::fs::set_permissions(&f, std::os::unix::fs::PermissionsExt::from_mode(mode)).unwrap();
    }
    t
}

fn build(src: &Path, out: &Path, extra: &[&str]) -> Output {
    Command::new(BIN)
        .args(["image", "build"])
        .arg(src)
        .args(["--class", "root", "-o"])
        .arg(out)
        .args(extra)
        .output()
        .unwrap()
}

#[test]
fn erofs_image_build_class_root_makes_a_signed_ddi_of_an_os_tree() {
    let d = tempfile::tempdir().unwrap();
    let t = tree(
        d.path(),
        true,
        Some(("/sbin/init", b"#!/bin/sh\nexec true\n", 0o755)),
    );
    let out = d.path().join("os.raw");
    let k = keys();
    let o = build(
        &t,
        &out,
        &[
            "--key",
            k.join("leaf.key").to_str().unwrap(),
            "--cert",
            k.join("leaf.crt").to_str().unwrap(),
            "--json",
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(v["fingerprint"].is_string(), "{v}");
    // The DDI's structure, tree and signature check out with the image verifier; only the
    // extension-specific checks (extension-release) do not apply to a root image.
    let trust = d.path().join("trust");
    std::fs::create_dir(&trust).unwrap();
    std::fs::copy(k.join("leaf.crt"), trust.join("leaf.crt")).unwrap();
    let o = Command::new(BIN)
        .args(["image", "verify"])
        .arg(&out)
        .arg("--trust")
        .arg(&trust)
        .args(["--no-host-match", "--image-policy", "root=signed"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    for row in [
        "Check gpt:\tpass",
        "Check signature:\tpass",
        "Check verity-tree:\tpass",
    ] {
        assert!(text.contains(row), "missing {row:?}:\n{text}");
    }
}

#[test]
fn erofs_image_build_class_root_refuses_trees_that_cannot_boot() {
    let cases: Vec<(&str, bool, Init<'_>, &str)> = vec![
        ("no init", true, None, "no usable init"),
        (
            "no os-release",
            false,
            Some(("/sbin/init", b"\x7fELF", 0o755)),
            "no os-release",
        ),
        (
            "init not executable",
            true,
            Some(("/sbin/init", b"\x7fELF", 0o644)),
            "not an executable regular file",
        ),
        (
            "interpreter missing",
            true,
            Some(("/sbin/init", b"#!/bin/bash\n", 0o755)),
            "/bin/bash",
        ),
    ];
    for (what, osr, init, want) in cases {
        let d = tempfile::tempdir().unwrap();
        let t = tree(d.path(), osr, init);
        let out = d.path().join("os.raw");
        let o = build(&t, &out, &[]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{what}: {err}");
        assert!(err.contains(want), "{what}: {err}");
        assert!(!out.exists(), "{what}: an image was written");
    }
}
