//! Rollback protection in admission, end to end on a software TPM: `sysext merge --ratchet` raises
//! the floor to the merged image's IMAGE_VERSION= (which the event log records), an older signed
//! image put back is refused with the rollback reason and nothing is measured for it (event log
//! and PCR 13 unchanged), `image verify` says exit 1, a corrupt state file stops the merge (exit 2,
//! nothing merged), and without a floor the old image is admitted again (and `refresh --ratchet`
//! sets its floor). The TPM epoch refuses an image of a retired epoch even after the state file is
//! deleted; a `.v/` directory merges its newest entry and never falls back to an older one; boot's
//! `ratchet = true`. Needs root (mounts inside `unshare -m`), swtpm, erofs-utils and util-linux.

#[path = "support/swtpm.rs"]
mod swtpm;

use std::path::{Path, PathBuf};
use std::process::Command;
use swtpm::Swtpm;

const BIN: &str = env!("CARGO_BIN_EXE_verity");

fn keys() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("keys")
}

fn write(p: &Path, s: &str) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, s).unwrap();
}

/// Builds a signed sysext `foo` carrying `version` (and `epoch`) into `out`.
fn build(t: &Path, out: &Path, version: &str, epoch: Option<u64>) {
    let src = t.join(format!("src-{version}"));
    write(
        &src.join("usr/lib/extension-release.d/extension-release.foo"),
        "ID=_any\n",
    );
    write(&src.join("usr/share/foo"), &format!("{version}\n"));
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    let mut c = Command::new(BIN);
    c.args(["image", "build", "--class", "sysext", "--version", version])
        .arg("--key")
        .arg(keys().join("leaf.key"))
        .arg("--cert")
        .arg(keys().join("leaf.crt"))
        .arg("-o")
        .arg(out)
        .arg(&src);
    if let Some(e) = epoch {
        c.args(["--epoch", &e.to_string()]);
    }
    assert!(c.status().unwrap().success());
}

/// A root with a host os-release and a trust dir; returns (root, trust).
fn setup(t: &Path) -> (PathBuf, PathBuf) {
    let r = t.join("root");
    write(&r.join("etc/os-release"), "ID=debian\n");
    let trust = t.join("trust");
    std::fs::create_dir_all(&trust).unwrap();
    std::fs::copy(keys().join("leaf.crt"), trust.join("leaf.crt")).unwrap();
    (r, trust)
}

/// Runs `script` in a private mount namespace with V, R, TR, S, L, M and the images set; returns
/// stdout and stderr.
fn run(script: &str, env: &[(&str, &Path)], tpm: &Swtpm, r: &Path, tr: &Path) -> (String, String) {
    let log = r.parent().unwrap().join("tpm2-measure.log");
    let m = format!(
        "--root {} --trust {} --tpm {} --dangerous-tpm-simulator --event-log {}",
        r.display(),
        tr.display(),
        tpm.spec(),
        log.display()
    );
    let mut c = Command::new("unshare");
    c.args(["-m", "--propagation", "private", "sh", "-uc", script])
        .env("V", BIN)
        .env("R", r)
        .env("TR", tr)
        .env("S", tpm.spec())
        .env("L", &log)
        .env("M", m);
    for (k, v) in env {
        c.env(k, v);
    }
    let o = c
        .output()
        .expect("unshare (util-linux) must be installed and the test run as root");
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    );
    eprintln!("{out}\n{err}");
    (out, err)
}

