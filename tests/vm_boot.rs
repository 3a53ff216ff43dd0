//! The full-system VM test (tests/vm/run): a Debian kernel under QEMU TCG with swtpm as its TPM; kernel
//! dm-verity activation through the devicemapper crate, signature handoff and EIO on altered data,
//! Debian's systemd-sysext 252 merging our signed DDI (issue 14), and `soft-reboot prepare
//! --integrity kernel` staging a signed root DDI through a kernel dm-verity device (issue 16), run in
//! the guest's /init. Needs root (apt downloads into /var/cache/verity-vm), swtpm,
//! erofs-utils, openssl and tpm2-tools; CI installs them from .ci/apt-packages. Besides the guest's
//! own checks (which compare PCRs with `verity pcr predict`), PCRs 12 and 13 as the guest's
//! `tpm2_pcrread` reads them must equal a hash chain this test computes with `sha256sum` from the
//! event strings of the guest's event log (issue 17).

use std::io::Write;
use std::process::{Command, Stdio};

/// SHA-256 of `bytes` by coreutils' sha256sum, as raw bytes.
fn sha256sum(bytes: &[u8]) -> Vec<u8> {
    let mut c = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("sha256sum (coreutils)");
    c.stdin.take().unwrap().write_all(bytes).unwrap();
    let out = c.wait_with_output().unwrap();
    let hex = String::from_utf8(out.stdout).unwrap();
    unhex(hex.split_whitespace().next().unwrap())
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// PCR 12 and 13 replayed from the `EVLOG` lines: PCR = sha256(PCR || sha256(string)) from zero,
/// for every record that names the PCR (log-only records have no `pcr`).
fn chain(stdout: &str, pcr: u64) -> String {
    let mut v = vec![0u8; 32];
    for l in stdout.lines().filter_map(|l| l.strip_prefix("EVLOG ")) {
        let rec: serde_json::Value = serde_json::from_str(l).expect("an event-log record");
        if rec["pcr"].as_u64() != Some(pcr) {
            continue;
        }
        let string = rec["content"]["string"].as_str().expect("content.string");
        v.extend(sha256sum(string.as_bytes()));
        v = sha256sum(&v);
    }
    v.iter().map(|b| format!("{b:02x}")).collect()
}

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
    for pcr in [12u64, 13] {
        let read = stdout
            .lines()
            .find_map(|l| l.strip_prefix(&format!("TPM2PCR {pcr} ")))
            .unwrap_or_else(|| panic!("no tpm2_pcrread value for PCR {pcr}\n{stdout}"))
            .to_ascii_lowercase();
        assert!(
            stdout.contains(&format!("\"pcr\":{pcr}")),
            "no record for PCR {pcr}"
        );
        assert_eq!(
            read,
            chain(&stdout, pcr),
            "PCR {pcr}: TPM vs event log\n{stdout}"
        );
    }
}
