//! The systemd 257 oracle for tests: `tests/oracle/systemd-257` (in this repository) fetches and
//! unpacks Debian trixie's systemd 257 once into a cache dir and gives a wrapper per tool. A test
//! that needs it fails (never skips) when it cannot be had.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// The oracle script.
pub fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oracle/systemd-257")
}

/// The path of a wrapper running systemd 257's `tool` (e.g. `systemd-sysext`, `systemd-confext`,
/// `systemd-dissect`, `systemd-repart`, `systemd-pcrlock`).
pub fn tool(tool: &str) -> PathBuf {
    let o = Command::new(script())
        .args(["path", tool])
        .output()
        .expect("tests/oracle/systemd-257 must be runnable (bash)");
    assert!(
        o.status.success(),
        "systemd 257 oracle unavailable ({tool}): {}",
        String::from_utf8_lossy(&o.stderr)
    );
    PathBuf::from(String::from_utf8(o.stdout).unwrap().trim())
}
