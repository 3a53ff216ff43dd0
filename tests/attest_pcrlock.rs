//! `verity pcr predict --format pcrlock` against systemd-pcrlock 257 itself: after verity measured
//! images into a software TPM, systemd-pcrlock (Debian trixie's, from tests/oracle/systemd-257,
//! talking to the swtpm through libtss2's swtpm TCTI,
//! with a firmware log of only the spec-ID header) matches every PCR 13 record to our components
//! and keeps PCR 13 in its policy; without them it drops PCR 13 as unexplained. The files are also
//! checked against the uapi format by recomputing PCR 13 from them with openssl as the hash.
//! Needs swtpm, tpm2-tools, openssl, apt-get (network to the Debian mirror on the first run).

#[path = "support/swtpm.rs"]
mod swtpm;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use swtpm::{hex_decode, hex_encode, openssl_digest, Swtpm};

const BIN: &str = env!("CARGO_BIN_EXE_verity");

fn ok(o: Output, what: &str) -> String {
    assert!(
        o.status.success(),
        "{what}: {}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn verity(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().unwrap()
}

/// A wrapper that runs systemd-pcrlock 257 (tests/oracle/systemd-257 fetches it once).
fn systemd_pcrlock() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let o = Command::new(root.join("tests/oracle/systemd-257"))
        .args(["path", "systemd-pcrlock"])
        .output()
        .expect("run tests/oracle/systemd-257");
    PathBuf::from(ok(o, "systemd 257 oracle").trim())
}

/// A TCG crypto-agile firmware log holding only its Spec ID header event (no measurements):
/// systemd-pcrlock needs a firmware log to start, and a machine without firmware has this one.
fn empty_firmware_log() -> Vec<u8> {
    let algs: [(u16, u16); 4] = [(0x4, 20), (0xb, 32), (0xc, 48), (0xd, 64)];
    let mut ev = b"Spec ID Event03\0".to_vec();
    ev.extend_from_slice(&0u32.to_le_bytes()); // platformClass
    ev.extend_from_slice(&[0, 2, 0, 2]); // minor, major, errata, uintnSize
    ev.extend_from_slice(&(algs.len() as u32).to_le_bytes());
    for (a, s) in algs {
        ev.extend_from_slice(&a.to_le_bytes());
        ev.extend_from_slice(&s.to_le_bytes());
    }
    ev.push(0); // vendorInfoSize
    let mut log = Vec::new();
    log.extend_from_slice(&0u32.to_le_bytes()); // PCR 0
    log.extend_from_slice(&3u32.to_le_bytes()); // EV_NO_ACTION
    log.extend_from_slice(&[0; 20]);
    log.extend_from_slice(&(ev.len() as u32).to_le_bytes());
    log.extend_from_slice(&ev);
    log
}

