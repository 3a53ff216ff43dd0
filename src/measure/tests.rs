//! Tests of the measuring step against the software TPM: the token appears only after the extend
//! and the append, the log replays, and every failure leaves no token and a log that tells the
//! truth about the TPM.

use super::step::{measure, record_bypass, record_unmeasured};
use super::*;
use crate::gate::Bypass;
use std::collections::HashMap;

/// A token content for these tests: an event and the bypasses of its admission.
#[derive(Debug)]
struct Sub {
    ev: ImageEvent,
    bypasses: Vec<Bypass>,
}

impl Subject for Sub {
    fn event(&self) -> ImageEvent {
        self.ev.clone()
    }
    fn bypasses(&self) -> Vec<Bypass> {
        self.bypasses.clone()
    }
}

fn token(ev: ImageEvent, bypasses: &[Bypass]) -> crate::image::Verified<Sub> {
    crate::image::verify::test_token(Sub {
        ev,
        bypasses: bypasses.to_vec(),
    })
}

const ROOT: &str = "0a8a8d1bd4a0aa3de6a86f9bef18fc4a79b5d11e41b2cb3c3ad7fa3f2e2b0b1c";
const SIGNER: &str = "5e0ae8ab5a0d9a6a0c6e3c04aac0a8cc44b1f5a1d3e4d4a4e3e2c1b0a9f8e7d6";

fn ev(class: &str, name: &str) -> ImageEvent {
    ImageEvent {
        class: class.into(),
        name: name.into(),
        root_hash_hex: ROOT.into(),
        signer: Some(SIGNER.into()),
    }
}

fn all_banks() -> [HashAlg; 4] {
    [
        HashAlg::Sha1,
        HashAlg::Sha256,
        HashAlg::Sha384,
        HashAlg::Sha512,
    ]
}

fn replay_against(tpm: &mut SoftTpm, log: &EventLog) -> pcr::ReplayReport {
    let recs = log.read().unwrap();
    let banks = tpm.active_banks().unwrap();
    let mut actual = HashMap::new();
    for p in pcr::touched_pcrs(&recs) {
        for &b in &banks {
            actual.insert((p, b), tpm.pcr_read(p, b).unwrap());
        }
    }
    pcr::replay(&recs, &banks, &actual)
}

fn sticky(log: &EventLog) -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(log.path()).unwrap().mode() & 0o1000 != 0
}

#[test]
fn event_strings_follow_the_contract() {
    assert_eq!(
        ev("sysext", "foo").event_string(),
        format!("sysext:foo:{ROOT}:{SIGNER}")
    );
    let unsigned = ImageEvent {
        signer: None,
        ..ev("confext", "bar")
    };
    assert_eq!(
        unsigned.event_string(),
        format!("confext:bar:{ROOT}:unsigned")
    );
    assert_eq!(default_pcr("sysext"), Some(13));
    assert_eq!(default_pcr("confext"), Some(12));
    assert_eq!(default_pcr("nextroot"), Some(15));
    assert_eq!(default_pcr("other"), None);
}

#[test]
fn event_validation() {
    let cases: Vec<(ImageEvent, &str)> = vec![
        (ev("portable", "a"), "unknown class"),
        (ev("sysext", ""), "is empty"),
        (ev("sysext", "a:b"), "contains ':'"),
        (ev("sysext", "a/b"), "'/'"),
        (ev("sysext", "a\nb"), "control"),
        (
            ImageEvent {
                root_hash_hex: ROOT.to_uppercase(),
                ..ev("sysext", "a")
            },
            "lower-case",
        ),
        (
            ImageEvent {
                root_hash_hex: "abc".into(),
                ..ev("sysext", "a")
            },
            "1-64 bytes",
        ),
        (
            ImageEvent {
                signer: Some("unsigned".into()),
                ..ev("sysext", "a")
            },
            "signer",
        ),
    ];
    for (e, want) in cases {
        let err = e.validate().unwrap_err().to_string();
        assert!(err.contains(want), "{e:?}: {err}");
    }
    ev("nextroot", "root").validate().unwrap();
    let unprotected = ImageEvent {
        root_hash_hex: UNPROTECTED.into(),
        signer: None,
        ..ev("sysext", "a")
    };
    unprotected.validate().unwrap();
    assert_eq!(unprotected.event_string(), "sysext:a:unprotected:unsigned");
}

