//! `verity attest` against a real software TPM, with tpm2-tools as the independent oracle: our
//! AK is the key `tpm2_createak` makes (tpm2_print reads it; tpm2_load loads it under the EK that
//! `tpm2_createek` derives and names it the same), our quotes pass `tpm2_checkquote`, quotes made
//! by `tpm2_quote` pass `verity attest check`, and each kind of bad evidence fails the named
//! check with exit 1. Needs swtpm and tpm2-tools.

#[path = "support/swtpm.rs"]
mod swtpm;

use std::path::Path;
use std::process::{Command, Output};
use swtpm::{hex_encode, Swtpm};

const BIN: &str = env!("CARGO_BIN_EXE_verity");

fn verity(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().expect("run verity")
}

fn ok(o: &Output, what: &str) -> String {
    assert!(
        o.status.success(),
        "{what}: {}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// Loads our AK with tpm2-tools (EK policy session, as `tpm2_createak`'s keys are loaded) and
/// returns the name tpm2_load computed.
fn tpm2_load_ak(tpm: &Swtpm, dir: &Path, ak: &Path) -> Vec<u8> {
    let f = |n: &str| dir.join(n).to_str().unwrap().to_string();
    let run = |tool: &str, args: &[&str]| {
        let o = tpm.tool(tool, args);
        assert!(o.status.success(), "{tool} {args:?}: {o:?}");
    };
    run(
        "tpm2_createek",
        &["-c", &f("ek.ctx"), "-G", "rsa", "-u", &f("ek-tools.pub")],
    );
    run(
        "tpm2_startauthsession",
        &["--policy-session", "-S", &f("s.ctx")],
    );
    run("tpm2_policysecret", &["-S", &f("s.ctx"), "-c", "e"]);
    run(
        "tpm2_load",
        &[
            "-C",
            &f("ek.ctx"),
            "-u",
            p(&ak.join("ak.pub")),
            "-r",
            p(&ak.join("ak.priv")),
            "-c",
            &f("ak.ctx"),
            "-n",
            &f("ak-tools.name"),
            "-P",
            &format!("session:{}", f("s.ctx")),
        ],
    );
    run("tpm2_flushcontext", &[&f("s.ctx")]);
    // swtpm has no resource manager: objects tpm2-tools loaded stay loaded until flushed (their
    // saved contexts still load again later).
    run("tpm2_flushcontext", &["-t"]);
    std::fs::read(f("ak-tools.name")).unwrap()
}

#[test]
fn swtpm_attest_ak_and_quotes_agree_with_tpm2_tools() {
    let tpm = Swtpm::start();
    let t = tempfile::tempdir().unwrap();
    let ak = t.path().join("ak");
    let spec = tpm.spec();
    ok(
        &verity(&["attest", "ak", "create", "--tpm", &spec, "--out", p(&ak)]),
        "ak create",
    );
    // tpm2_print reads ak.pub as a TPM2B_PUBLIC with tpm2_createak's default attributes.
    let o = tpm.tool("tpm2_print", &["-t", "TPM2B_PUBLIC", p(&ak.join("ak.pub"))]);
    let text = ok(&o, "tpm2_print");
    assert!(
        text.contains(
            "value: fixedtpm|fixedparent|sensitivedataorigin|userwithauth|restricted|sign"
        ),
        "{text}"
    );
    assert!(
        text.contains("value: rsassa") && text.contains("bits: 2048"),
        "{text}"
    );

    // The same EK as tpm2_createek, the AK loads under it, and tpm2_load names it as we do.
    let name = tpm2_load_ak(&tpm, t.path(), &ak);
    assert_eq!(
        std::fs::read(ak.join("ek.pub")).unwrap(),
        std::fs::read(t.path().join("ek-tools.pub")).unwrap(),
        "ek.pub differs from tpm2_createek's"
    );
    assert_eq!(std::fs::read(ak.join("ak.name")).unwrap(), name);

    // Make PCR 13 non-trivial, then quote with verity and check with tpm2_checkquote.
    let o = tpm.tool(
        "tpm2_pcrextend",
        &[&format!("13:sha256={}", "ab".repeat(32))],
    );
    ok(&o, "tpm2_pcrextend");
    let q = t.path().join("q");
    let nonce = "keylime-nonce-0001";
    let out = ok(
        &verity(&[
            "attest",
            "quote",
            "--ak",
            p(&ak),
            "--nonce",
            nonce,
            "--pcrs",
            "12,13,15",
            "--tpm",
            &spec,
            "--out",
            p(&q),
            "--json",
        ]),
        "attest quote",
    );
    let j: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        j["pcrs"]["13"].as_str().unwrap(),
        hex_encode(&tpm.pcrread("sha256", 13))
    );
    let line = std::fs::read_to_string(q.join("keylime-quote.txt")).unwrap();
    assert_eq!(line.trim_end(), j["quote"].as_str().unwrap());
    assert!(line.starts_with('r') && line.trim_end().split(':').count() == 3);
    let checkquote = |nonce: &str| {
        tpm.tool(
            "tpm2_checkquote",
            &[
                "-u",
                p(&ak.join("ak.pub")),
                "-m",
                p(&q.join("quote.msg")),
                "-s",
                p(&q.join("quote.sig")),
                "-f",
                p(&q.join("quote.pcrs")),
                "-g",
                "sha256",
                "-q",
                &hex_encode(nonce.as_bytes()),
            ],
        )
    };
    ok(&checkquote(nonce), "tpm2_checkquote of verity's quote");
    assert!(!checkquote("another-nonce").status.success());

    // A quote made by tpm2_quote with the same AK passes verity attest check.
    let tq = t.path().join("tq");
    std::fs::create_dir_all(&tq).unwrap();
    let o = tpm.tool(
        "tpm2_quote",
        &[
            "-c",
            p(&t.path().join("ak.ctx")),
            "-l",
            "sha256:12,13,15",
            "-q",
            &hex_encode(b"tools-nonce"),
            "-m",
            p(&tq.join("quote.msg")),
            "-s",
            p(&tq.join("quote.sig")),
            "-o",
            p(&tq.join("quote.pcrs")),
            "-g",
            "sha256",
        ],
    );
    ok(&o, "tpm2_quote");
    ok(&tpm.tool("tpm2_flushcontext", &["-t"]), "tpm2_flushcontext");
    let pol = t.path().join("policy.json");
    std::fs::write(
        &pol,
        format!(
            "{{\"13\":[\"{}\"]}}",
            hex_encode(&tpm.pcrread("sha256", 13))
        ),
    )
    .unwrap();
    let check = |nonce: &str, quote: &Path| {
        verity(&[
            "attest",
            "check",
            "--ak",
            p(&ak.join("ak.pub")),
            "--nonce",
            nonce,
            "--quote",
            p(quote),
            "--policy",
            p(&pol),
        ])
    };
    ok(&check("tools-nonce", &tq), "check of tpm2_quote's quote");
    ok(&check(nonce, &q), "check of verity's quote");
    ok(
        &check(nonce, &q.join("keylime-quote.txt")),
        "check of the Keylime line",
    );
}

fn expect_fail(o: &Output, check: &str) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{check}: {err}");
    assert!(
        err.contains(&format!("quote check '{check}' failed")),
        "{check}: {err}"
    );
}

