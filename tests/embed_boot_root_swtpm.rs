//! The boot hook embedded as a library, the way an installer or update agent calls it: a
//! `verity::host::Host` built from values in code (no command line, no boot.toml), a
//! `boot::config::Config` saying what is required, and `verity::boot::run` on two sysexts signed
//! by the trusted TEST-ONLY key, measured into a per-test swtpm. Checks the returned report, the
//! merged /usr and the event log (replayed against the TPM); then that a tampered image is refused
//! with nothing merged and nothing measured, alone and beside a good image under `strict`.
//!
//! Runs without the libtest harness so it can re-execute itself under
//! `unshare -m --propagation private` (a multi-threaded test process cannot). Needs root,
//! util-linux, swtpm, tpm2-tools and erofs-utils; fails otherwise.

#[path = "support/swtpm.rs"]
mod swtpm;

use std::path::{Path, PathBuf};
use std::process::Command;
use swtpm::Swtpm;
use verity::boot::config::{Class as BootClass, Config};
use verity::boot::report::{Outcome, Report, Status};
use verity::boot::LogEvent;
use verity::host::Host;
use verity::image::{Class, Integrity};
use verity::measure::EventLog;
use verity::merge::status::is_ours;

const BIN: &str = env!("CARGO_BIN_EXE_verity");

fn keys() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("keys")
}

fn write(p: &Path, s: &str) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, s).unwrap();
}

/// Builds a sysext `NAME.raw` signed by the TEST-ONLY rsa2048 key, carrying `usr/share-NAME`
/// (a block of `marker` lines, so a byte of it can be found and flipped).
fn sysext(r: &Path, name: &str, marker: &str) -> PathBuf {
    let src = r.parent().unwrap().join(format!("src-{name}"));
    write(
        &src.join(format!(
            "usr/lib/extension-release.d/extension-release.{name}"
        )),
        "ID=_any\n",
    );
    write(
        &src.join(format!("usr/share-{name}")),
        &format!("{marker}\n").repeat(512),
    );
    let out = r.join("var/lib/extensions").join(format!("{name}.raw"));
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    let st = Command::new(BIN)
        .args(["image", "build", "--class", "sysext"])
        .arg("--key")
        .arg(keys().join("rsa2048.key"))
        .arg("--cert")
        .arg(keys().join("rsa2048.crt"))
        .arg("-o")
        .arg(&out)
        .arg(&src)
        .status()
        .expect("run verity image build");
    assert!(st.success(), "image build {name}");
    out
}

/// Flips one byte of the first occurrence of `marker` in the image's file-system data.
fn tamper(img: &Path, marker: &str) {
    let mut b = std::fs::read(img).unwrap();
    let at = b
        .windows(marker.len())
        .position(|w| w == marker.as_bytes())
        .unwrap_or_else(|| panic!("{marker} not found in {}", img.display()));
    b[at] ^= 0x20;
    std::fs::write(img, b).unwrap();
}

/// A fresh root with an os-release, a host file in /usr and a trust dir holding the TEST-ONLY
/// certificate; returns (root, trust dir).
fn tree(t: &Path) -> (PathBuf, PathBuf) {
    let r = t.join("root");
    write(&r.join("etc/os-release"), "ID=debian\n");
    write(&r.join("usr/share/host"), "h\n");
    let trust = t.join("trust");
    std::fs::create_dir_all(&trust).unwrap();
    std::fs::copy(keys().join("rsa2048.crt"), trust.join("rsa2048.crt")).unwrap();
    (r, trust)
}

/// The host context, from values in code.
fn host(t: &Path, r: &Path, trust: &Path, tpm: &Swtpm) -> Host {
    let mut h = Host::new(r);
    h.trust = vec![trust.to_path_buf()];
    h.tpm.spec = Some(tpm.spec());
    h.tpm.dangerous_simulator = true;
    h.event_log = t.join("tpm2-measure.log");
    h.integrity = Integrity::Userspace;
    h.workspace = t.join("ws");
    h
}

/// The hook's own settings: sysext only, these images required.
fn config(required: &[&str]) -> Config {
    Config {
        classes: vec![BootClass::Sysext],
        required: required.iter().map(|s| s.to_string()).collect(),
        ..Config::default()
    }
}

fn run(h: &Host, cfg: &Config) -> (Report, Vec<String>) {
    let mut lines = Vec::new();
    let rep = verity::boot::run(h, cfg, "(embedded)", &mut |e| {
        lines.push(match e {
            LogEvent::Image(i) => format!("{} {:?}", i.name, i.status),
            LogEvent::Error(m) => m.to_string(),
        })
    });
    eprintln!("{}\n{lines:?}", rep.to_json());
    (rep, lines)
}

fn log_strings(h: &Host) -> Vec<String> {
    if !h.event_log.exists() {
        return Vec::new();
    }
    EventLog::new(&h.event_log)
        .read()
        .unwrap()
        .iter()
        .filter_map(|r| r.string().map(String::from))
        .collect()
}

