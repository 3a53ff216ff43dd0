//! Merges measured into a real software TPM: one PCR extend and one event-log record per merged
//! image (with the log-only record of the `--dangerous-tpm-simulator` bypass a simulator requires),
//! made before the overlay appears, and `verity pcr replay` agrees with the TPM after merge and after
//! refresh; `verity pcr predict` computes the same values, also for a refresh whose
//! `--dangerous-skip-release-check` bypass is extended into the PCR. Without
//! `--dangerous-tpm-simulator` a simulator is refused before anything is measured. Needs root
//! (mounts inside `unshare -m`), swtpm, erofs-utils and util-linux.

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

fn ddi(r: &Path, name: &str, file: &str) {
    let src = r.parent().unwrap().join(format!("src-{name}"));
    write(
        &src.join(format!(
            "usr/lib/extension-release.d/extension-release.{name}"
        )),
        "ID=_any\n",
    );
    write(&src.join(format!("usr/share/{name}")), file);
    let dir = r.join("var/lib/extensions");
    std::fs::create_dir_all(&dir).unwrap();
    let st = Command::new(BIN)
        .args(["image", "build", "--class", "sysext"])
        .arg("--key")
        .arg(keys().join("leaf.key"))
        .arg("--cert")
        .arg(keys().join("leaf.crt"))
        .arg("-o")
        .arg(dir.join(format!("{name}.raw")))
        .arg(&src)
        .status()
        .unwrap();
    assert!(st.success());
}

#[test]
fn swtpm_root_merge_and_refresh_measure_each_image_once_and_replay() {
    let tpm = Swtpm::start();
    let t = tempfile::tempdir().unwrap();
    let r = t.path().join("root");
    write(&r.join("etc/os-release"), "ID=debian\n");
    write(&r.join("usr/share/host"), "h\n");
    let trust = t.path().join("trust");
    std::fs::create_dir_all(&trust).unwrap();
    std::fs::copy(keys().join("leaf.crt"), trust.join("leaf.crt")).unwrap();
    ddi(&r, "one", "1\n");
    ddi(&r, "two", "2\n");
    let log = t.path().join("tpm2-measure.log");
    let m = format!(
        "--root {} --trust {} --tpm {} --dangerous-tpm-simulator --event-log {}",
        r.display(),
        trust.display(),
        tpm.spec(),
        log.display()
    );
    let o = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-euc"])
        .arg(
            r#"
            $V sysext merge $M >&2
            echo "FILES=$(cat $R/usr/share/one $R/usr/share/two | tr '\n' ,)"
            echo "AFTER_MERGE=$(grep -c '"eventType":"sysext"' $L)"
            $V pcr replay --tpm $S --event-log $L >&2 && echo REPLAY1_OK
            E=$R/var/lib/extensions
            P="$V pcr predict --pcr 13 --bank sha256 --image $E/one.raw --image $E/two.raw --trust $TR --json"
            echo "PREDICTED=$($P --with-bypass tpm-simulator)"
            READ1=$($V pcr read 13 --bank sha256 --tpm $S --json)
            echo "READ=$READ1"
            $V sysext refresh $M --dangerous-skip-release-check >&2
            BASE=$(echo "$READ1" | sed 's/.*"13":"\([0-9a-f]*\)".*/\1/')
            echo "PREDICTED2=$($P --base $BASE --with-bypass skip-release-check --with-bypass tpm-simulator)"
            echo "READ2=$($V pcr read 13 --bank sha256 --tpm $S --json)"
            echo "AFTER_REFRESH=$(grep -c '"eventType":"sysext"' $L)"
            $V pcr replay --tpm $S --event-log $L >&2 && echo REPLAY2_OK
            $V sysext unmerge --root $R >&2
            "#,
        )
        .env("V", BIN)
        .env("R", &r)
        .env("L", &log)
        .env("S", tpm.spec())
        .env("TR", &trust)
        .env("M", m)
        .output()
        .expect("unshare (util-linux) must be installed and the test run as root");
    let s = String::from_utf8_lossy(&o.stdout);
    eprintln!("{s}\n{}", String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success());
    assert!(s.contains("FILES=1,2,"));
    assert!(s.contains("AFTER_MERGE=2\n"), "one record per merged image");
    assert!(s.contains("REPLAY1_OK"));
    // pcr predict, told about the bypass, computes what the merge put into PCR 13.
    let field = |k: &str| -> serde_json::Value {
        serde_json::from_str(s.lines().find_map(|l| l.strip_prefix(k)).unwrap()).unwrap()
    };
    // The simulator's record moves no PCR: the prediction is the two image events.
    let predicted = field("PREDICTED=");
    assert_eq!(
        predicted["events"].as_array().unwrap().len(),
        2,
        "{predicted}"
    );
    assert_eq!(predicted["banks"]["sha256"], field("READ=")["sha256"]["13"]);
    // The refresh's release-check bypass is extended before each image: four more events.
    let predicted = field("PREDICTED2=");
    let evs = predicted["events"].as_array().unwrap();
    assert_eq!(evs.len(), 4, "{predicted}");
    assert!(evs[0]
        .as_str()
        .unwrap()
        .starts_with("dangerous:skip-release-check:sysext:one:"));
    assert_eq!(
        predicted["banks"]["sha256"],
        field("READ2=")["sha256"]["13"]
    );
    assert!(
        s.contains("AFTER_REFRESH=4\n"),
        "refresh measures what it merges"
    );
    assert!(s.contains("REPLAY2_OK"));
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(text.matches("\"sysext:one:").count(), 2);
    assert_eq!(text.matches("\"sysext:two:").count(), 2);
    // Each measurement is preceded by its simulator bypass record, in the same PCR.
    for n in ["one", "two"] {
        assert_eq!(
            text.matches(&format!("\"dangerous:tpm-simulator:sysext:{n}:"))
                .count(),
            2,
            "{text}"
        );
    }
}

#[test]
fn swtpm_root_point7_merge_into_a_simulator_needs_the_dangerous_flag() {
    let tpm = Swtpm::start();
    let t = tempfile::tempdir().unwrap();
    let r = t.path().join("root");
    write(&r.join("etc/os-release"), "ID=debian\n");
    let trust = t.path().join("trust");
    std::fs::create_dir_all(&trust).unwrap();
    std::fs::copy(keys().join("leaf.crt"), trust.join("leaf.crt")).unwrap();
    ddi(&r, "one", "1\n");
    let log = t.path().join("tpm2-measure.log");
    for verb in ["merge", "refresh"] {
        let o = Command::new("unshare")
            .args(["-m", "--propagation", "private", "sh", "-uc"])
            .arg(
                r#"$V sysext $VERB --root $R --trust $TR --tpm $S --event-log $L; echo "RC=$?"
                test -e $R/usr/share/one && echo MERGED; true"#,
            )
            .env("V", BIN)
            .env("VERB", verb)
            .env("R", &r)
            .env("TR", &trust)
            .env("S", tpm.spec())
            .env("L", &log)
            .output()
            .expect("unshare (util-linux) must be installed and the test run as root");
        let out = String::from_utf8_lossy(&o.stdout);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(out.contains("RC=2\n"), "{verb}: {out}{err}");
        assert!(!out.contains("MERGED"), "{verb} merged anyway");
        assert!(
            err.contains("is a simulator") && err.contains("--dangerous-tpm-simulator"),
            "{verb}: {err}"
        );
    }
    assert!(!log.exists(), "nothing may be measured");
    assert_eq!(tpm.pcrread("sha256", 13), vec![0u8; 32]);
}
