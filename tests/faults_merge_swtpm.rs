//! Fault injection for `verity sysext merge` with a software TPM (issue 17), each row its own test:
//! two merges at once (one waits for the class lock; one merge results), the event log's file
//! system full at append (nothing merged without its record, exit 1), the TPM gone between the
//! first and the second of three images (a proxy that dies after the first PCR_Extend: only the
//! measured image is visible, or with `--strict` nothing; exit 1 naming the TPM; no torn or orphan
//! record), and an image truncated, overwritten or renamed over while being admitted (refused with
//! nothing measured for it, or admitted whole, never a mix). Needs root (mounts in `unshare -m`), swtpm, erofs-utils.

#[path = "support/faults.rs"]
mod faults;
#[path = "support/swtpm.rs"]
mod swtpm;
#[path = "support/tpmproxy.rs"]
mod tpmproxy;

use faults::{field, Fixture};
use swtpm::Swtpm;

/// Counts image records (eventType sysext) in the script's event log `$L`, the overlays on
/// `$R/usr`, and checks `pcr replay` against the (real) TPM `$S`.
const SUMMARY: &str = r#"
    echo "OVERLAYS=$(grep -c " $R/usr " /proc/self/mountinfo)"
    echo "RECORDS=$(cat $L 2>/dev/null | grep -c '"eventType":"sysext"')"
    echo "STICKY=$(stat -c %A $L 2>/dev/null | cut -c10)"
    $V pcr replay --tpm $S --event-log $L >&2 && echo REPLAY_OK
"#;

#[test]
fn root_swtpm_two_merges_at_once_one_waits_and_the_result_is_one_merge() {
    let tpm = Swtpm::start();
    let f = Fixture::new();
    f.ddi("one", "1\n", 8 << 20);
    f.ddi("two", "2\n", 8 << 20);
    let log = f.path("tpm2-measure.log");
    let script = format!(
        r#"
        $V sysext merge $M >$T/m1.out 2>$T/m1.err & P1=$!
        $V sysext merge $M >$T/m2.out 2>$T/m2.err & P2=$!
        wait $P1; echo "RC1=$?"; wait $P2; echo "RC2=$?"
        cat $T/m1.err $T/m2.err >&2
        echo "CONTENT=$(cat $R/usr/share/one $R/usr/share/two | tr '\n' ,)"
        {SUMMARY}
        $V sysext unmerge --root $R >&2
        echo "AFTER=$(grep -c " $R/usr " /proc/self/mountinfo)"
        "#
    );
    let o = f.in_ns(
        &script,
        &[
            ("M", f.merge_args(&tpm.spec(), &log)),
            ("L", log.display().to_string()),
            ("S", tpm.spec()),
        ],
    );
    let s = String::from_utf8_lossy(&o.stdout);
    let e = String::from_utf8_lossy(&o.stderr);
    let mut rcs = [field(&s, "RC1"), field(&s, "RC2")];
    rcs.sort();
    assert_eq!(rcs[0], "0", "{s}{e}");
    assert_ne!(rcs[1], "0", "both merges succeeded: {s}{e}");
    assert!(
        e.contains("already merged"),
        "the second must see the first's merge: {e}"
    );
    assert_eq!(field(&s, "CONTENT"), "1,2,");
    assert_eq!(field(&s, "OVERLAYS"), "1", "stacked overlays: {s}");
    assert_eq!(field(&s, "RECORDS"), "2", "each image measured once: {s}");
    assert!(s.contains("REPLAY_OK"), "{s}{e}");
    assert_eq!(field(&s, "AFTER"), "0");
}

