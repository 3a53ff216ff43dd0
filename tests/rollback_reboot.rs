//! Rollback protection for the soft-reboot root: `soft-reboot prepare --ratchet` raises the floor of
//! class root (named by the image's os-release IMAGE_ID=) to its IMAGE_VERSION=, and an older root
//! image is then refused (exit 1, "rollback", nothing staged, nothing measured). Needs root
//! (unshare), mkfs.erofs, busybox-static and swtpm.

#[path = "support/swtpm.rs"]
mod swtpm;

use std::path::{Path, PathBuf};
use std::process::Command;
use swtpm::Swtpm;

const BIN: &str = env!("CARGO_BIN_EXE_verity");

/// A root image of version `v` (an OS tree with busybox as init) at `dir/os.raw`.
fn root_image(dir: &Path, v: &str) -> PathBuf {
    let tree = dir.join("tree");
    for d in [
        "bin", "sbin", "etc", "dev", "proc", "sys", "run", "tmp", "usr/lib",
    ] {
        std::fs::create_dir_all(tree.join(d)).unwrap();
    }
    std::fs::copy("/bin/busybox", tree.join("bin/busybox")).expect("busybox-static is required");
    std::os::unix::fs::symlink("/bin/busybox", tree.join("sbin/init")).unwrap();
    std::fs::write(
        tree.join("usr/lib/os-release"),
        "ID=verifiedos\nIMAGE_ID=vos\n",
    )
    .unwrap();
    let out = dir.join("os.raw");
    let st = Command::new(BIN)
        .args([
            "image",
            "build",
            "--class",
            "root",
            "--sidecar",
            "--version",
            v,
            "-o",
        ])
        .arg(&out)
        .arg(&tree)
        .status()
        .unwrap();
    assert!(st.success());
    out
}

#[test]
fn root_swtpm_prepare_ratchets_and_refuses_an_older_root() {
    let tpm = Swtpm::start();
    let t = tempfile::tempdir().unwrap();
    let (a, b) = (t.path().join("a"), t.path().join("b"));
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    let v2 = root_image(&a, "2");
    let v1 = root_image(&b, "1");
    let r = t.path().join("root");
    let log = t.path().join("tpm2-measure.log");
    let script = r#"
mount -t tmpfs tmpfs /run
P="$VERITY soft-reboot prepare --image-policy root=verity --tpm $TPM --dangerous-tpm-simulator --event-log $LOG --root $R"
$P $V2 --ratchet; echo "RC2=$?"
umount -l /run/nextroot
$P $V1; echo "RC1=$?"
grep -q ' /run/nextroot ' /proc/self/mountinfo && echo STAGED1 || echo NOT_STAGED1
"#;
    let o = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-uc", script])
        .env("VERITY", BIN)
        .env("TPM", tpm.spec())
        .env("LOG", &log)
        .env("R", &r)
        .env("V2", &v2)
        .env("V1", &v1)
        .output()
        .expect("unshare (util-linux) is required");
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
    );
    assert!(out.contains("RC2=0\n"), "{out}\n{err}");
    assert!(
        err.contains("--ratchet: floor of root vos set to 2"),
        "{err}"
    );
    assert!(
        out.contains("RC1=1\n") && out.contains("NOT_STAGED1"),
        "{out}\n{err}"
    );
    assert!(
        err.contains("root vos: rollback: IMAGE_VERSION=1 is below the floor 2"),
        "{err}"
    );
    // Only the admitted root was measured, and its record carries its version.
    let text = std::fs::read_to_string(&log).unwrap();
    let roots: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("\"eventType\":\"nextroot\""))
        .collect();
    assert_eq!(roots.len(), 1, "{text}");
    assert!(roots[0].contains("\"imageVersion\":\"2\""), "{text}");
}