#[test]
fn swtpm_attest_check_names_each_failed_check() {
    let tpm = Swtpm::start();
    let t = tempfile::tempdir().unwrap();
    let (ak, q, log) = (
        t.path().join("ak"),
        t.path().join("q"),
        t.path().join("m.log"),
    );
    let spec = tpm.spec();
    ok(
        &verity(&["attest", "ak", "create", "--tpm", &spec, "--out", p(&ak)]),
        "ak create",
    );
    let root = "cd".repeat(32);
    ok(
        &verity(&[
            "measure",
            "--class",
            "sysext",
            "--name",
            "tools",
            "--root-hash",
            &root,
            "--tpm",
            &spec,
            "--event-log",
            p(&log),
        ]),
        "measure",
    );
    ok(
        &verity(&[
            "attest",
            "quote",
            "--ak",
            p(&ak),
            "--nonce",
            "n-1",
            "--pcrs",
            "12,13",
            "--tpm",
            &spec,
            "--event-log",
            p(&log),
            "--out",
            p(&q),
        ]),
        "quote",
    );
    assert!(q.join("tpm2-measure.log").exists());
    // The policy comes from the prediction, not from the TPM.
    let pol = t.path().join("policy.json");
    let o = verity(&[
        "pcr",
        "predict",
        "--format",
        "keylime",
        "--class",
        "sysext",
        "--name",
        "tools",
        "--root-hash",
        &root,
        "--output",
        p(&pol),
    ]);
    ok(&o, "predict");
    let akp = ak.join("ak.pub");
    let check = |nonce: &str, quote: &Path, policy: &Path| {
        verity(&[
            "attest",
            "check",
            "--ak",
            p(&akp),
            "--nonce",
            nonce,
            "--quote",
            p(quote),
            "--policy",
            p(policy),
            "--json",
        ])
    };
    let good = check("n-1", &q, &pol);
    let out = ok(&good, "valid quote");
    let j: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(j["valid"], true);
    assert_eq!(j["checks"][4]["check"], "event-log-replay");
    assert_eq!(j["checks"][4]["result"], "pass", "{out}");

    let copy = |name: &str| {
        let d = t.path().join(name);
        std::fs::create_dir_all(&d).unwrap();
        for f in ["quote.msg", "quote.sig", "quote.pcrs", "tpm2-measure.log"] {
            std::fs::copy(q.join(f), d.join(f)).unwrap();
        }
        d
    };
    let flip = |f: &Path, at: usize| {
        let mut b = std::fs::read(f).unwrap();
        b[at] ^= 1;
        std::fs::write(f, b).unwrap();
    };
    // signature: one bit of the signature.
    let d = copy("sig");
    flip(&d.join("quote.sig"), 40);
    expect_fail(&check("n-1", &d, &pol), "signature");
    // signature: a bit of the signed message.
    let d = copy("msg");
    flip(&d.join("quote.msg"), 20);
    expect_fail(&check("n-1", &d, &pol), "signature");
    // nonce: a replayed quote.
    expect_fail(&check("n-2", &q, &pol), "nonce");
    // pcr-digest: a PCR value that is not the quoted one (first value byte of PCR 13).
    let d = copy("pcrs");
    flip(&d.join("quote.pcrs"), 136 + 4 + 66 + 2);
    expect_fail(&check("n-1", &d, &pol), "pcr-digest");
    // pcr-policy: another image version allowed instead.
    let pol2 = t.path().join("policy2.json");
    let o = verity(&[
        "pcr",
        "predict",
        "--format",
        "keylime",
        "--class",
        "sysext",
        "--name",
        "tools",
        "--root-hash",
        &"ce".repeat(32),
        "--output",
        p(&pol2),
    ]);
    ok(&o, "predict 2");
    expect_fail(&check("n-1", &q, &pol2), "pcr-policy");
    // event-log-replay: a log that claims another image.
    let d = copy("log");
    let text = std::fs::read_to_string(d.join("tpm2-measure.log")).unwrap();
    let forged = text.replace(&root, &"ce".repeat(32));
    assert_ne!(forged, text);
    std::fs::write(d.join("tpm2-measure.log"), forged).unwrap();
    expect_fail(&check("n-1", &d, &pol), "event-log-replay");
    // Usage errors are exit 2: a missing quote, an empty policy.
    let empty = t.path().join("empty.json");
    std::fs::write(&empty, "{}").unwrap();
    assert_eq!(check("n-1", &q, &empty).status.code(), Some(2));
    assert_eq!(
        check("n-1", &t.path().join("nope"), &pol).status.code(),
        Some(2)
    );
}