#[test]
fn root_swtpm_event_log_filesystem_full_merges_nothing_without_its_record() {
    let tpm = Swtpm::start();
    let f = Fixture::new();
    f.ddi("one", "1\n", 0);
    f.ddi("two", "2\n", 0);
    let logdir = f.path("logfs");
    std::fs::create_dir(&logdir).unwrap();
    let log = logdir.join("tpm2-measure.log");
    let o = f.in_ns(
        r#"
        mount -t tmpfs -o size=16k logfs $LD || exit 99
        dd if=/dev/zero of=$LD/fill bs=1k count=64 2>/dev/null
        $V sysext merge $M >&2; echo "RC=$?"
        echo "VISIBLE=$(cat $R/usr/share/one $R/usr/share/two 2>/dev/null | tr '\n' ,)"
        echo "OVERLAYS=$(grep -c " $R/usr " /proc/self/mountinfo)"
        echo "STATUS=$($V sysext status --root $R --json=short)"
        rm $LD/fill
        $V sysext merge $M >&2; echo "RC2=$?"
        echo "VISIBLE2=$(cat $R/usr/share/one $R/usr/share/two 2>/dev/null | tr '\n' ,)"
        "#,
        &[
            ("M", f.merge_args(&tpm.spec(), &log)),
            ("LD", logdir.display().to_string()),
        ],
    );
    let s = String::from_utf8_lossy(&o.stdout);
    let e = String::from_utf8_lossy(&o.stderr);
    assert_eq!(field(&s, "RC"), "1", "{s}{e}");
    assert_eq!(
        field(&s, "VISIBLE"),
        "",
        "an image was merged without its record: {s}"
    );
    assert_eq!(field(&s, "OVERLAYS"), "0", "{s}");
    assert!(!field(&s, "STATUS").contains(r#""merged":true"#), "{s}");
    assert!(e.contains("No space left on device"), "{e}");
    assert!(
        e.contains(&log.display().to_string()),
        "the log is named: {e}"
    );
    // A record whose PCR extend happened but whose append failed leaves the log marked torn,
    // so the next merge refuses to append to it rather than hiding the gap.
    assert_ne!(field(&s, "RC2"), "0", "{s}{e}");
    assert_eq!(field(&s, "VISIBLE2"), "", "{s}");
}

/// Three images, a TPM that dies after the first image's PCR_Extend: returns (stdout, stderr).
fn tpm_dies_after_first(strict: bool) -> (String, String) {
    let tpm = Swtpm::start();
    let proxy = tpmproxy::TpmProxy::start(tpm.port, 1);
    let f = Fixture::new();
    for (n, c) in [("a", "1\n"), ("b", "2\n"), ("c", "3\n")] {
        f.ddi(n, c, 0);
    }
    let log = f.path("tpm2-measure.log");
    let mut m = f.merge_args(&proxy.spec(), &log);
    if strict {
        m.push_str(" --strict");
    }
    let script = format!(
        r#"
        $V sysext merge $M >&2; echo "RC=$?"
        for n in a b c; do test -e $R/usr/share/$n && echo "VISIBLE_$n"; done
        {SUMMARY}
        "#
    );
    let o = f.in_ns(
        &script,
        &[
            ("M", m),
            ("L", log.display().to_string()),
            ("S", tpm.spec()),
        ],
    );
    assert!(
        proxy.is_dead() && proxy.extends() == 1,
        "the proxy never saw a PCR_Extend"
    );
    let s = String::from_utf8_lossy(&o.stdout).into_owned();
    let e = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(field(&s, "RC"), "1", "{s}{e}");
    assert!(e.contains("TPM"), "the error names the TPM: {e}");
    // The log matches the TPM (replay against the real swtpm behind the proxy) and is not torn.
    assert!(
        s.contains("REPLAY_OK"),
        "orphaned or missing record: {s}{e}"
    );
    assert_eq!(field(&s, "STICKY"), "-", "log left marked torn: {s}");
    assert_eq!(
        field(&s, "RECORDS"),
        "1",
        "only the first image was measured: {s}"
    );
    (s, e)
}

#[test]
fn root_swtpm_tpm_gone_between_images_shows_only_measured_images() {
    let (s, _) = tpm_dies_after_first(false);
    assert!(s.contains("VISIBLE_a"), "{s}");
    assert!(!s.contains("VISIBLE_b") && !s.contains("VISIBLE_c"), "{s}");
}

#[test]
fn root_swtpm_tpm_gone_between_images_strict_merges_nothing() {
    let (s, _) = tpm_dies_after_first(true);
    assert!(!s.contains("VISIBLE_"), "{s}");
    assert_eq!(field(&s, "OVERLAYS"), "0", "{s}");
}

#[test]
fn root_swtpm_image_truncated_or_replaced_while_admitted_is_refused_or_admitted_whole() {
    let tpm = Swtpm::start();
    let f = Fixture::new();
    // Another valid signed image of the same name, kept aside as the replacement.
    let other = f.path("other.raw");
    std::fs::rename(f.ddi("big", "other\n", 48 << 20), &other).unwrap();
    let img = f.ddi("big", "whole\n", 48 << 20);
    let pristine = std::fs::read(&img).unwrap();
    let log = f.path("tpm2-measure.log");
    let (mut refused, mut merged) = (0, 0);
    let faults = [
        "truncate -s 1M $I",
        "cp $O $I",
        "cp $O $I.new && mv $I.new $I",
    ];
    for (i, delay_ms) in [0u32, 5, 20, 60, 150].into_iter().enumerate() {
        for fault in faults {
            std::fs::write(&img, &pristine).unwrap();
            let _ = std::fs::remove_file(&log);
            let script = format!(
                r#"
                $V sysext merge $M >&2 & P=$!
                sleep 0.{:03}; {fault}
                wait $P; echo "RC=$?"
                echo "CONTENT=$(cat $R/usr/share/big 2>/dev/null)"
                echo "RECORDS=$(cat $L 2>/dev/null | grep -c '"eventType":"sysext"')"
                $V sysext unmerge --root $R >/dev/null 2>&1
                "#,
                delay_ms + i as u32
            );
            let o = f.in_ns(
                &script,
                &[
                    ("M", f.merge_args(&tpm.spec(), &log)),
                    ("L", log.display().to_string()),
                    ("I", img.display().to_string()),
                    ("O", other.display().to_string()),
                ],
            );
            let s = String::from_utf8_lossy(&o.stdout);
            match field(&s, "RC") {
                "1" => {
                    refused += 1;
                    assert_eq!(field(&s, "CONTENT"), "", "{fault}: {s}");
                    assert_eq!(
                        field(&s, "RECORDS"),
                        "0",
                        "{fault}: measured but refused: {s}"
                    );
                }
                "0" => {
                    // Admitted from a whole image: the original, or the replacement if it was
                    // complete before admission read it; never a mix (that would fail the tree).
                    merged += 1;
                    let c = field(&s, "CONTENT");
                    assert!(c == "whole" || c == "other", "{fault}: {s}");
                    assert_eq!(field(&s, "RECORDS"), "1", "{fault}: {s}");
                }
                rc => panic!("{fault}: exit {rc}: {s}"),
            }
        }
    }
    eprintln!("refused {refused}, merged whole {merged}");
    assert!(
        refused > 0,
        "no fault landed during admission: the test proves nothing"
    );
}
