//! Directory extensions are measured as what they are: merged under a user-written policy that
//! admits `unprotected`, each gets one `<class>:<name>:unprotected-tree-<digest>:unsigned` record
//! (after its `dangerous:unprotected` record) in a real software TPM's PCR, where the digest is the
//! `verity-tree-v1` manifest digest. The test computes that digest independently with find, stat and
//! sha256sum (tests/support/treedigest_sh.rs), checks that `verity pcr predict --dir` and `verity pcr replay` agree with the TPM, and
//! that changing one byte of one file changes the measured value. Needs root (mounts inside
//! `unshare -m`), swtpm and util-linux.

#[path = "support/swtpm.rs"]
mod swtpm;
#[path = "support/treedigest_sh.rs"]
mod treedigest_sh;

use std::path::Path;
use std::process::Command;
use swtpm::Swtpm;
use treedigest_sh::shell_digest;

const BIN: &str = env!("CARGO_BIN_EXE_verity");

fn write(p: &Path, s: &str) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, s).unwrap();
}

fn field(s: &str, k: &str) -> serde_json::Value {
    serde_json::from_str(s.lines().find_map(|l| l.strip_prefix(k)).unwrap()).unwrap()
}

#[test]
fn swtpm_root_directory_extension_is_measured_with_its_tree_digest() {
    let tpm = Swtpm::start();
    let t = tempfile::tempdir().unwrap();
    let r = t.path().join("root");
    write(&r.join("etc/os-release"), "ID=debian\n");
    write(&r.join("usr/share/host"), "h\n");
    let ext = r.join("var/lib/extensions/dirext");
    write(
        &ext.join("usr/lib/extension-release.d/extension-release.dirext"),
        "ID=_any\n",
    );
    write(&ext.join("usr/share/dirext/payload"), "payload v1\n");
    std::os::unix::fs::symlink("payload", ext.join("usr/share/dirext/link")).unwrap();
    let want = shell_digest(&ext);
    let log = t.path().join("tpm2-measure.log");
    let m = format!(
        "--root {} --image-policy root=unprotected --tpm {} --dangerous-tpm-simulator --event-log {}",
        r.display(),
        tpm.spec(),
        log.display()
    );
    let o = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-euc"])
        .arg(
            r#"
            $V sysext merge $M >&2
            echo "PAYLOAD=$(cat $R/usr/share/dirext/payload)"
            $V pcr replay --tpm $S --event-log $L >&2 && echo REPLAY_OK
            echo "PREDICTED=$($V pcr predict --pcr 13 --bank sha256 --dir $E --with-bypass tpm-simulator --json)"
            echo "READ=$($V pcr read 13 --bank sha256 --tpm $S --json)"
            $V sysext unmerge --root $R >&2
            "#,
        )
        .env("V", BIN)
        .env("R", &r)
        .env("E", &ext)
        .env("L", &log)
        .env("S", tpm.spec())
        .env("M", &m)
        .output()
        .expect("unshare (util-linux) must be installed and the test run as root");
    let s = String::from_utf8_lossy(&o.stdout);
    eprintln!("{s}\n{}", String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success());
    assert!(s.contains("PAYLOAD=payload v1"), "merged");
    assert!(s.contains("REPLAY_OK"));
    let event = format!("sysext:dirext:unprotected-tree-{want}:unsigned");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains(&format!("\"{event}\"")),
        "the record carries the independently computed tree digest {want}: {text}"
    );
    assert!(text.contains(&format!("dangerous:unprotected:{event}")));
    let predicted = field(&s, "PREDICTED=");
    let evs: Vec<&str> = predicted["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    assert_eq!(evs.last(), Some(&event.as_str()), "{predicted}");
    assert_eq!(
        predicted["banks"]["sha256"],
        field(&s, "READ=")["sha256"]["13"]
    );

    // One changed byte in one file is a different measurement.
    write(&ext.join("usr/share/dirext/payload"), "payload v2\n");
    let other = shell_digest(&ext);
    assert_ne!(other, want);
    let o = Command::new(BIN)
        .args([
            "pcr", "predict", "--pcr", "13", "--bank", "sha256", "--json", "--dir",
        ])
        .arg(&ext)
        .output()
        .unwrap();
    assert!(o.status.success());
    let p: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(p["events"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e.as_str() == Some(&format!("sysext:dirext:unprotected-tree-{other}:unsigned"))));
}

#[test]
fn root_directory_extension_without_an_unprotected_policy_is_refused_and_not_measured() {
    let t = tempfile::tempdir().unwrap();
    let r = t.path().join("root");
    write(&r.join("etc/os-release"), "ID=debian\n");
    let ext = r.join("var/lib/extensions/dirext");
    write(
        &ext.join("usr/lib/extension-release.d/extension-release.dirext"),
        "ID=_any\n",
    );
    let log = t.path().join("log");
    let o = Command::new("unshare")
        .args(["-m", "--propagation", "private", BIN])
        .args([
            "sysext",
            "merge",
            "--dangerous-no-tpm",
            "--strict",
            "--root",
        ])
        .arg(&r)
        .arg("--event-log")
        .arg(&log)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("does not allow unprotected"), "{err}");
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(!text.contains("sysext:dirext:"), "{text}");
}