fn pcrlock(sd: &Path, tpm: &Swtpm, fw: &Path, log: &Path, comps: &Path, verb: &[&str]) -> String {
    let o = Command::new(sd)
        .args(verb)
        .arg("--pcr=13")
        .arg(format!("--components={}", comps.display()))
        .env("SYSTEMD_TPM2_DEVICE", tpm.spec())
        .env("SYSTEMD_MEASURE_LOG_FIRMWARE", fw)
        .env("SYSTEMD_MEASURE_LOG_USERSPACE", log)
        .env("SYSTEMD_COLORS", "0")
        .output()
        .unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn swtpm_pcrlock_257_keeps_pcr13_with_predicted_components() {
    let sd = systemd_pcrlock();
    let tpm = Swtpm::start();
    let t = tempfile::tempdir().unwrap();
    let log = t.path().join("tpm2-measure.log");
    let fw = t.path().join("firmware.log");
    std::fs::write(&fw, empty_firmware_log()).unwrap();
    // Three signed images: tools v1 and v2 (the release allows either) and zlib.
    let keys = Path::new(env!("CARGO_MANIFEST_DIR")).join("keys");
    let trust = t.path().join("trust");
    std::fs::create_dir_all(&trust).unwrap();
    std::fs::copy(keys.join("leaf.crt"), trust.join("leaf.crt")).unwrap();
    let image = |dir: &str, name: &str, content: &str| -> (PathBuf, String) {
        let src = t.path().join(format!("src-{dir}"));
        let rel = src.join("usr/lib/extension-release.d");
        std::fs::create_dir_all(&rel).unwrap();
        std::fs::write(rel.join(format!("extension-release.{name}")), "ID=_any\n").unwrap();
        std::fs::create_dir_all(src.join("usr/share")).unwrap();
        std::fs::write(src.join(format!("usr/share/{name}")), content).unwrap();
        let out = t.path().join(dir).join(format!("{name}.raw"));
        std::fs::create_dir_all(out.parent().unwrap()).unwrap();
        let img = out.to_str().unwrap();
        ok(
            verity(&[
                "image",
                "build",
                "--class",
                "sysext",
                "--key",
                keys.join("leaf.key").to_str().unwrap(),
                "--cert",
                keys.join("leaf.crt").to_str().unwrap(),
                "-o",
                img,
                src.to_str().unwrap(),
            ]),
            "image build",
        );
        let j = ok(
            verity(&[
                "pcr",
                "predict",
                "--pcr",
                "13",
                "--bank",
                "sha256",
                "--trust",
                trust.to_str().unwrap(),
                "--image",
                img,
                "--json",
            ]),
            "predict event",
        );
        let j: serde_json::Value = serde_json::from_str(&j).unwrap();
        (out, j["events"][0].as_str().unwrap().to_string())
    };
    let (t1, _) = image("v1", "tools", "1\n");
    let (t2, e2) = image("v2", "tools", "2\n");
    let (zl, ez) = image("z", "zlib", "z\n");
    // The host merged tools v2 and zlib, in the merge's name order.
    for ev in [&e2, &ez] {
        let f: Vec<&str> = ev.split(':').collect();
        ok(
            verity(&[
                "measure",
                "--class",
                f[0],
                "--name",
                f[1],
                "--root-hash",
                f[2],
                "--signer",
                f[3],
                "--tpm",
                &tpm.spec(),
                "--event-log",
                log.to_str().unwrap(),
            ]),
            "measure",
        );
    }
    let comps = t.path().join("pcrlock.d");
    let predict = |out: &Path| {
        verity(&[
            "pcr",
            "predict",
            "--format",
            "pcrlock",
            "--trust",
            trust.to_str().unwrap(),
            "--image",
            t1.to_str().unwrap(),
            "--image",
            t2.to_str().unwrap(),
            "--image",
            zl.to_str().unwrap(),
            "--output",
            out.to_str().unwrap(),
        ])
    };
    // Alternatives cannot go into one file.
    let o = predict(&t.path().join("one.pcrlock"));
    assert_eq!(o.status.code(), Some(2), "several versions into one file");
    ok(predict(&comps), "predict pcrlock");
    let v2 = e2.split(':').nth(2).unwrap().to_string();
    let observed = hex_encode(&tpm.pcrread("sha256", 13));

    let out = pcrlock(&sd, &tpm, &fw, &log, &comps, &["predict"]);
    assert!(
        out.contains(
            "PCR 13 (sysexts) matches event log and fully consists of recognized measurements"
        ),
        "{out}"
    );
    assert!(
        out.contains(&observed),
        "pcrlock predicts the TPM's value: {out}"
    );
    let out = pcrlock(&sd, &tpm, &fw, &log, &comps, &["log", "--json=short"]);
    let j: serde_json::Value = serde_json::from_str(out.trim()).expect(&out);
    let comps_seen: Vec<&str> = j["log"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["component"].as_str().unwrap_or("-"))
        .collect();
    assert_eq!(comps_seen.len(), 2, "{out}");
    assert!(
        comps_seen.iter().all(|c| c.contains("-verity-")),
        "every record matched to a verity component: {comps_seen:?}"
    );

    // Without our components, pcrlock cannot explain PCR 13 and leaves it out of its policy.
    let empty = t.path().join("none.d");
    std::fs::create_dir_all(&empty).unwrap();
    let out = pcrlock(&sd, &tpm, &fw, &log, &empty, &["predict"]);
    assert!(
        out.contains("PCR 13 (sysexts) event log contains unrecognized measurements")
            && out.contains("PCRs dropped from protection mask: 13"),
        "{out}"
    );

    // The uapi format, recomputed independently: the chosen variant files, in component order,
    // replay to the TPM's PCR 13 (sha256 by openssl).
    let mut files: Vec<PathBuf> = Vec::new();
    let mut names: Vec<_> = std::fs::read_dir(&comps)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    for n in names {
        if n.is_dir() {
            // tools: the v2 variant is the one the host merged.
            let v = n.join(format!("{}.pcrlock", &v2[..16]));
            assert!(v.exists(), "{} has a variant per version", n.display());
            assert_eq!(std::fs::read_dir(&n).unwrap().count(), 2);
            files.push(v);
        } else {
            files.push(n);
        }
    }
    let mut pcr = vec![0u8; 32];
    for f in files {
        let j: serde_json::Value = serde_json::from_slice(&std::fs::read(&f).unwrap()).unwrap();
        for r in j["records"].as_array().unwrap() {
            assert_eq!(r["pcr"], 13);
            let d = r["digests"]
                .as_array()
                .unwrap()
                .iter()
                .find(|d| d["hashAlg"] == "sha256")
                .expect("a sha256 digest");
            let mut buf = pcr.clone();
            buf.extend(hex_decode(d["digest"].as_str().unwrap()));
            pcr = openssl_digest("sha256", &buf, t.path());
        }
    }
    assert_eq!(hex_encode(&pcr), observed);
}
