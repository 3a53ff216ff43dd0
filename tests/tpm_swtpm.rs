//! `verity measure`, `pcr read|replay|predict` and `log show` against a real software TPM (one
//! swtpm per test), with tpm2-tools, jq and openssl as the independent oracles.

#[path = "support/swtpm.rs"]
mod swtpm;

use std::path::Path;
use std::process::{Command, Output};
use swtpm::{hex_decode, hex_encode, openssl_digest, sha1_only_state, Swtpm};

const ROOT_A: &str = "4f8b4e5a2f6c0d9e1b7a3c5d9e0f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b";
const ROOT_B: &str = "0d9e1b7a3c5d9e0f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b4f8b4e5a2f6c";
const SIGNER: &str = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90";

fn verity(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_verity"))
        .args(args)
        .output()
        .expect("run verity")
}

fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "verity failed: {}\n{}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn measure(tpm: &Swtpm, log: &Path, class: &str, name: &str, root: &str, signer: &str) -> Output {
    verity(&[
        "measure",
        "--class",
        class,
        "--name",
        name,
        "--root-hash",
        root,
        "--signer",
        signer,
        "--tpm",
        &tpm.spec(),
        "--event-log",
        log.to_str().unwrap(),
        "--json",
    ])
}

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(p).unwrap().mode() & 0o7777
}

#[test]
fn swtpm_measure_matches_predict_in_every_active_bank() {
    let tpm = Swtpm::start();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("run/log/systemd/tpm2-measure.log");
    let banks = tpm.active_banks();
    assert_eq!(banks, ["sha1", "sha256", "sha384", "sha512"]);

    let out = json(&ok(&measure(&tpm, &log, "sysext", "foo", ROOT_A, SIGNER)));
    assert_eq!(out["pcr"], 13);
    assert_eq!(out["event"], format!("sysext:foo:{ROOT_A}:{SIGNER}"));
    ok(&measure(&tpm, &log, "sysext", "bar", ROOT_B, "unsigned"));
    ok(&measure(&tpm, &log, "confext", "etc", ROOT_B, SIGNER));
    assert_eq!(mode(&log), 0o600);

    let pred13 = json(&ok(&verity(&[
        "pcr",
        "predict",
        "--pcr",
        "13",
        "--event",
        &format!("sysext:foo:{ROOT_A}:{SIGNER}"),
        "--class",
        "sysext",
        "--name",
        "bar",
        "--root-hash",
        ROOT_B,
        "--json",
    ])));
    let pred12 = json(&ok(&verity(&[
        "pcr",
        "predict",
        "--pcr",
        "12",
        "--event",
        &format!("confext:etc:{ROOT_B}:{SIGNER}"),
        "--json",
    ])));
    for bank in &banks {
        assert_eq!(
            pred13["banks"][bank].as_str().unwrap(),
            hex_encode(&tpm.pcrread(bank, 13)),
            "PCR 13 {bank}"
        );
        assert_eq!(
            pred12["banks"][bank].as_str().unwrap(),
            hex_encode(&tpm.pcrread(bank, 12)),
            "PCR 12 {bank}"
        );
    }

    // Independently of verity: sha256 PCR 12 == sha256(0^32 || sha256(event string)), per openssl.
    let d = openssl_digest(
        "sha256",
        format!("confext:etc:{ROOT_B}:{SIGNER}").as_bytes(),
        dir.path(),
    );
    let want = openssl_digest("sha256", &[vec![0u8; 32], d].concat(), dir.path());
    assert_eq!(tpm.pcrread("sha256", 12), want);

    // Predicting onward from the current value (--base) matches a further measurement.
    let base = hex_encode(&tpm.pcrread("sha384", 13));
    let pred = json(&ok(&verity(&[
        "pcr",
        "predict",
        "--pcr",
        "13",
        "--bank",
        "sha384",
        "--base",
        &base,
        "--class",
        "sysext",
        "--name",
        "baz",
        "--root-hash",
        ROOT_A,
        "--json",
    ])));
    ok(&measure(&tpm, &log, "sysext", "baz", ROOT_A, "unsigned"));
    assert_eq!(
        pred["banks"]["sha384"].as_str().unwrap(),
        hex_encode(&tpm.pcrread("sha384", 13))
    );

    // `pcr read` agrees with tpm2_pcrread.
    let read = json(&ok(&verity(&[
        "pcr",
        "read",
        "12",
        "13",
        "17",
        "--tpm",
        &tpm.spec(),
        "--json",
    ])));
    for bank in &banks {
        for p in [12, 13, 17] {
            assert_eq!(
                read[bank][p.to_string()].as_str().unwrap(),
                hex_encode(&tpm.pcrread(bank, p)),
                "{bank}:{p}"
            );
        }
    }
}