#[test]
fn swtpm_root_ratchet_then_an_older_image_is_refused_and_not_measured() {
    let tpm = Swtpm::start();
    let t = tempfile::tempdir().unwrap();
    let (r, tr) = setup(t.path());
    let img = r.join("var/lib/extensions/foo.raw");
    let (v1, v2) = (t.path().join("v1/foo.raw"), t.path().join("v2/foo.raw"));
    build(t.path(), &v1, "1.9", None);
    build(t.path(), &v2, "1.10", None);
    std::fs::create_dir_all(img.parent().unwrap()).unwrap();
    std::fs::copy(&v2, &img).unwrap();
    let state = r.join("var/lib/verity/rollback.json");
    let (out, err) = run(
        r#"
        $V sysext merge $M --ratchet; echo "RC_V2=$?"
        echo "FILE=$(cat $R/usr/share/foo)"
        $V sysext unmerge --root $R
        cp $V1 $R/var/lib/extensions/foo.raw
        echo "LOG1=$(wc -l < $L)"
        echo "PCR1=$($V pcr read 13 --bank sha256 --tpm $S --json)"
        $V sysext merge $M; echo "RC_V1=$?"
        test -e $R/usr/share/foo && echo MERGED_V1
        $V sysext merge $M --strict; echo "RC_STRICT=$?"
        $V image verify $V1 --root $R --trust $TR; echo "RC_VERIFY1=$?"
        $V image verify $V2 --root $R --trust $TR >/dev/null; echo "RC_VERIFY2=$?"
        echo "LOG2=$(wc -l < $L)"
        echo "PCR2=$($V pcr read 13 --bank sha256 --tpm $S --json)"
        cp $ST $ST.good; echo '{"schema": 1, "floors": [' > $ST
        $V sysext merge $M; echo "RC_CORRUPT=$?"
        test -e $R/usr/share/foo && echo MERGED_CORRUPT
        echo "LOG3=$(wc -l < $L)"
        rm $ST $ST.good
        $V sysext merge $M; echo "RC_NOFLOOR=$?"
        echo "FILE2=$(cat $R/usr/share/foo)"
        $V sysext refresh $M --ratchet; echo "RC_REFRESH=$?"
        echo "FLOORS=$($V rollback show --json --root $R)"
        $V sysext unmerge --root $R
        $V pcr replay --tpm $S --event-log $L >/dev/null && echo REPLAY_OK
        echo "SHOWN=$($V log show --event-log $L | grep '^    version: ' | tr '\n' ,)"
        "#,
        &[("V1", &v1), ("V2", &v2), ("ST", &state)],
        &tpm,
        &r,
        &tr,
    );
    // v2 merged, and --ratchet raised the floor to its version (logged on stderr).
    assert!(
        out.contains("RC_V2=0\n") && out.contains("FILE=1.10\n"),
        "{out}"
    );
    assert!(
        err.contains("--ratchet: floor of sysext foo set to 1.10"),
        "{err}"
    );
    // v1 put back: skipped with the rollback reason, version found and floor; exit 1.
    assert!(
        out.contains("RC_V1=1\n") && !out.contains("MERGED_V1"),
        "{out}"
    );
    assert!(
        err.contains("Rollback check failed")
            && err.contains("rollback: IMAGE_VERSION=1.9 is below the floor 1.10"),
        "{err}"
    );
    assert!(out.contains("RC_STRICT=1\n"), "{out}");
    assert!(
        out.contains("RC_VERIFY1=1\n") && out.contains("RC_VERIFY2=0\n"),
        "{out}"
    );
    assert!(
        err.contains("rollback: sysext foo: rollback: IMAGE_VERSION=1.9"),
        "{err}"
    );
    // Nothing was measured for the refused image: same log, same PCR.
    let line = |k: &str| out.lines().find_map(|l| l.strip_prefix(k)).unwrap();
    assert_eq!(line("LOG1="), line("LOG2="));
    assert_eq!(line("PCR1="), line("PCR2="));
    // A corrupt state file: exit 2 naming it, nothing merged, nothing measured.
    assert!(
        out.contains("RC_CORRUPT=2\n") && !out.contains("MERGED_CORRUPT"),
        "{out}"
    );
    assert!(err.contains("var/lib/verity/rollback.json"), "{err}");
    assert_eq!(line("LOG2="), line("LOG3="));
    // Without a floor the old image is admitted.
    assert!(
        out.contains("RC_NOFLOOR=0\n") && out.contains("FILE2=1.9\n"),
        "{out}"
    );
    // refresh --ratchet sets the floor again, to what it admitted.
    assert!(out.contains("RC_REFRESH=0\n"), "{out}");
    let floors: serde_json::Value =
        serde_json::from_str(out.lines().find_map(|l| l.strip_prefix("FLOORS=")).unwrap()).unwrap();
    assert_eq!(
        floors["floors"],
        serde_json::json!([{"class": "sysext", "name": "foo", "version": "1.9"}]),
        "{floors}"
    );
    assert!(out.contains("REPLAY_OK"));
    assert!(
        out.contains("SHOWN=    version: 1.10,    version: 1.9,    version: 1.9,\n"),
        "{out}"
    );
    // The event log records each admitted image's version beside its (unchanged) event.
    let log = std::fs::read_to_string(t.path().join("tpm2-measure.log")).unwrap();
    let versions: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("\"eventType\":\"sysext\""))
        .map(|l| {
            let v: serde_json::Value =
                serde_json::from_str(l.trim_start_matches('\u{1e}')).unwrap();
            assert!(v["content"]["string"]
                .as_str()
                .unwrap()
                .starts_with("sysext:foo:"));
            v["content"]["imageVersion"]
                .as_str()
                .unwrap()
                .to_string()
                .leak() as &str
        })
        .collect();
    assert_eq!(versions, ["1.10", "1.9", "1.9"]);
}

