//! The TPM side of rollback protection on a real software TPM (one swtpm per test): the epoch's
//! NV counter (`verity rollback epoch init|advance|show`), cross-checked with tpm2_nvread and
//! tpm2_nvreadpublic, and a floor lowering measured into PCR 13 and the event log, cross-checked
//! with tpm2_pcrread, openssl and `verity pcr replay`.

#[path = "support/swtpm.rs"]
mod swtpm;

use std::process::{Command, Output};
use swtpm::{hex_encode, openssl_digest, Swtpm};

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

fn epoch(tpm: &Swtpm, verb: &str) -> serde_json::Value {
    let out = ok(&verity(&[
        "rollback",
        "epoch",
        verb,
        "--tpm",
        &tpm.spec(),
        "--json",
    ]));
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

/// The 8-byte big-endian value of an NV index, read by tpm2_nvread.
fn nvread(tpm: &Swtpm, index: &str) -> u64 {
    let o = tpm.tool("tpm2_nvread", &[index]);
    assert!(o.status.success(), "tpm2_nvread {index}: {o:?}");
    let b: [u8; 8] = o.stdout.as_slice().try_into().expect("8 bytes");
    u64::from_be_bytes(b)
}

fn tool_ok(tpm: &Swtpm, name: &str, args: &[&str]) {
    let o = tpm.tool(name, args);
    assert!(o.status.success(), "{name} {args:?}: {o:?}");
}

#[test]
fn swtpm_epoch_init_advance_show_match_tpm2_nvread() {
    let tpm = Swtpm::start();
    assert_eq!(epoch(&tpm, "show")["epoch"], serde_json::Value::Null);

    // A counter that lived and died before: the TPM starts every new counter above it, which is
    // why the epoch is counted from a base.
    tool_ok(
        &tpm,
        "tpm2_nvdefine",
        &[
            "0x01800100",
            "-C",
            "o",
            "-s",
            "8",
            "-a",
            "ownerwrite|ownerread|authread|nt=counter",
        ],
    );
    for _ in 0..5 {
        tool_ok(&tpm, "tpm2_nvincrement", &["-C", "o", "0x01800100"]);
    }
    tool_ok(&tpm, "tpm2_nvundefine", &["-C", "o", "0x01800100"]);

    let e = epoch(&tpm, "init");
    assert_eq!(e["epoch"], 0);
    let counter = nvread(&tpm, "0x01900000");
    assert!(
        counter > 5,
        "a new counter starts above the old one: {counter}"
    );
    assert_eq!(e["counter"], counter);
    assert_eq!(nvread(&tpm, "0x01900001"), counter);
    // The index really is a counter, written only with owner authorisation.
    let o = tpm.tool("tpm2_nvreadpublic", &["0x01900000"]);
    let public = String::from_utf8_lossy(&o.stdout);
    assert!(
        public.contains("nt=0x1") && public.contains("ownerwrite"),
        "{public}"
    );
    assert!(!public.contains("authwrite"), "{public}");
    // A counter cannot be written back to zero, only incremented.
    let zeros = tpm.state.path().join("zeros");
    std::fs::write(&zeros, [0u8; 8]).unwrap();
    let o = tpm.tool(
        "tpm2_nvwrite",
        &["0x01900000", "-C", "o", "-i", zeros.to_str().unwrap()],
    );
    assert!(!o.status.success(), "{o:?}");
    assert_eq!(nvread(&tpm, "0x01900000"), counter);

    // init again keeps it.
    assert_eq!(epoch(&tpm, "init"), e);
    let e1 = epoch(&tpm, "advance");
    assert_eq!(e1["epoch"], 1);
    assert_eq!(nvread(&tpm, "0x01900000"), counter + 1);
    // Someone increments it behind our back: the epoch only grows.
    tool_ok(&tpm, "tpm2_nvincrement", &["-C", "o", "0x01900000"]);
    assert_eq!(epoch(&tpm, "show")["epoch"], 2);
    assert_eq!(epoch(&tpm, "show")["base"], counter);

    // A state the TPM cannot have reached through us: the base deleted. Fail closed.
    tool_ok(&tpm, "tpm2_nvundefine", &["-C", "o", "0x01900001"]);
    let o = verity(&["rollback", "epoch", "show", "--tpm", &tpm.spec()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("incomplete"),
        "{o:?}"
    );
}

#[test]
fn swtpm_epoch_refuses_a_foreign_index_and_an_absent_tpm() {
    let tpm = Swtpm::start();
    tool_ok(
        &tpm,
        "tpm2_nvdefine",
        &[
            "0x01900000",
            "-C",
            "o",
            "-s",
            "8",
            "-a",
            "ownerwrite|ownerread|authread",
        ],
    );
    for verb in ["show", "init", "advance"] {
        let o = verity(&["rollback", "epoch", verb, "--tpm", &tpm.spec()]);
        assert_eq!(o.status.code(), Some(2), "{verb}");
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("not a counter"),
            "{o:?}"
        );
    }
    let o = verity(&[
        "rollback",
        "epoch",
        "show",
        "--tpm",
        &tpm.spec(),
        "--nv-index",
        "0x01000000",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("owner range"),
        "{o:?}"
    );
    let spec = tpm.spec();
    drop(tpm);
    let o = verity(&["rollback", "epoch", "show", "--tpm", &spec]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn swtpm_lowering_is_measured_into_pcr_13_and_replays() {
    let tpm = Swtpm::start();
    let t = tempfile::tempdir().unwrap();
    let root = t.path().to_str().unwrap();
    let log = t.path().join("tpm2-measure.log");
    let log_s = log.to_str().unwrap();
    ok(&verity(&[
        "rollback", "raise", "foo", "2.0", "--root", root,
    ]));
    let o = verity(&[
        "rollback",
        "lower",
        "foo",
        "1.5",
        "--dangerous-lower-floor",
        "--root",
        root,
        "--tpm",
        &tpm.spec(),
        "--event-log",
        log_s,
    ]);
    ok(&o);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("LOWERED"),
        "{o:?}"
    );
    let floors: serde_json::Value = serde_json::from_str(&ok(&verity(&[
        "rollback", "show", "--json", "--root", root,
    ])))
    .unwrap();
    assert_eq!(floors["floors"][0]["version"], "1.5");

    // The record: its own eventType, the event string, PCR 13.
    let recs: serde_json::Value = serde_json::from_str(&ok(&verity(&[
        "log",
        "show",
        "--json",
        "--event-log",
        log_s,
    ])))
    .unwrap();
    let rec = &recs[0];
    assert_eq!(rec["pcr"], 13);
    assert_eq!(rec["content"]["eventType"], "rollback-lower");
    let event = "rollback-lower:sysext:foo:2.0:1.5";
    assert_eq!(rec["content"]["string"], event);

    // The TPM holds sha256(zeros || sha256(event)), by openssl and tpm2_pcrread.
    let d = openssl_digest("sha256", event.as_bytes(), t.path());
    let mut chain = vec![0u8; 32];
    chain.extend_from_slice(&d);
    let want = openssl_digest("sha256", &chain, t.path());
    assert_eq!(hex_encode(&tpm.pcrread("sha256", 13)), hex_encode(&want));
    // And the log replays against the TPM, the lowering included.
    ok(&verity(&[
        "pcr",
        "replay",
        "--tpm",
        &tpm.spec(),
        "--event-log",
        log_s,
    ]));
}