#[test]
fn swtpm_event_log_parses_with_jq_and_replays() {
    let tpm = Swtpm::start();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("tpm2-measure.log");
    ok(&measure(&tpm, &log, "sysext", "foo", ROOT_A, SIGNER));
    ok(&measure(&tpm, &log, "nextroot", "root", ROOT_B, "unsigned"));

    let jq = Command::new("jq")
        .args([
            "--seq",
            "--slurp",
            "-e",
            "-c",
            r#"length == 2 and all(.[];
                 (.pcr | type) == "number" and .content_type == "systemd"
                 and (.content.string | type) == "string"
                 and (.content.eventType | type) == "string"
                 and (.content.timestamp | type) == "number"
                 and (.digests | length) == 4
                 and all(.digests[]; (.hashAlg | type) == "string" and (.digest | type) == "string"))
               and .[1].pcr == 15 and .[1].content.eventType == "nextroot""#,
        ])
        .arg(&log)
        .output()
        .expect("jq is installed (.ci/apt-packages)");
    assert!(jq.status.success(), "jq: {jq:?}");
    // With --seq, jq also writes RS before each output.
    let rs = |c: char| c == '\u{1e}' || c.is_whitespace();
    assert_eq!(String::from_utf8_lossy(&jq.stdout).trim_matches(rs), "true");

    // The sha256 digest of each record is sha256 of its string, per openssl.
    let pairs = Command::new("jq")
        .args([
            "--seq",
            "--slurp",
            "-r",
            r#".[] | .content.string + " " + (.digests[] | select(.hashAlg=="sha256").digest)"#,
        ])
        .arg(&log)
        .output()
        .unwrap();
    let text = String::from_utf8(pairs.stdout).unwrap();
    assert_eq!(text.lines().count(), 2);
    for line in text.lines() {
        let (s, d) = line.trim_matches(rs).rsplit_once(' ').unwrap();
        assert_eq!(
            openssl_digest("sha256", s.as_bytes(), dir.path()),
            hex_decode(d)
        );
    }

    let rep = json(&ok(&verity(&[
        "pcr",
        "replay",
        "--event-log",
        log.to_str().unwrap(),
        "--tpm",
        &tpm.spec(),
        "--json",
    ])));
    assert_eq!(rep["ok"], true, "{rep}");
    assert_eq!(rep["pcrs"].as_array().unwrap().len(), 8);

    let show = json(&ok(&verity(&[
        "log",
        "show",
        "--event-log",
        log.to_str().unwrap(),
        "--json",
    ])));
    assert_eq!(show[1]["recnum"], 1);
    assert_eq!(
        show[0]["content"]["string"],
        format!("sysext:foo:{ROOT_A}:{SIGNER}")
    );

    // An extend that bypasses the log: replay fails (exit 1) and names the first PCR 13 record.
    let ext = tpm.tool(
        "tpm2_pcrextend",
        &[&format!("13:sha256={}", hex_encode(&[7u8; 32]))],
    );
    assert!(ext.status.success(), "{ext:?}");
    let rep = verity(&[
        "pcr",
        "replay",
        "--event-log",
        log.to_str().unwrap(),
        "--tpm",
        &tpm.spec(),
    ]);
    assert_eq!(rep.status.code(), Some(1), "{rep:?}");
    let err = String::from_utf8_lossy(&rep.stderr);
    assert!(
        err.contains("first record that does not fit: #0 (PCR 13"),
        "{err}"
    );
}

