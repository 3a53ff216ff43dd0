//! `verity sysext|confext` command line without root: every verb takes the whole option set
//! (before or after the verb), `--json=pretty|short|off`, no verb means status, dates as systemd
//! prints them (checked against date(1)), and bad `--mutable` values are usage errors.

use std::process::{Command, Output};

fn verity(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_verity"))
        .args(args)
        .output()
        .unwrap()
}

const ALL: &[&str] = &[
    "--trust=/nonexistent",
    "--image-policy=root=signed+absent",
    "--tpm=swtpm:host=127.0.0.1,port=1",
    "--event-log=/nonexistent/log",
    "--integrity=userspace",
    "--mutable=ephemeral-import",
    "--noexec=yes",
    "--strict",
    "--ratchet",
    "--pcr=13",
    "--dangerous-skip-release-check",
    "--dangerous-no-tpm",
    "--no-reload",
    "--no-pager",
    "--no-legend",
];

#[test]
fn every_verb_takes_every_option_before_or_after_it() {
    let t = tempfile::tempdir().unwrap();
    let root = format!("--root={}", t.path().display());
    for class in ["sysext", "confext"] {
        for verb in ["unmerge", "status", "list"] {
            let mut after = vec![class, verb, &root, "--json=short"];
            after.extend_from_slice(ALL);
            let mut before = vec![class, &root, "--json=short"];
            before.extend_from_slice(ALL);
            before.push(verb);
            for args in [after, before] {
                let o = verity(&args);
                assert!(
                    o.status.success(),
                    "{args:?}: {}",
                    String::from_utf8_lossy(&o.stderr)
                );
                let out = String::from_utf8(o.stdout).unwrap();
                assert_eq!(out.lines().count(), 1, "--json=short is one line: {out}");
                serde_json::from_str::<serde_json::Value>(&out).unwrap();
            }
        }
    }
}

#[test]
fn json_modes_default_verb_and_dates() {
    let t = tempfile::tempdir().unwrap();
    let ext = t.path().join("var/lib/extensions/tool");
    std::fs::create_dir_all(&ext).unwrap();
    let root = format!("--root={}", t.path().display());
    // No verb: status. --json alone is pretty (several lines), =off is the table.
    let pretty = verity(&["sysext", &root, "--json"]);
    assert!(pretty.status.success());
    let pretty = String::from_utf8(pretty.stdout).unwrap();
    assert!(pretty.lines().count() > 3, "{pretty}");
    let v: serde_json::Value = serde_json::from_str(&pretty).unwrap();
    assert_eq!(v[0]["merged"], false);
    assert_eq!(v[0]["mutable"], false);
    let off = String::from_utf8(verity(&["sysext", &root, "--json=off"]).stdout).unwrap();
    assert!(off.starts_with("HIERARCHY"), "{off}");
    let bad = verity(&["sysext", "status", "--json=yaml"]);
    assert_eq!(bad.status.code(), Some(2));
    // list prints the mtime as systemd prints timestamps; date(1) is the reference.
    let mtime = std::fs::metadata(&ext).unwrap();
    let secs = std::os::unix::fs::MetadataExt::mtime(&mtime);
    let want = Command::new("date")
        .arg("-d")
        .arg(format!("@{secs}"))
        .arg("+%a %Y-%m-%d %H:%M:%S %Z")
        .output()
        .unwrap();
    let want = String::from_utf8(want.stdout).unwrap();
    let list = String::from_utf8(verity(&["sysext", "list", &root, "--no-legend"]).stdout).unwrap();
    assert!(list.contains(want.trim()), "{list} lacks {want}");
    assert!(!list.contains("NAME"), "--no-legend: {list}");
}

#[test]
fn bad_mutable_mode_is_a_usage_error() {
    let o = verity(&["sysext", "merge", "--mutable=maybe"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("ephemeral-import"));
}