#[test]
fn swtpm_root_an_image_of_a_retired_epoch_is_refused_even_without_the_state_file() {
    let tpm = Swtpm::start();
    let t = tempfile::tempdir().unwrap();
    let (r, tr) = setup(t.path());
    let img = r.join("var/lib/extensions/foo.raw");
    let (old, new) = (t.path().join("e0/foo.raw"), t.path().join("e1/foo.raw"));
    build(t.path(), &old, "5", Some(0));
    build(t.path(), &new, "5", Some(1));
    std::fs::create_dir_all(img.parent().unwrap()).unwrap();
    std::fs::copy(&old, &img).unwrap();
    let (out, err) = run(
        r#"
        $V rollback epoch init --tpm $S >&2
        $V sysext merge $M --ratchet; echo "RC_E0=$?"
        $V sysext unmerge --root $R
        $V rollback epoch advance --tpm $S >&2
        rm $R/var/lib/verity/rollback.json
        $V sysext merge $M; echo "RC_OLD=$?"
        test -e $R/usr/share/foo && echo MERGED_OLD
        $V image verify $OLD --root $R --trust $TR --tpm $S --dangerous-tpm-simulator; echo "RC_VERIFY=$?"
        cp $NEW $R/var/lib/extensions/foo.raw
        $V sysext merge $M; echo "RC_NEW=$?"
        $V sysext unmerge --root $R
        "#,
        &[("OLD", &old), ("NEW", &new)],
        &tpm,
        &r,
        &tr,
    );
    assert!(out.contains("RC_E0=0\n"), "{out}");
    assert!(
        out.contains("RC_OLD=1\n") && !out.contains("MERGED_OLD"),
        "{out}"
    );
    assert!(
        err.contains("rollback: VERITY_EPOCH=0 is below the TPM epoch 1"),
        "{err}"
    );
    assert!(out.contains("RC_VERIFY=1\n"), "{out}");
    assert!(out.contains("RC_NEW=0\n"), "{out}");
}