#[test]
fn swtpm_concurrent_measurers_leave_a_log_that_replays() {
    let tpm = Swtpm::start();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("tpm2-measure.log");
    let per_worker = 6;
    std::thread::scope(|s| {
        for w in 0..2 {
            let (tpm, log) = (&tpm, &log);
            s.spawn(move || {
                for i in 0..per_worker {
                    let name = format!("w{w}i{i}");
                    let class = if i % 2 == 0 { "sysext" } else { "confext" };
                    ok(&measure(tpm, log, class, &name, ROOT_A, "unsigned"));
                }
            });
        }
    });
    let rep = json(&ok(&verity(&[
        "pcr",
        "replay",
        "--event-log",
        log.to_str().unwrap(),
        "--tpm",
        &tpm.spec(),
        "--json",
    ])));
    assert_eq!(rep["ok"], true, "{rep}");
    assert_eq!(rep["records"], 2 * per_worker);
    let show = json(&ok(&verity(&[
        "log",
        "show",
        "--event-log",
        log.to_str().unwrap(),
        "--json",
    ])));
    let mut names: Vec<String> = show
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r["content"]["string"]
                .as_str()
                .unwrap()
                .split(':')
                .nth(1)
                .unwrap()
                .to_string()
        })
        .collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), 2 * per_worker);
    assert_eq!(mode(&log), 0o600);
}

#[test]
fn swtpm_torn_log_is_refused_and_the_pcr_stays() {
    let tpm = Swtpm::start();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("tpm2-measure.log");
    ok(&measure(&tpm, &log, "sysext", "foo", ROOT_A, SIGNER));
    let before = tpm.pcrread("sha256", 13);
    let bytes = std::fs::read(&log).unwrap();

    // The sticky bit left by a writer that died between extend and append.
    std::fs::set_permissions(&log, std::os::unix::fs::PermissionsExt::from_mode(0o1600)).unwrap();
    let o = measure(&tpm, &log, "sysext", "bar", ROOT_B, SIGNER);
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    assert!(o.stdout.is_empty());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("is torn"),
        "{o:?}"
    );
    assert_eq!(tpm.pcrread("sha256", 13), before);
    assert_eq!(std::fs::read(&log).unwrap(), bytes);
    let o = verity(&[
        "pcr",
        "replay",
        "--event-log",
        log.to_str().unwrap(),
        "--tpm",
        &tpm.spec(),
    ]);
    assert_eq!(o.status.code(), Some(2), "{o:?}");

    // Half a record at the end.
    std::fs::set_permissions(&log, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let mut half = bytes.clone();
    half.extend_from_slice(&bytes[..bytes.len() / 2]);
    std::fs::write(&log, &half).unwrap();
    let o = measure(&tpm, &log, "sysext", "bar", ROOT_B, SIGNER);
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("ends mid-record"),
        "{o:?}"
    );
    assert_eq!(tpm.pcrread("sha256", 13), before);
    let o = verity(&["log", "show", "--event-log", log.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{o:?}");
}

#[test]
fn swtpm_killed_tpm_is_an_error_and_the_log_is_untouched() {
    let mut tpm = Swtpm::start();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("tpm2-measure.log");
    ok(&measure(&tpm, &log, "sysext", "foo", ROOT_A, SIGNER));
    let bytes = std::fs::read(&log).unwrap();
    tpm.kill();
    let o = measure(&tpm, &log, "sysext", "bar", ROOT_B, SIGNER);
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    assert!(o.stdout.is_empty());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("cannot reach the TPM"), "{err}");
    assert_eq!(std::fs::read(&log).unwrap(), bytes);
    assert_eq!(
        mode(&log),
        0o600,
        "nothing was extended: the log must not be marked torn"
    );
    let o = verity(&["pcr", "read", "13", "--tpm", &tpm.spec()]);
    assert_eq!(o.status.code(), Some(2), "{o:?}");
}

