//! Shared helpers for the hash-tree integration tests: input patterns, running the binary and
//! veritysetup, file digests.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

/// The spec's pattern: byte i is i mod 251.
pub fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

/// The project's binary.
pub fn verity() -> Command {
    Command::new(env!("CARGO_BIN_EXE_verity"))
}

/// Runs a command and returns its output, panicking with context if it cannot start.
pub fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// Runs and requires success.
pub fn ok(cmd: &mut Command) -> String {
    let o = run(cmd);
    assert!(
        o.status.success(),
        "{cmd:?} failed with {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// veritysetup from cryptsetup-bin; CI installs it, so its absence is a failure, not a skip.
pub fn veritysetup() -> Command {
    let p = [
        "/usr/sbin/veritysetup",
        "/sbin/veritysetup",
        "/usr/bin/veritysetup",
    ]
    .into_iter()
    .find(|p| Path::new(p).exists())
    .expect("veritysetup is not installed (apt-get install cryptsetup-bin)");
    Command::new(p)
}

/// Lower-case hex SHA-256 of a file.
pub fn sha256_file(p: &Path) -> String {
    let data = std::fs::read(p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()));
    verity::hex::encode(&verity::digest::HashAlg::Sha256.digest(&data))
}

/// The value after `Key:` in veritysetup-style output.
pub fn field(out: &str, key: &str) -> Option<String> {
    out.lines()
        .find(|l| l.starts_with(key))
        .map(|l| l[key.len()..].trim().to_string())
}

pub const SALT: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
pub const UUID: &str = "12345678-1234-1234-1234-123456789abc";