#[test]
fn swtpm_root_a_versioned_directory_merges_its_newest_and_never_falls_back() {
    let tpm = Swtpm::start();
    let t = tempfile::tempdir().unwrap();
    let (r, tr) = setup(t.path());
    let v = r.join("var/lib/extensions/foo.raw.v");
    build(t.path(), &v.join("foo_1.9.raw"), "1.9", None);
    build(t.path(), &v.join("foo_1.10.raw"), "1.10", None);
    // An entry for another architecture is never picked, however new.
    build(t.path(), &v.join("foo_7_sparc.raw"), "7", None);
    let (out, err) = run(
        r#"
        $V sysext merge $M; echo "RC1=$?"
        echo "FILE=$(cat $R/usr/share/foo)"
        echo "READ=$($V pcr read 13 --bank sha256 --tpm $S --json)"
        echo "PREDICTED=$($V pcr predict --pcr 13 --bank sha256 --image $R/var/lib/extensions/foo.raw.v/foo_1.10.raw --trust $TR --with-bypass tpm-simulator --json)"
        $V sysext unmerge --root $R
        $V rollback raise foo 2 --root $R >&2
        $V sysext merge $M; echo "RC2=$?"
        test -e $R/usr/share/foo && echo MERGED2
        "#,
        &[],
        &tpm,
        &r,
        &tr,
    );
    assert!(
        out.contains("RC1=0\n") && out.contains("FILE=1.10\n"),
        "{out}"
    );
    // pcr predict for the picked file computes what the merge put into PCR 13 (the version is
    // recorded in the log, not measured).
    let field = |k: &str| -> serde_json::Value {
        serde_json::from_str(out.lines().find_map(|l| l.strip_prefix(k)).unwrap()).unwrap()
    };
    assert_eq!(
        field("PREDICTED=")["banks"]["sha256"],
        field("READ=")["sha256"]["13"],
        "{out}"
    );
    // The pick (1.10) is below the floor: refused, and 1.9 is not merged in its place.
    assert!(out.contains("RC2=1\n") && !out.contains("MERGED2"), "{out}");
    assert!(
        err.contains("foo_1.10.raw") && err.contains("IMAGE_VERSION=1.10 is below the floor 2"),
        "{err}"
    );
}

#[test]
fn swtpm_root_boot_ratchet_key_raises_the_floor_and_the_report_names_rollback() {
    let tpm = Swtpm::start();
    let t = tempfile::tempdir().unwrap();
    let (r, tr) = setup(t.path());
    let img = r.join("var/lib/extensions/foo.raw");
    let (v1, v2) = (t.path().join("v1/foo.raw"), t.path().join("v2/foo.raw"));
    build(t.path(), &v1, "1", None);
    build(t.path(), &v2, "2", None);
    std::fs::create_dir_all(img.parent().unwrap()).unwrap();
    std::fs::copy(&v2, &img).unwrap();
    let cfg = t.path().join("boot.toml");
    let report = t.path().join("boot.json");
    write(
        &cfg,
        &format!(
            "root = {:?}\ntrust = [{:?}]\ntpm = {:?}\ndangerous-tpm-simulator = true\n\
             event-log = {:?}\nintegrity = \"userspace\"\nclasses = [\"sysext\"]\nratchet = true\n",
            r.to_str().unwrap(),
            tr.to_str().unwrap(),
            tpm.spec(),
            t.path().join("tpm2-measure.log").to_str().unwrap()
        ),
    );
    let (out, err) = run(
        r#"
        $V boot --config $C --report $J; echo "RC2=$?"
        echo "VERSION2=$(grep -o '"version": *"[^"]*"' $J | sed 's/.*"\([^"]*\)"$/\1/')"
        $V sysext unmerge --root $R
        cp $V1 $R/var/lib/extensions/foo.raw
        $V boot --config $C --report $J; echo "RC1=$?"
        test -e $R/usr/share/foo && echo MERGED1
        "#,
        &[("V1", &v1), ("C", &cfg), ("J", &report)],
        &tpm,
        &r,
        &tr,
    );
    assert!(out.contains("RC2=0\n"), "{out}");
    assert!(
        out.contains("VERSION2=2\n"),
        "the report names the accepted version: {out}"
    );
    assert!(
        err.contains("--ratchet: floor of sysext foo set to 2"),
        "{err}"
    );
    assert!(!out.contains("MERGED1"), "{out}");
    let rep: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let foo = &rep["images"][0];
    assert_eq!(foo["status"], "rejected", "{rep}");
    let reason = foo["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("rollback") && reason.contains("IMAGE_VERSION=1 is below the floor 2"),
        "{reason}"
    );
}