#[test]
fn measure_mints_after_extend_and_append_and_the_log_replays() {
    let dir = tempfile::tempdir().unwrap();
    let log = EventLog::new(dir.path().join("tpm2-measure.log"));
    let mut tpm = SoftTpm::new(all_banks());
    let e = ev("sysext", "foo");
    let token = measure(token(e.clone(), &[]), &mut tpm, &log, PCR_SYSEXT, &[]).unwrap();
    assert_eq!(token.get().get().ev, e);
    assert!(token.record().bypasses.is_empty());
    assert_eq!(token.record().pcr, 13);
    assert_eq!(token.record().event, e.event_string());
    assert_eq!(token.record().digests.len(), 4);
    // Independent computation of the sha256 value: H(0^32 || sha256(event string)).
    let d = HashAlg::Sha256.digest(e.event_string().as_bytes());
    let want = HashAlg::Sha256.digest(&[&[0u8; 32][..], &d].concat());
    assert_eq!(tpm.pcr_read(13, HashAlg::Sha256).unwrap(), want);
    assert_eq!(
        token.record().digests[1],
        ("sha256".to_string(), hex::encode(&d))
    );

    measure_event(&mut tpm, &log, PCR_CONFEXT, &ev("confext", "bar")).unwrap();
    measure_event(&mut tpm, &log, PCR_SYSEXT, &ev("sysext", "baz")).unwrap();
    let recs = log.read().unwrap();
    assert_eq!(recs.len(), 3);
    assert_eq!(recs[1].event_type(), Some("confext"));
    assert_eq!(recs[1].content_type.as_deref(), Some("systemd"));
    assert!(recs[1].timestamp().is_some());
    let r = replay_against(&mut tpm, &log);
    assert!(r.ok(), "{r:?}");
    assert_eq!(r.banks.len(), 8);

    // Prediction from zero over the same events gives the TPM's values in every bank.
    let pred = pcr::predict(
        13,
        &all_banks(),
        &[],
        &[
            ev("sysext", "foo").event_string(),
            ev("sysext", "baz").event_string(),
        ],
    )
    .unwrap();
    for (b, v) in pred {
        assert_eq!(tpm.pcr_read(13, b).unwrap(), v, "{b}");
    }
}

#[test]
fn no_sha256_bank_no_token_log_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let log = EventLog::new(dir.path().join("log"));
    let mut tpm = SoftTpm::new([HashAlg::Sha1]);
    let e = measure(token(ev("sysext", "a"), &[]), &mut tpm, &log, 13, &[]).unwrap_err();
    assert!(matches!(e, MeasureError::NoSha256Bank { .. }), "{e}");
    assert!(e.to_string().contains("active: sha1"), "{e}");
    assert_eq!(tpm.extend_count(), 0);
    assert!(!sticky(&log));
    assert_eq!(log.read().unwrap().len(), 0);
}

#[test]
fn torn_log_no_extend_no_token() {
    let dir = tempfile::tempdir().unwrap();
    let log = EventLog::new(dir.path().join("log"));
    let mut tpm = SoftTpm::new(all_banks());
    measure_event(&mut tpm, &log, 13, &ev("sysext", "a")).unwrap();
    let mut w = log.lock_for_append().unwrap();
    w.mark_in_progress().unwrap();
    drop(w); // a crash between extend and append
    let e = measure_event(&mut tpm, &log, 13, &ev("sysext", "b")).unwrap_err();
    assert!(
        matches!(e, MeasureError::Log(LogFileError::Torn { .. })),
        "{e}"
    );
    assert_eq!(tpm.extend_count(), 1);
}

