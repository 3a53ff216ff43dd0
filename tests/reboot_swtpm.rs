//! Verified soft reboot through the whole chain, as root, against a per-test swtpm: an image made by
//! `verity image build --class root` is staged by `verity soft-reboot prepare` (pipeline, OS-tree
//! check, nextroot measurement) and switched into by `verity soft-reboot exec` as PID 1 of a new PID
//! and mount namespace. PCR 15 is checked with tpm2_pcrread against H(0 || sha256(event)) computed
//! here; refusals must leave nothing staged and nothing measured.
//! Needs root, unshare, mkfs.erofs, busybox-static, swtpm and tpm2-tools.

#[path = "support/swtpm.rs"]
mod swtpm;

use sha2::{Digest, Sha256};
use std::io::{Seek, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use swtpm::Swtpm;

const BIN: &str = env!("CARGO_BIN_EXE_verity");

const REPORTING_INIT: &str = r#"#!/bin/sh
echo "NEWINIT pid=$$"
. /usr/lib/os-release
echo "OS_ID=$ID"
echo "LISTEN_FDS=$LISTEN_FDS LISTEN_PID=$LISTEN_PID LISTEN_FDNAMES=$LISTEN_FDNAMES"
echo "FD3=$(cat <&3)"
if test -e "$OLD_MARKER"; then echo OLDROOT=visible; else echo OLDROOT=gone; fi
"#;

/// An OS tree with busybox-static, an os-release and (optionally) the reporting init.
fn os_tree(dir: &Path, with_init: bool) -> PathBuf {
    let tree = dir.join("tree");
    for d in [
        "bin", "sbin", "etc", "dev", "proc", "sys", "run", "tmp", "usr/lib",
    ] {
        std::fs::create_dir_all(tree.join(d)).unwrap();
    }
    assert!(
        Path::new("/bin/busybox").exists(),
        "busybox-static is required"
    );
    std::fs::copy("/bin/busybox", tree.join("bin/busybox")).unwrap();
    for c in ["sh", "cat", "test"] {
        std::os::unix::fs::symlink("busybox", tree.join("bin").join(c)).unwrap();
    }
    std::fs::write(
        tree.join("usr/lib/os-release"),
        "ID=verifiedos\nVERSION_ID=3\n",
    )
    .unwrap();
    if with_init {
        let p = tree.join("sbin/init");
        std::fs::write(&p, REPORTING_INIT).unwrap();
        std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    }
    tree
}

/// `verity image build --class root --sidecar`; returns (image path, root hash).
fn build_root_image(dir: &Path, tree: &Path) -> (PathBuf, String) {
    let out = dir.join("os.raw");
    let o = Command::new(BIN)
        .args(["image", "build"])
        .arg(tree)
        .args(["--class", "root", "--sidecar", "--json", "-o"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "image build: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let rh = v["root_hash"].as_str().unwrap().to_string();
    assert_eq!(
        std::fs::read_to_string(dir.join("os.roothash"))
            .unwrap()
            .trim(),
        rh
    );
    (out, rh)
}

fn memfd_with(content: &str) -> std::fs::File {
    let fd =
        rustix::fs::memfd_create("verity-test-store", rustix::fs::MemfdFlags::empty()).unwrap();
    let mut f = std::fs::File::from(fd);
    f.write_all(content.as_bytes()).unwrap();
    f.rewind().unwrap();
    f
}

fn run_as_pid1(script: &str, env: &[(&str, String)]) -> (i32, String, String) {
    let mut cmd = Command::new("unshare");
    cmd.args([
        "--pid",
        "--mount",
        "--fork",
        "--propagation",
        "private",
        "--mount-proc",
    ])
    .args(["sh", "-euc", script])
    .env("VERITY", BIN);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let o = cmd.output().expect("unshare (util-linux) is required");
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// prepare into a private /run; the event log is kept outside the namespace for the test to read.
const PREPARE: &str = r#"
mount -t tmpfs tmpfs /run
rc=0; "$VERITY" soft-reboot prepare "$IMG" --image-policy root=verity --tpm "$TPM" --dangerous-tpm-simulator --event-log "$LOG" || rc=$?
echo PREPARE_RC=$rc
"#;

/// What a measurement into the simulator records: its bypass record (log only, no PCR), then the
/// event in PCR 15.
fn measured(event: &str) -> Vec<(u64, String, String)> {
    vec![
        (
            NO_PCR,
            format!("dangerous:tpm-simulator:{event}"),
            "dangerous".to_string(),
        ),
        (15, event.to_string(), "nextroot".to_string()),
    ]
}

/// How [`log_strings`] shows a record without a `pcr` field.
const NO_PCR: u64 = 99;

fn expected_pcr15(events: &[String]) -> Vec<u8> {
    let mut pcr = vec![0u8; 32];
    for e in events {
        let d = Sha256::digest(e.as_bytes());
        let mut h = Sha256::new();
        h.update(&pcr);
        h.update(d);
        pcr = h.finalize().to_vec();
    }
    pcr
}

/// (pcr, string, eventType) of every record; records without a PCR show as [`NO_PCR`].
fn log_strings(log: &Path) -> Vec<(u64, String, String)> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.split('\u{1e}')
        .filter(|s| !s.trim().is_empty())
        .map(|s| {
            let v: serde_json::Value = serde_json::from_str(s.trim()).unwrap();
            (
                v["pcr"].as_u64().unwrap_or(NO_PCR),
                v["content"]["string"].as_str().unwrap().to_string(),
                v["content"]["eventType"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn root_swtpm_soft_reboot_prepare_measures_into_pcr15_and_exec_switches() {
    let tpm = Swtpm::start();
    let dir = tempfile::tempdir().unwrap();
    let tree = os_tree(dir.path(), true);
    let (img, rh) = build_root_image(dir.path(), &tree);
    let log = dir.path().join("tpm2-measure.log");
    let marker = dir.path().join("old-root-marker");
    std::fs::write(&marker, "old").unwrap();
    let store = memfd_with("fd store survives");
    let script = format!(
        "{PREPARE}
test \"$rc\" = 0
grep -q ' /run/nextroot ' /proc/self/mountinfo && echo STAGED
exec \"$VERITY\" soft-reboot exec --root-hash {rh} --keep-fd {}:store",
        store.as_raw_fd()
    );
    let (code, out, err) = run_as_pid1(
        &script,
        &[
            ("IMG", img.display().to_string()),
            ("TPM", tpm.spec()),
            ("LOG", log.display().to_string()),
            ("OLD_MARKER", marker.display().to_string()),
        ],
    );
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    for want in [
        "PREPARE_RC=0",
        "STAGED",
        "NEWINIT pid=1",
        "OS_ID=verifiedos",
        "LISTEN_FDS=1 LISTEN_PID=1 LISTEN_FDNAMES=store",
        "FD3=fd store survives",
        "OLDROOT=gone",
    ] {
        assert!(
            out.lines().any(|l| l == want),
            "missing {want:?} in:\n{out}\nstderr:\n{err}"
        );
    }
    let event = format!("nextroot:os:{rh}:unsigned");
    assert_eq!(log_strings(&log), measured(&event));
    assert_eq!(tpm.pcrread("sha256", 15), expected_pcr15(&[event]));
    drop(store);
}

#[test]
fn root_swtpm_soft_reboot_prepare_refuses_a_tampered_image() {
    let tpm = Swtpm::start();
    let dir = tempfile::tempdir().unwrap();
    let tree = os_tree(dir.path(), true);
    let (img, _) = build_root_image(dir.path(), &tree);
    // Flip one byte in the middle of the file system.
    let mut bytes = std::fs::read(&img).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&img, bytes).unwrap();
    let log = dir.path().join("tpm2-measure.log");
    let script = format!(
        "{PREPARE}
grep -q ' /run/nextroot ' /proc/self/mountinfo && echo STAGED || echo NOT_STAGED
test -e /run/verity/nextroot.json && echo RECORD || echo NO_RECORD"
    );
    let (code, out, err) = run_as_pid1(
        &script,
        &[
            ("IMG", img.display().to_string()),
            ("TPM", tpm.spec()),
            ("LOG", log.display().to_string()),
        ],
    );
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    for want in ["PREPARE_RC=1", "NOT_STAGED", "NO_RECORD"] {
        assert!(
            out.lines().any(|l| l == want),
            "missing {want:?} in:\n{out}\nstderr:\n{err}"
        );
    }
    assert!(err.contains("Integrity"), "{err}");
    assert!(err.contains("nothing staged"), "{err}");
    assert!(log_strings(&log).is_empty());
    assert_eq!(tpm.pcrread("sha256", 15), vec![0u8; 32]);
}

#[test]
fn root_swtpm_soft_reboot_prepare_refuses_an_image_without_init() {
    let tpm = Swtpm::start();
    let dir = tempfile::tempdir().unwrap();
    let tree = os_tree(dir.path(), false);
    // image build --class root refuses it already...
    let o = Command::new(BIN)
        .args(["image", "build"])
        .arg(&tree)
        .args(["--class", "root", "--sidecar", "-o"])
        .arg(dir.path().join("noinit.raw"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no usable init"));
    // ...so make one by hand (mkfs.erofs + verity format) and check that prepare refuses it too.
    let img = dir.path().join("noinit.raw");
    let o = Command::new("mkfs.erofs")
        .arg("--quiet")
        .arg(&img)
        .arg(&tree)
        .output()
        .unwrap();
    assert!(o.status.success());
    let o = Command::new(BIN)
        .arg("format")
        .arg(&img)
        .arg(dir.path().join("noinit.verity"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    let rh = String::from_utf8_lossy(&o.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("Root hash:").map(|h| h.trim().to_string()))
        .unwrap();
    std::fs::write(dir.path().join("noinit.roothash"), format!("{rh}\n")).unwrap();
    let log = dir.path().join("tpm2-measure.log");
    let script = format!(
        "{PREPARE}
grep -q ' /run/nextroot ' /proc/self/mountinfo && echo STAGED || echo NOT_STAGED"
    );
    let (code, out, err) = run_as_pid1(
        &script,
        &[
            ("IMG", img.display().to_string()),
            ("TPM", tpm.spec()),
            ("LOG", log.display().to_string()),
        ],
    );
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    for want in ["PREPARE_RC=1", "NOT_STAGED"] {
        assert!(
            out.lines().any(|l| l == want),
            "missing {want:?} in:\n{out}\nstderr:\n{err}"
        );
    }
    assert!(
        err.contains("not a bootable OS tree") && err.contains("no usable init"),
        "{err}"
    );
    // Refused before measurement: nothing in the log or the PCR.
    assert!(log_strings(&log).is_empty());
    assert_eq!(tpm.pcrread("sha256", 15), vec![0u8; 32]);
}

#[test]
fn root_swtpm_soft_reboot_exec_refuses_a_wrong_root_hash_and_a_swapped_nextroot() {
    let tpm = Swtpm::start();
    let dir = tempfile::tempdir().unwrap();
    let tree = os_tree(dir.path(), true);
    let (img, rh) = build_root_image(dir.path(), &tree);
    // The impostor: the same tree, mounted by hand after prepare (unverified, unmeasured).
    let evil = dir.path().join("evil.erofs");
    let o = Command::new("mkfs.erofs")
        .arg("--quiet")
        .arg(&evil)
        .arg(&tree)
        .output()
        .unwrap();
    assert!(o.status.success());
    let log = dir.path().join("tpm2-measure.log");
    let marker = dir.path().join("old-root-marker");
    std::fs::write(&marker, "old").unwrap();
    let wrong = "00".repeat(32);
    let script = format!(
        "{PREPARE}
test \"$rc\" = 0
rc=0; unshare --pid --fork \"$VERITY\" soft-reboot exec --root-hash {wrong} || rc=$?
echo WRONG_HASH_RC=$rc
umount -l /run/nextroot
mount -t erofs -o ro,loop \"$EVIL\" /run/nextroot
rc=0; unshare --pid --fork \"$VERITY\" soft-reboot exec --root-hash {rh} || rc=$?
echo SWAPPED_RC=$rc
test -e \"$OLD_MARKER\" && echo OLDROOT=still-here
echo BINDS_IN_NEXTROOT=$(grep -c ' /run/nextroot/' /proc/self/mountinfo || true)"
    );
    let (code, out, err) = run_as_pid1(
        &script,
        &[
            ("IMG", img.display().to_string()),
            ("EVIL", evil.display().to_string()),
            ("TPM", tpm.spec()),
            ("LOG", log.display().to_string()),
            ("OLD_MARKER", marker.display().to_string()),
        ],
    );
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    for want in [
        "PREPARE_RC=0",
        "WRONG_HASH_RC=1",
        "SWAPPED_RC=1",
        "OLDROOT=still-here",
        "BINDS_IN_NEXTROOT=0",
    ] {
        assert!(
            out.lines().any(|l| l == want),
            "missing {want:?} in:\n{out}\nstderr:\n{err}"
        );
    }
    assert!(!out.contains("NEWINIT"), "{out}");
    assert!(
        err.contains(&format!(
            "staged root hash {rh} is not the expected {wrong}"
        )),
        "{err}"
    );
    // The loop device may be reused for the impostor (same device, same root inode): the unique
    // mount id still tells them apart.
    assert!(
        err.contains("is not the staged device") || err.contains("(the mount was replaced)"),
        "{err}"
    );
}

#[test]
fn root_swtpm_soft_reboot_signed_ddi_is_staged_and_an_untrusted_signer_is_refused() {
    let tpm = Swtpm::start();
    let dir = tempfile::tempdir().unwrap();
    let tree = os_tree(dir.path(), true);
    let keys = Path::new(env!("CARGO_MANIFEST_DIR")).join("keys");
    let img = dir.path().join("os.raw");
    let o = Command::new(BIN)
        .args(["image", "build"])
        .arg(&tree)
        .args(["--class", "root", "--json", "--key"])
        .arg(keys.join("leaf.key"))
        .arg("--cert")
        .arg(keys.join("leaf.crt"))
        .arg("-o")
        .arg(&img)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let rh = v["root_hash"].as_str().unwrap().to_string();
    let fp = v["fingerprint"].as_str().unwrap().to_string();
    let (good, bad) = (dir.path().join("good"), dir.path().join("bad"));
    std::fs::create_dir(&good).unwrap();
    std::fs::create_dir(&bad).unwrap();
    std::fs::copy(keys.join("leaf.crt"), good.join("leaf.crt")).unwrap();
    std::fs::copy(keys.join("other.crt"), bad.join("other.crt")).unwrap();
    let log = dir.path().join("tpm2-measure.log");
    let script = r#"
mount -t tmpfs tmpfs /run
rc=0; "$VERITY" soft-reboot prepare "$IMG" --trust "$BAD" --tpm "$TPM" --dangerous-tpm-simulator --event-log "$LOG" || rc=$?
echo UNTRUSTED_RC=$rc
grep -q ' /run/nextroot ' /proc/self/mountinfo && echo STAGED_UNTRUSTED || true
rc=0; "$VERITY" soft-reboot prepare "$IMG" --trust "$GOOD" --tpm "$TPM" --dangerous-tpm-simulator --event-log "$LOG" || rc=$?
echo TRUSTED_RC=$rc
grep -q ' /run/nextroot ' /proc/self/mountinfo && echo STAGED
"#;
    let (code, out, err) = run_as_pid1(
        script,
        &[
            ("IMG", img.display().to_string()),
            ("GOOD", good.display().to_string()),
            ("BAD", bad.display().to_string()),
            ("TPM", tpm.spec()),
            ("LOG", log.display().to_string()),
        ],
    );
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    for want in ["UNTRUSTED_RC=1", "TRUSTED_RC=0", "STAGED"] {
        assert!(
            out.lines().any(|l| l == want),
            "missing {want:?} in:\n{out}\nstderr:\n{err}"
        );
    }
    assert!(!out.contains("STAGED_UNTRUSTED"), "{out}");
    assert!(
        err.contains("not in the trust store") && err.contains("nothing staged"),
        "{err}"
    );
    // Only the trusted attempt was measured, with the signer's fingerprint in the event.
    let event = format!("nextroot:os:{rh}:{fp}");
    assert_eq!(log_strings(&log), measured(&event));
    assert_eq!(tpm.pcrread("sha256", 15), expected_pcr15(&[event]));
}

#[test]
fn root_swtpm_point7_prepare_into_a_simulator_needs_the_dangerous_flag() {
    let tpm = Swtpm::start();
    let dir = tempfile::tempdir().unwrap();
    let tree = os_tree(dir.path(), true);
    let (img, _) = build_root_image(dir.path(), &tree);
    let log = dir.path().join("tpm2-measure.log");
    let script = r#"
mount -t tmpfs tmpfs /run
rc=0; "$VERITY" soft-reboot prepare "$IMG" --image-policy root=verity --tpm "$TPM" --event-log "$LOG" || rc=$?
echo PREPARE_RC=$rc
grep -q ' /run/nextroot ' /proc/self/mountinfo && echo STAGED || echo NOT_STAGED
"#;
    let (code, out, err) = run_as_pid1(
        script,
        &[
            ("IMG", img.display().to_string()),
            ("TPM", tpm.spec()),
            ("LOG", log.display().to_string()),
        ],
    );
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    for want in ["PREPARE_RC=2", "NOT_STAGED"] {
        assert!(
            out.lines().any(|l| l == want),
            "missing {want:?} in:\n{out}\n{err}"
        );
    }
    assert!(
        err.contains("is a simulator") && err.contains("--dangerous-tpm-simulator"),
        "{err}"
    );
    assert!(log_strings(&log).is_empty());
    assert_eq!(tpm.pcrread("sha256", 15), vec![0u8; 32]);
}

#[test]
fn root_swtpm_point6_premounted_bypass_is_measured_into_pcr15() {
    let tpm = Swtpm::start();
    let dir = tempfile::tempdir().unwrap();
    let tree = os_tree(dir.path(), true);
    let (img, _) = build_root_image(dir.path(), &tree);
    let log = dir.path().join("tpm2-measure.log");
    let script = r#"
mount -t tmpfs tmpfs /run
mkdir -p /run/nextroot
mount -t erofs -o ro,loop "$IMG" /run/nextroot
rc=0; "$VERITY" soft-reboot prepare --dangerous-premounted --tpm "$TPM" --dangerous-tpm-simulator --event-log "$LOG" || rc=$?
echo PREPARE_RC=$rc
test -e /run/verity/nextroot.json && echo RECORD
"#;
    let (code, out, err) = run_as_pid1(
        script,
        &[
            ("IMG", img.display().to_string()),
            ("TPM", tpm.spec()),
            ("LOG", log.display().to_string()),
        ],
    );
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    for want in ["PREPARE_RC=0", "RECORD"] {
        assert!(
            out.lines().any(|l| l == want),
            "missing {want:?} in:\n{out}\n{err}"
        );
    }
    // The bypass is in the log and in PCR 15, where a remote verifier replaying the log sees it
    // (the simulator's own bypass record is in the log only).
    let event = "dangerous:premounted:/run/nextroot".to_string();
    let sim = format!("dangerous:tpm-simulator:{event}");
    assert_eq!(
        log_strings(&log),
        vec![
            (NO_PCR, sim, "dangerous".to_string()),
            (15, event.clone(), "dangerous".to_string())
        ]
    );
    assert_eq!(tpm.pcrread("sha256", 15), expected_pcr15(&[event]));
}
