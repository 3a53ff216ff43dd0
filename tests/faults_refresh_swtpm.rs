//! Fault injection for `verity sysext refresh` (issue 17): `SIGKILL` at spread-out points of 100
//! refreshes while a reader polls the hierarchy. The reader must never see it empty (the host's
//! file gone) or half-merged (one extension's file without the other's); afterwards `status` must
//! agree with the mount table, and `unmerge` then `merge` must recover (a log left torn by a kill
//! between PCR extend and record is refused by name, and merging works once it is moved away).
//! Needs root (mounts in `unshare -m`), swtpm, erofs-utils.

#[path = "support/faults.rs"]
mod faults;
#[path = "support/swtpm.rs"]
mod swtpm;

use faults::{field, Fixture};
use swtpm::Swtpm;

#[test]
fn root_swtpm_sigkill_during_refresh_never_shows_a_half_merged_hierarchy() {
    let tpm = Swtpm::start();
    let f = Fixture::new();
    f.ddi("one", "1\n", 2 << 20);
    f.ddi("two", "2\n", 2 << 20);
    let log = f.path("tpm2-measure.log");
    let o = f.in_ns(
        r#"
        $V sysext merge $M >/dev/null 2>&1 || { echo MERGE_FAILED; exit 1; }
        : > $T/bad
        ( while [ ! -e $T/stop ]; do
            l=$(ls $R/usr/share 2>&1 | tr '\n' ,)
            case "$l" in
              *host,*one*two*|*host,*) ;;
              *) echo "empty: $l" >> $T/bad ;;
            esac
            case "$l" in
              *one,*two,*) ;;
              *one,*|*two,*) echo "half: $l" >> $T/bad ;;
            esac
          done ) &
        RP=$!
        i=0; killed=0
        while [ $i -lt 100 ]; do
          $V sysext refresh $M >/dev/null 2>&1 & P=$!
          sleep $(printf '0.%03d' $(( (i * 37) % 250 )))
          kill -9 $P 2>/dev/null
          wait $P; [ $? -eq 137 ] && killed=$((killed + 1))
          i=$((i + 1))
        done
        touch $T/stop; wait $RP
        echo "KILLED=$killed"
        echo "BAD=$(head -3 $T/bad | tr '\n' ';')"
        echo "MOUNTED=$(grep -c " $R/usr " /proc/self/mountinfo)"
        echo "STATUS=$($V sysext status --root $R --json=short)"
        $V sysext unmerge --root $R >&2; echo "UNMERGE_RC=$?"
        echo "AFTER_UNMERGE=$(grep -c " $R/usr " /proc/self/mountinfo) $(ls $R/usr/share | tr '\n' ,)"
        $V sysext merge $M >$T/m.out 2>$T/m.err; rc=$?
        if [ $rc -ne 0 ] && grep -q 'is torn' $T/m.err; then
          echo TORN_REFUSED; mv $L $L.torn; $V sysext merge $M >&2; rc=$?
        fi
        cat $T/m.err >&2
        echo "MERGE_RC=$rc"
        echo "FILES=$(cat $R/usr/share/one $R/usr/share/two | tr '\n' ,)"
        echo "MOUNTED2=$(grep -c " $R/usr " /proc/self/mountinfo)"
        $V sysext unmerge --root $R >/dev/null
        "#,
        &[
            ("M", f.merge_args(&tpm.spec(), &log)),
            ("L", log.display().to_string()),
        ],
    );
    let s = String::from_utf8_lossy(&o.stdout);
    assert!(!s.contains("MERGE_FAILED"), "{s}");
    assert_ne!(field(&s, "KILLED"), "0", "no kill landed: {s}");
    assert_eq!(
        field(&s, "BAD"),
        "",
        "the reader saw a broken hierarchy: {s}"
    );
    // status tells the truth: merged exactly when an overlay is on /usr.
    let mounted = field(&s, "MOUNTED") != "0";
    let status = field(&s, "STATUS");
    let usr = status
        .split(r#"{"hierarchy""#)
        .find(|h| h.contains("/root/usr\""))
        .unwrap_or_else(|| panic!("no /usr in {status}"));
    assert_eq!(usr.contains(r#""merged":true"#), mounted, "{s}");
    assert_eq!(field(&s, "UNMERGE_RC"), "0", "{s}");
    assert_eq!(field(&s, "AFTER_UNMERGE"), "0 host,", "{s}");
    assert_eq!(field(&s, "MERGE_RC"), "0", "{s}");
    assert_eq!(field(&s, "FILES"), "1,2,");
    assert_eq!(field(&s, "MOUNTED2"), "1", "{s}");
}
