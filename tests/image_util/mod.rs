//! Helpers shared by the tests/image_*.rs integration tests: source trees, throwaway openssl keys,
//! running the binary and reading its JSON report.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const HOST_RELEASE: &str = "ID=debian\nVERSION_ID=12\n";

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_verity")
}

/// Runs a tool and panics with its stderr if it fails (a missing tool fails the test).
pub fn tool(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {:?} (is it installed?): {e}", cmd.get_program()));
    assert!(
        out.status.success(),
        "{:?} failed: {}\n{}",
        cmd,
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    out
}

pub fn verity(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Output {
    let mut c = Command::new(bin());
    for a in args {
        c.arg(a.as_ref());
    }
    c.output().expect("run verity")
}

/// An extension source tree for `class` named `name` with a file of pseudo-random content.
pub fn make_src(dir: &Path, class: &str, name: &str, release: &str) -> PathBuf {
    let src = dir.join(format!("src-{class}-{name}"));
    let (rel_dir, payload) = match class {
        "sysext" => ("usr/lib/extension-release.d", "usr/bin/hello"),
        _ => ("etc/extension-release.d", "etc/hello.conf"),
    };
    std::fs::create_dir_all(src.join(rel_dir)).unwrap();
    std::fs::create_dir_all(src.join(payload).parent().unwrap()).unwrap();
    std::fs::write(
        src.join(rel_dir).join(format!("extension-release.{name}")),
        release,
    )
    .unwrap();
    let data: Vec<u8> = (0..200_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(src.join(payload), data).unwrap();
    src
}

/// A throwaway self-signed key and certificate; the certificate is put in `dir/trust/NAME.crt`.
pub fn keygen(dir: &Path, name: &str) -> (PathBuf, PathBuf, PathBuf) {
    let trust = dir.join(format!("trust-{name}"));
    std::fs::create_dir_all(&trust).unwrap();
    let key = dir.join(format!("{name}.key"));
    let cert = trust.join(format!("{name}.crt"));
    tool(
        Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
            ])
            .arg(format!("/CN={name}"))
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert),
    );
    (key, cert, trust)
}

pub fn host_release(dir: &Path) -> PathBuf {
    let p = dir.join("host-os-release");
    std::fs::write(&p, HOST_RELEASE).unwrap();
    p
}

/// The JSON report of `verity image verify`, and the exit code.
pub fn verify_json(img: &Path, extra: &[&str]) -> (i32, serde_json::Value) {
    let mut c = Command::new(bin());
    c.args(["image", "verify", "--json"]).arg(img).args(extra);
    let out = c.output().expect("run verity");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "no JSON report ({e}); stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), v)
}

/// Names of the checks that failed in a report.
pub fn failed_checks(v: &serde_json::Value) -> Vec<String> {
    v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["result"] == "fail")
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect()
}

pub fn check_result(v: &serde_json::Value, name: &str) -> String {
    v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .map(|c| c["result"].as_str().unwrap().to_string())
        .unwrap_or_else(|| "missing".into())
}

pub fn build(src: &Path, out: &Path, class: &str, extra: &[&dyn AsRef<std::ffi::OsStr>]) {
    let mut c = Command::new(bin());
    c.args(["image", "build"])
        .arg(src)
        .arg("-o")
        .arg(out)
        .args(["--class", class]);
    for a in extra {
        c.arg(a.as_ref());
    }
    tool(&mut c);
}