#[test]
fn swtpm_attest_check_accepts_tpm2_tools_ecdsa_quotes_over_two_banks() {
    let tpm = Swtpm::start();
    let t = tempfile::tempdir().unwrap();
    let f = |n: &str| t.path().join(n).to_str().unwrap().to_string();
    for (tool, args) in [
        (
            "tpm2_createek",
            vec!["-c", &f("ek.ctx"), "-G", "ecc", "-u", &f("ek.pub")],
        ),
        (
            "tpm2_createak",
            vec![
                "-C",
                &f("ek.ctx"),
                "-c",
                &f("ak.ctx"),
                "-G",
                "ecc",
                "-g",
                "sha256",
                "-s",
                "ecdsa",
                "-u",
                &f("ak.pub"),
            ],
        ),
        ("tpm2_flushcontext", vec!["-t"]),
        (
            "tpm2_pcrextend",
            vec!["13:sha256=1111111111111111111111111111111111111111111111111111111111111111"],
        ),
    ] {
        let o = tpm.tool(tool, &args);
        assert!(o.status.success(), "{tool}: {o:?}");
    }
    let q = t.path().join("q");
    std::fs::create_dir_all(&q).unwrap();
    let qf = |n: &str| q.join(n).to_str().unwrap().to_string();
    let o = tpm.tool(
        "tpm2_quote",
        &[
            "-c",
            &f("ak.ctx"),
            "-l",
            "sha1:0,1,2,3,4,5,6,7,8,9+sha256:12,13,15",
            "-q",
            &hex_encode(b"ecc-nonce"),
            "-m",
            &qf("quote.msg"),
            "-s",
            &qf("quote.sig"),
            "-o",
            &qf("quote.pcrs"),
            "-g",
            "sha256",
        ],
    );
    assert!(o.status.success(), "tpm2_quote: {o:?}");
    let pol = t.path().join("p.json");
    std::fs::write(
        &pol,
        format!(
            "{{\"13\":[\"{}\"]}}",
            hex_encode(&tpm.pcrread("sha256", 13))
        ),
    )
    .unwrap();
    let check = |ak: &str| {
        verity(&[
            "attest",
            "check",
            "--ak",
            ak,
            "--nonce",
            "ecc-nonce",
            "--quote",
            p(&q),
            "--policy",
            p(&pol),
        ])
    };
    ok(&check(&f("ak.pub")), "ECDSA quote over sha1 and sha256");
    // The same evidence against another (RSA) attestation key: not its signature.
    let rsa = t.path().join("rsa");
    ok(
        &verity(&[
            "attest",
            "ak",
            "create",
            "--tpm",
            &tpm.spec(),
            "--out",
            p(&rsa),
        ]),
        "ak create",
    );
    expect_fail(&check(rsa.join("ak.pub").to_str().unwrap()), "signature");
}
