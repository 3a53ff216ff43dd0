//! `verity boot` end to end against a software TPM: a boot.toml in a temp root, two images signed by
//! the trusted TEST-ONLY key (one sysext, one confext) and one sysext signed by an untrusted key.
//! The hook must merge the good ones, reject the untrusted one at the signature check, write the
//! report where it is told, exit 1 because the rejected image is required, and leave an event log
//! that `verity pcr replay` matches. Needs root (mounts inside `unshare -m`), swtpm, erofs-utils.

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

/// Builds a signed image of `class` named `name` carrying one file with `content`.
fn image(r: &Path, class: &str, name: &str, key: &str, content: &str) {
    let src = r.parent().unwrap().join(format!("src-{name}"));
    let (top, dir) = if class == "sysext" {
        ("usr", "var/lib/extensions")
    } else {
        ("etc", "var/lib/confexts")
    };
    let rel = if class == "sysext" {
        format!("usr/lib/extension-release.d/extension-release.{name}")
    } else {
        format!("etc/extension-release.d/extension-release.{name}")
    };
    write(&src.join(rel), "ID=_any\n");
    write(&src.join(format!("{top}/share-{name}")), content);
    let out = r.join(dir);
    std::fs::create_dir_all(&out).unwrap();
    let st = Command::new(BIN)
        .args(["image", "build", "--class", class])
        .arg("--key")
        .arg(keys().join(format!("{key}.key")))
        .arg("--cert")
        .arg(keys().join(format!("{key}.crt")))
        .arg("-o")
        .arg(out.join(format!("{name}.raw")))
        .arg(&src)
        .status()
        .unwrap();
    assert!(st.success(), "image build {name}");
}

