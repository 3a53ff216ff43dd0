//! The full-system VM test (tests/vm/run): a Debian kernel under QEMU TCG with swtpm as its TPM; kernel
//! dm-verity activation through the devicemapper crate, signature handoff and EIO on altered data,
//! and Debian's systemd-sysext 252 merging our signed DDI (issue 14), run in the guest's /init. Needs root (apt downloads into /var/cache/verity-vm), swtpm,
//! erofs-utils and openssl; CI installs them from .ci/apt-packages.

use std::process::Command;

#[test]
fn root_vm_boot_test() {
    let out = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vm/run"))
        .env("VERITY_BIN", env!("CARGO_BIN_EXE_verity"))
        .output()
        .expect("tests/vm/run could not be started");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let verdict = stdout
        .lines()
        .find(|l| l.starts_with("VM-TEST: "))
        .unwrap_or("");
    assert!(
        out.status.success() && verdict.starts_with("VM-TEST: PASS"),
        "VM test did not pass (exit {:?})\nverdict: {verdict}\n--- stderr\n{stderr}",
        out.status.code()
    );
}