#[test]
fn swtpm_without_sha256_bank_is_refused() {
    let tpm = Swtpm::start_with_state(sha1_only_state());
    assert_eq!(tpm.active_banks(), ["sha1"]);
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("tpm2-measure.log");
    let o = measure(&tpm, &log, "sysext", "foo", ROOT_A, SIGNER);
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    assert!(o.stdout.is_empty());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("no active sha256 PCR bank (active: sha1)"),
        "{err}"
    );
    assert_eq!(tpm.pcrread("sha1", 13), vec![0; 20]);
    assert_eq!(std::fs::read(&log).unwrap(), b"");
    assert_eq!(mode(&log), 0o600);
}

#[test]
fn swtpm_sha256_bank_deallocated_with_tpm2_pcrallocate_is_refused() {
    let tpm = Swtpm::start();
    let a = tpm.tool(
        "tpm2_pcrallocate",
        &["sha1:all+sha256:none+sha384:none+sha512:none"],
    );
    assert!(a.status.success(), "{a:?}");
    let tpm = tpm.restart();
    assert_eq!(tpm.active_banks(), ["sha1"]);
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("tpm2-measure.log");
    let o = measure(&tpm, &log, "confext", "etc", ROOT_A, SIGNER);
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("no active sha256"),
        "{o:?}"
    );
    assert_eq!(tpm.pcrread("sha1", 12), vec![0; 20]);
}

/// A signed sysext built by `verity image build` (mkfs.erofs), with a TEST-ONLY key.
fn signed_image(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf, String) {
    let keys = Path::new(env!("CARGO_MANIFEST_DIR")).join("keys");
    let src = dir.join("src");
    std::fs::create_dir_all(src.join("usr/lib/extension-release.d")).unwrap();
    std::fs::create_dir_all(src.join("usr/bin")).unwrap();
    std::fs::write(
        src.join("usr/lib/extension-release.d/extension-release.tools"),
        "ID=_any\n",
    )
    .unwrap();
    std::fs::write(src.join("usr/bin/hello"), vec![0x5a; 100_000]).unwrap();
    let trust = dir.join("trust");
    std::fs::create_dir_all(&trust).unwrap();
    std::fs::copy(keys.join("rsa2048.crt"), trust.join("rsa2048.crt")).unwrap();
    let img = dir.join("tools.raw");
    let out = ok(&verity(&[
        "image",
        "build",
        src.to_str().unwrap(),
        "-o",
        img.to_str().unwrap(),
        "--class",
        "sysext",
        "--key",
        keys.join("rsa2048.key").to_str().unwrap(),
        "--cert",
        keys.join("rsa2048.crt").to_str().unwrap(),
        "--json",
    ]));
    let root = json(&out)["root_hash"].as_str().unwrap().to_string();
    (img, trust, root)
}

#[test]
fn swtpm_mkfs_predict_image_matches_measure() {
    let tpm = Swtpm::start();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("tpm2-measure.log");
    let (img, trust, root) = signed_image(dir.path());

    // The signer field is sha256 of the certificate's DER, computed here with openssl.
    let der = Command::new("openssl")
        .args(["x509", "-outform", "DER", "-in"])
        .arg(trust.join("rsa2048.crt"))
        .output()
        .expect("openssl");
    assert!(der.status.success());
    let fpr = hex_encode(&openssl_digest("sha256", &der.stdout, dir.path()));

    let pred = json(&ok(&verity(&[
        "pcr",
        "predict",
        "--pcr",
        "13",
        "--image",
        img.to_str().unwrap(),
        "--trust",
        trust.to_str().unwrap(),
        "--json",
    ])));
    assert_eq!(pred["events"][0], format!("sysext:tools:{root}:{fpr}"));
    ok(&measure(&tpm, &log, "sysext", "tools", &root, &fpr));
    for bank in tpm.active_banks() {
        assert_eq!(
            pred["banks"][&bank].as_str().unwrap(),
            hex_encode(&tpm.pcrread(&bank, 13)),
            "{bank}"
        );
    }

    // Without the certificate the image does not verify, so there is nothing to predict.
    let empty = dir.path().join("empty-trust");
    std::fs::create_dir_all(&empty).unwrap();
    let o = verity(&[
        "pcr",
        "predict",
        "--pcr",
        "13",
        "--image",
        img.to_str().unwrap(),
        "--trust",
        empty.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("never measured"),
        "{o:?}"
    );
}