#[test]
fn root_swtpm_boot_merges_and_reports() {
    let tpm = Swtpm::start();
    let t = tempfile::tempdir().unwrap();
    let r = t.path().join("root");
    write(&r.join("etc/os-release"), "ID=debian\n");
    write(&r.join("usr/share/host"), "h\n");
    let trust = t.path().join("trust");
    std::fs::create_dir_all(&trust).unwrap();
    std::fs::copy(keys().join("rsa2048.crt"), trust.join("rsa2048.crt")).unwrap();
    image(&r, "sysext", "one", "rsa2048", "1\n");
    image(&r, "confext", "conf1", "rsa2048", "c\n");
    image(&r, "sysext", "evil", "other", "x\n");
    let log = t.path().join("tpm2-measure.log");
    let report = t.path().join("boot.json");
    let cfg = t.path().join("boot.toml");
    write(
        &cfg,
        &format!(
            "root = {:?}\ntrust = [{:?}]\ntpm = {:?}\ndangerous-tpm-simulator = true\n\
             event-log = {:?}\nintegrity = \"userspace\"\n\
             required = [\"one\", \"evil\"]\non-failure = \"fail\"\n",
            r.to_str().unwrap(),
            trust.to_str().unwrap(),
            tpm.spec(),
            log.to_str().unwrap()
        ),
    );
    let o = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-uc"])
        .arg(
            r#"
            $V boot --config $C --report $J >&2; echo "EXIT=$?"
            echo "FILES=$(cat $R/usr/share-one $R/etc/share-conf1 | tr '\n' ,)"
            test -e $R/usr/share-evil && echo EVIL_VISIBLE
            $V pcr replay --tpm $S --event-log $L >&2 && echo REPLAY_OK
            "#,
        )
        .env("V", BIN)
        .env("R", &r)
        .env("L", &log)
        .env("S", tpm.spec())
        .env("C", &cfg)
        .env("J", &report)
        .output()
        .expect("unshare (util-linux) must be installed and the test run as root");
    let s = String::from_utf8_lossy(&o.stdout);
    eprintln!("{s}\n{}", String::from_utf8_lossy(&o.stderr));
    assert!(s.contains("EXIT=1\n"), "a required image was rejected");
    assert!(s.contains("FILES=1,c,"), "good images visible when merged");
    assert!(!s.contains("EVIL_VISIBLE"));
    assert!(s.contains("REPLAY_OK"));
    let rep: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(rep["exitCode"].as_i64(), Some(1));
    let images = rep["images"].as_array().unwrap();
    let find = |n: &str| images.iter().find(|i| i["name"] == n).unwrap().clone();
    for (n, pcr) in [("one", 13), ("conf1", 12)] {
        let i = find(n);
        assert_eq!(i["status"], "accepted", "{n}");
        assert_eq!(i["rootHash"].as_str().unwrap().len(), 64, "{n}");
        assert_eq!(i["signer"].as_str().unwrap().len(), 64, "{n}");
        assert_eq!(i["pcr"], pcr, "{n}");
        assert_eq!(i["digest"].as_str().unwrap().len(), 64, "{n}");
        // Issue 15 point 4: where the admission's time went, step by step, in pipeline order.
        let steps: Vec<&str> = i["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["step"].as_str().unwrap())
            .collect();
        assert_eq!(
            steps,
            [
                "open",
                "dissect",
                "verity",
                "signature",
                "mount",
                "release",
                "measure"
            ],
            "{n}: {i}"
        );
        // Copying and checking the data is never free.
        let verity = &i["steps"][2]["micros"];
        assert!(verity.as_u64().unwrap() > 0, "{n}: {i}");
    }
    let timing = rep["timing"].as_array().unwrap();
    assert_eq!(timing.len(), 2, "{rep}");
    for t in timing {
        let (all, overlay) = (
            t["micros"].as_u64().unwrap(),
            t["overlayMicros"].as_u64().unwrap(),
        );
        assert!(overlay > 0 && overlay < all, "{t}");
    }
    assert!(
        rep["micros"].as_u64().unwrap()
            >= timing
                .iter()
                .map(|t| t["micros"].as_u64().unwrap())
                .sum::<u64>()
    );
    let evil = find("evil");
    assert_eq!(evil["status"], "rejected");
    assert!(
        evil["reason"].as_str().unwrap().starts_with("signature"),
        "{evil}"
    );
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(text.matches("\"sysext:one:").count(), 1);
    assert_eq!(text.matches("\"confext:conf1:").count(), 1);
    assert_eq!(text.matches("\"dangerous:tpm-simulator:").count(), 2);
    assert!(!text.contains("evil"));
}

/// A sidecar sysext `NAME.raw` (+ `.verity`, `.roothash`, and `.roothash.p7s` when `key` is given).
fn sidecar(r: &Path, name: &str, key: Option<&str>) {
    let src = r.parent().unwrap().join(format!("src-{name}"));
    write(
        &src.join(format!(
            "usr/lib/extension-release.d/extension-release.{name}"
        )),
        "ID=_any\n",
    );
    write(&src.join(format!("usr/share-{name}")), "x\n");
    let out = r.join("var/lib/extensions");
    std::fs::create_dir_all(&out).unwrap();
    let mut c = Command::new(BIN);
    c.args(["image", "build", "--class", "sysext", "--sidecar", "-o"])
        .arg(out.join(format!("{name}.raw")))
        .arg(&src);
    if let Some(k) = key {
        c.arg("--key")
            .arg(keys().join(format!("{k}.key")))
            .arg("--cert")
            .arg(keys().join(format!("{k}.crt")));
    }
    assert!(c.status().unwrap().success(), "image build {name}");
}

/// The boot hook with the shipped config's policies (its [sysext]/[confext] sections, under our
/// own root, trust, TPM and paths).
fn shipped_policies_config(t: &Path, r: &Path, trust: &Path, tpm: &str, key: &str) -> PathBuf {
    let shipped = include_str!("../src/boot/units/boot.toml");
    let sections = &shipped[shipped.find("\n[sysext]").expect("a [sysext] section")..];
    let cfg = t.join("boot.toml");
    write(
        &cfg,
        &format!(
            "root = {:?}\ntrust = [{:?}]\ntpm = {:?}\n{key}event-log = {:?}\n\
             integrity = \"userspace\"\nrequired = [\"good\"]\non-failure = \"fail\"\n{sections}",
            r.to_str().unwrap(),
            trust.to_str().unwrap(),
            tpm,
            t.join("tpm2-measure.log").to_str().unwrap(),
        ),
    );
    cfg
}

#[test]
fn root_swtpm_point2_shipped_config_refuses_unsigned_and_misnamed_signature_images() {
    let tpm = Swtpm::start();
    let t = tempfile::tempdir().unwrap();
    let r = t.path().join("root");
    write(&r.join("etc/os-release"), "ID=debian\n");
    let trust = t.path().join("trust");
    std::fs::create_dir_all(&trust).unwrap();
    std::fs::copy(keys().join("rsa2048.crt"), trust.join("rsa2048.crt")).unwrap();
    sidecar(&r, "good", Some("rsa2048"));
    // Self-consistent (tree and root hash agree) but unsigned: the image an attacker who can
    // write /var/lib/extensions drops there.
    sidecar(&r, "unsigned", None);
    // Signed, but the signature sits under a name nothing looks for.
    sidecar(&r, "misnamed", Some("rsa2048"));
    let ext = r.join("var/lib/extensions");
    std::fs::rename(
        ext.join("misnamed.roothash.p7s"),
        ext.join("misnamed.raw.p7s"),
    )
    .unwrap();
    let cfg = shipped_policies_config(
        t.path(),
        &r,
        &trust,
        &tpm.spec(),
        "dangerous-tpm-simulator = true\n",
    );
    let report = t.path().join("boot.json");
    let o = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-uc"])
        .arg(
            r#"$V boot --config $C --report $J >&2; echo "EXIT=$?"
            for n in good unsigned misnamed; do test -e $R/usr/share-$n && echo "VISIBLE=$n"; done; true"#,
        )
        .env("V", BIN)
        .env("R", &r)
        .env("C", &cfg)
        .env("J", &report)
        .output()
        .expect("unshare (util-linux) must be installed and the test run as root");
    let s = String::from_utf8_lossy(&o.stdout);
    let err = String::from_utf8_lossy(&o.stderr);
    eprintln!("{s}\n{err}");
    assert!(s.contains("EXIT=0\n"), "the required image is in: {s}");
    assert!(s.contains("VISIBLE=good\n"));
    assert!(
        !s.contains("VISIBLE=unsigned") && !s.contains("VISIBLE=misnamed"),
        "{s}"
    );
    let rep: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let images = rep["images"].as_array().unwrap();
    let find = |n: &str| images.iter().find(|i| i["name"] == n).unwrap().clone();
    assert_eq!(find("good")["status"], "accepted");
    for n in ["unsigned", "misnamed"] {
        let i = find(n);
        assert_eq!(i["status"], "rejected", "{n}");
        let reason = i["reason"].as_str().unwrap();
        let looked = ext.join(format!("{n}.roothash.p7s"));
        assert!(
            reason.starts_with("signature")
                && reason.contains("signature not found")
                && reason.contains(looked.to_str().unwrap()),
            "{n}: {reason}"
        );
    }
    assert!(find("misnamed")["reason"]
        .as_str()
        .unwrap()
        .contains("misnamed.raw.p7s"));
    let text = std::fs::read_to_string(t.path().join("tpm2-measure.log")).unwrap();
    assert!(
        !text.contains("unsigned") && !text.contains("misnamed"),
        "{text}"
    );
}

#[test]
fn swtpm_point7_boot_refuses_a_simulator_unless_the_config_or_flag_allows_it() {
    let tpm = Swtpm::start();
    let t = tempfile::tempdir().unwrap();
    let r = t.path().join("root");
    write(&r.join("etc/os-release"), "ID=debian\n");
    let trust = t.path().join("trust");
    std::fs::create_dir_all(&trust).unwrap();
    let cfg = shipped_policies_config(t.path(), &r, &trust, &tpm.spec(), "");
    let report = t.path().join("boot.json");
    let o = Command::new(BIN)
        .arg("boot")
        .arg("--config")
        .arg(&cfg)
        .arg("--report")
        .arg(&report)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains(":3: tpm = ") && err.contains("dangerous-tpm-simulator = true"),
        "{err}"
    );
    assert!(!report.exists(), "the hook did not run");
    assert!(!t.path().join("tpm2-measure.log").exists());
    assert_eq!(tpm.pcrread("sha256", 13), vec![0u8; 32]);
}