#[test]
fn refused_extend_keeps_the_log_clean_lost_extend_marks_it_torn() {
    let dir = tempfile::tempdir().unwrap();
    let log = EventLog::new(dir.path().join("log"));
    let mut tpm = SoftTpm::new(all_banks());
    tpm.fail_next_extend = Some(TpmError::Refused {
        op: "TPM2_PCR_Extend",
        reason: "TPM_RC_LOCALITY".into(),
    });
    let e = measure_event(&mut tpm, &log, 13, &ev("sysext", "a")).unwrap_err();
    assert!(matches!(e, MeasureError::Tpm(TpmError::Refused { .. })));
    assert!(!sticky(&log));
    measure_event(&mut tpm, &log, 13, &ev("sysext", "a")).unwrap();

    tpm.fail_next_extend = Some(TpmError::Transport {
        op: "TPM2_PCR_Extend",
        reason: "connection reset".into(),
    });
    let e = measure_event(&mut tpm, &log, 13, &ev("sysext", "b")).unwrap_err();
    assert!(matches!(e, MeasureError::Tpm(TpmError::Transport { .. })));
    assert!(
        sticky(&log),
        "the PCR may have moved: the log must say it is torn"
    );
    assert!(matches!(
        measure_event(&mut tpm, &log, 13, &ev("sysext", "c")),
        Err(MeasureError::Log(LogFileError::Torn { .. }))
    ));
}

#[test]
fn unreachable_tpm_and_bad_pcr_leave_no_trace() {
    let dir = tempfile::tempdir().unwrap();
    let log = EventLog::new(dir.path().join("log"));
    let mut tpm = SoftTpm::new(all_banks());
    tpm.unreachable = true;
    let e = measure_event(&mut tpm, &log, 13, &ev("sysext", "a")).unwrap_err();
    assert!(matches!(e, MeasureError::Tpm(TpmError::Unreachable { .. })));
    tpm.unreachable = false;
    let e = measure_event(&mut tpm, &log, 24, &ev("sysext", "a")).unwrap_err();
    assert!(matches!(e, MeasureError::Pcr(PcrError::NoSuchPcr(24))));
    let e = measure_event(&mut tpm, &log, 13, &ev("sysext", "a:b")).unwrap_err();
    assert!(matches!(e, MeasureError::Event(_)));
    assert!(!sticky(&log));
    assert_eq!(log.read().unwrap().len(), 0);
    assert_eq!(tpm.extend_count(), 0);
}

#[test]
fn point6_bypasses_are_extended_before_the_event_and_the_log_replays() {
    let dir = tempfile::tempdir().unwrap();
    let log = EventLog::new(dir.path().join("log"));
    let mut tpm = SoftTpm::new(all_banks());
    let e = ev("sysext", "foo");
    let t = measure(
        token(e.clone(), &[Bypass::SkipReleaseCheck]),
        &mut tpm,
        &log,
        13,
        &[Bypass::TpmSimulator, Bypass::SkipReleaseCheck],
    )
    .unwrap();
    assert_eq!(
        t.record().bypasses,
        [Bypass::SkipReleaseCheck, Bypass::TpmSimulator]
    );
    assert_eq!(t.record().event, e.event_string());
    let recs = log.read().unwrap();
    let got: Vec<(Option<u32>, &str, &str)> = recs
        .iter()
        .map(|r| (r.pcr, r.event_type().unwrap(), r.string().unwrap()))
        .collect();
    let s = e.event_string();
    // The simulator's record is in the log only; the release-check bypass is extended first.
    let want = [
        (None, "dangerous", format!("dangerous:tpm-simulator:{s}")),
        (
            Some(13),
            "dangerous",
            format!("dangerous:skip-release-check:{s}"),
        ),
        (Some(13), "sysext", s.clone()),
    ];
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(&want) {
        assert_eq!((g.0, g.1, g.2), (w.0, w.1, w.2.as_str()));
    }
    // The PCR holds exactly the two extends, computed here from the strings alone.
    let mut v = vec![0u8; 32];
    for (_, _, string) in &want[1..] {
        let d = HashAlg::Sha256.digest(string.as_bytes());
        v = HashAlg::Sha256.digest(&[v.as_slice(), &d].concat());
    }
    assert_eq!(tpm.pcr_read(13, HashAlg::Sha256).unwrap(), v);
    assert_eq!(tpm.extend_count(), 2);
    let r = replay_against(&mut tpm, &log);
    assert!(r.ok(), "{r:?}");
}