fn root_swtpm_embedded_boot_merges_two_signed_sysexts() {
    let tpm = Swtpm::start();
    let t = tempfile::tempdir().unwrap();
    let (r, trust) = tree(t.path());
    sysext(&r, "one", "content-of-one");
    sysext(&r, "two", "content-of-two");
    let h = host(t.path(), &r, &trust, &tpm);
    let (rep, lines) = run(&h, &config(&["one", "two"]));
    assert_eq!((rep.outcome, rep.exit_code), (Outcome::Ok, 0));
    assert_eq!(rep.config, "(embedded)");
    assert!(rep.errors.is_empty() && rep.missing_required.is_empty());
    let names: Vec<&str> = rep.images.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names, ["one", "two"]);
    for i in &rep.images {
        assert_eq!(i.status, Status::Accepted, "{}", i.name);
        assert_eq!(i.pcr, Some(13), "{}", i.name);
        assert_eq!(i.root_hash.as_deref().map(str::len), Some(64), "{}", i.name);
        assert_eq!(i.signer.as_deref().map(str::len), Some(64), "{}", i.name);
        assert_eq!(i.integrity.as_deref(), Some("userspace"), "{}", i.name);
    }
    assert_eq!(lines, ["one Accepted", "two Accepted"]);
    // The merged hierarchy: both images' files over the host's own, marked as ours.
    for n in ["one", "two"] {
        let got = std::fs::read_to_string(r.join(format!("usr/share-{n}"))).unwrap();
        assert!(got.starts_with(&format!("content-of-{n}\n")), "{n}");
    }
    assert_eq!(
        std::fs::read_to_string(r.join("usr/share/host")).unwrap(),
        "h\n"
    );
    assert!(is_ours(&r.join("usr"), Class::Sysext));
    // The event log names both images with the root hash and signer the report gives, plus the
    // simulator bypass the host asked for by name; and it replays to the TPM's PCR 13.
    let strings = log_strings(&h);
    for i in &rep.images {
        let want = format!(
            "sysext:{}:{}:{}",
            i.name,
            i.root_hash.as_deref().unwrap(),
            i.signer.as_deref().unwrap()
        );
        assert_eq!(
            strings.iter().filter(|s| **s == want).count(),
            1,
            "{want} in {strings:?}"
        );
    }
    assert_eq!(
        strings
            .iter()
            .filter(|s| s.starts_with("dangerous:tpm-simulator:"))
            .count(),
        2,
        "{strings:?}"
    );
    let o = Command::new(BIN)
        .args(["pcr", "replay", "--tpm", &tpm.spec(), "--event-log"])
        .arg(&h.event_log)
        .output()
        .unwrap();
    assert!(o.status.success(), "pcr replay: {o:?}");
    // The library unmerges as it merged.
    let (done, _) = verity::merge::run::unmerge(&h, Class::Sysext).unwrap();
    assert_eq!(done.len(), 1, "{done:?}");
    assert!(!r.join("usr/share-one").exists());
    assert!(!is_ours(&r.join("usr"), Class::Sysext));
}

fn root_swtpm_embedded_boot_refuses_a_tampered_image() {
    let tpm = Swtpm::start();
    let t = tempfile::tempdir().unwrap();
    let (r, trust) = tree(t.path());
    let evil = sysext(&r, "evil", "content-of-evil");
    tamper(&evil, "content-of-evil");
    let h = host(t.path(), &r, &trust, &tpm);
    // Alone: refused at the integrity check, required, so the hook fails (exit 1).
    let (rep, _) = run(&h, &config(&["evil"]));
    assert_eq!((rep.outcome, rep.exit_code), (Outcome::RequiredFailed, 1));
    assert_eq!(rep.missing_required, ["evil"]);
    assert_eq!(rep.images.len(), 1);
    let i = &rep.images[0];
    assert_eq!(i.status, Status::Rejected);
    let reason = i.reason.as_deref().unwrap();
    assert!(reason.starts_with("integrity"), "{reason}");
    assert!(reason.contains("verity-tree"), "{reason}");
    assert!(i.pcr.is_none() && i.root_hash.is_none());
    assert!(!is_ours(&r.join("usr"), Class::Sysext));
    assert!(!r.join("usr/share-evil").exists());
    // Beside a good image, with strict: the good one is not merged either.
    sysext(&r, "good", "content-of-good");
    let mut strict = h.clone();
    strict.strict = true;
    let (rep, _) = run(&strict, &config(&["good"]));
    assert_eq!((rep.outcome, rep.exit_code), (Outcome::Error, 2));
    assert_eq!(rep.errors.len(), 1, "{:?}", rep.errors);
    assert!(
        rep.errors[0].starts_with("sysext: --strict: 1 image(s) failed, nothing merged"),
        "{:?}",
        rep.errors
    );
    assert!(!is_ours(&r.join("usr"), Class::Sysext));
    assert!(!r.join("usr/share-good").exists());
    // Nothing of the tampered image was measured; under strict, the good image was refused
    // before anything was measured.
    let strings = log_strings(&h);
    assert!(!strings.iter().any(|s| s.contains(":evil:")), "{strings:?}");
    assert!(!strings.iter().any(|s| s.contains(":good:")), "{strings:?}");
    assert_eq!(tpm.pcrread("sha256", 13), vec![0u8; 32]);
}

const SCENARIOS: &[(&str, fn())] = &[
    (
        "root_swtpm_embedded_boot_merges_two_signed_sysexts",
        root_swtpm_embedded_boot_merges_two_signed_sysexts,
    ),
    (
        "root_swtpm_embedded_boot_refuses_a_tampered_image",
        root_swtpm_embedded_boot_refuses_a_tampered_image,
    ),
];

fn main() {
    if let Some(name) = std::env::var_os("VERITY_TEST_IN_NS") {
        let (_, f) = SCENARIOS
            .iter()
            .find(|(n, _)| *n == name)
            .expect("a known scenario");
        f();
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    for (name, _) in SCENARIOS {
        if !filter.is_empty() && !filter.iter().any(|f| name.contains(f.as_str())) {
            continue;
        }
        let st = Command::new("unshare")
            .args(["-m", "--propagation", "private"])
            .arg(&exe)
            .env("VERITY_TEST_IN_NS", name)
            .status()
            .expect("unshare (util-linux) must be installed and the test run as root");
        assert!(st.success(), "{name} failed");
        println!("{name} ... ok");
    }
}