#[test]
fn point6_no_tpm_goes_through_the_locked_writer_and_replay_skips_it() {
    let dir = tempfile::tempdir().unwrap();
    let log = EventLog::new(dir.path().join("log"));
    let e = ev("confext", "c");
    let t = record_unmeasured(token(e.clone(), &[]), &log, 12, &[Bypass::NoTpm]).unwrap();
    assert!(t.record().digests.is_empty(), "nothing was extended");
    assert_eq!(t.record().bypasses, [Bypass::NoTpm]);
    let recs = log.read().unwrap();
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].pcr, None);
    assert_eq!(recs[0].event_type(), Some("dangerous"));
    let want = format!("dangerous:no-tpm:{}", e.event_string());
    assert_eq!(recs[0].string(), Some(want.as_str()));
    assert!(!sticky(&log));
    // A record without a PCR is skipped by replay, and its digest is the hash of its string.
    let r = pcr::replay(&recs, &all_banks(), &HashMap::new());
    assert!(r.ok() && r.skipped == 1, "{r:?}");
    // It takes the log's lock and protocol: a torn log is not appended to, and no token.
    let mut w = log.lock_for_append().unwrap();
    w.mark_in_progress().unwrap();
    drop(w);
    let err = record_unmeasured(token(e, &[]), &log, 12, &[])
        .err()
        .unwrap();
    assert!(
        matches!(err, MeasureError::Log(LogFileError::Torn { .. })),
        "{err}"
    );
}

#[test]
fn point6_a_bypass_without_a_token_is_recorded_with_or_without_a_tpm() {
    let dir = tempfile::tempdir().unwrap();
    let log = EventLog::new(dir.path().join("log"));
    let mut tpm = SoftTpm::new(all_banks());
    let rec = record_bypass(
        Some(&mut tpm),
        &log,
        15,
        Bypass::Premounted,
        "/run/nextroot",
        &[],
    )
    .unwrap();
    assert_eq!(rec.event, "dangerous:premounted:/run/nextroot");
    assert_eq!(tpm.extend_count(), 1);
    record_bypass(None, &log, 15, Bypass::Premounted, "/run/nextroot", &[]).unwrap();
    let recs = log.read().unwrap();
    assert_eq!(
        recs.iter().map(|r| r.pcr).collect::<Vec<_>>(),
        [Some(15), None]
    );
    assert!(replay_against(&mut tpm, &log).ok());
    assert!(record_bypass(None, &log, 15, Bypass::Premounted, "a\nb", &[]).is_err());
    // With a simulator, its record comes first, about the premounted record.
    let rec = record_bypass(
        Some(&mut tpm),
        &log,
        15,
        Bypass::Premounted,
        "/run/nextroot",
        &[Bypass::TpmSimulator],
    )
    .unwrap();
    assert_eq!(rec.bypasses, [Bypass::TpmSimulator, Bypass::Premounted]);
    let recs = log.read().unwrap();
    assert_eq!(
        recs[recs.len() - 2].string(),
        Some("dangerous:tpm-simulator:dangerous:premounted:/run/nextroot")
    );
    assert!(replay_against(&mut tpm, &log).ok());
}
