//! Differential tests against systemd's own systemd-sysext/confext 257 (fetched and unpacked by
//! tests/oracle/systemd-257, never installed): the same directory extensions merged by
//! systemd and by us must give the same tree, the same marker, the same mount flags, and each
//! tool's `status` must recognise the other's merge. Root, network (first run) and util-linux
//! needed; the test fails, never skips, when the oracle cannot be had.

use std::path::{Path, PathBuf};
use std::process::Command;

#[path = "support/systemd257.rs"]
mod systemd257;

const BIN: &str = env!("CARGO_BIN_EXE_verity");

fn oracle() -> PathBuf {
    systemd257::tool("systemd-sysext")
}

fn write(p: &Path, s: &str) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, s).unwrap();
}

/// A host tree with sysexts and a confext, all directories.
fn tree() -> (tempfile::TempDir, PathBuf) {
    let t = tempfile::tempdir().unwrap();
    let r = t.path().join("root");
    write(&r.join("etc/os-release"), "ID=debian\nVERSION_ID=12\n");
    write(&r.join("etc/host.conf"), "host\n");
    write(&r.join("usr/share/host/f"), "host\n");
    write(&r.join("usr/share/x"), "host-x\n");
    let sx = |name: &str, files: &[(&str, &str)], release: &str| {
        let d = r.join("var/lib/extensions").join(name);
        let rel = name.split(['_', '+']).next().unwrap();
        write(
            &d.join(format!(
                "usr/lib/extension-release.d/extension-release.{rel}"
            )),
            release,
        );
        for (p, c) in files {
            write(&d.join(p), c);
        }
    };
    let rel = "ID=debian\nVERSION_ID=12\n";
    sx(
        "alpha",
        &[
            ("usr/share/x", "alpha\n"),
            ("usr/share/alpha/a", "a\n"),
            ("etc/ignored", "i\n"),
        ],
        rel,
    );
    sx(
        "tool_2",
        &[("usr/share/x", "tool2\n"), ("usr/share/tool/t", "2\n")],
        rel,
    );
    sx(
        "tool_10",
        &[
            ("usr/share/x", "tool10\n"),
            ("usr/share/tool/t", "10\n"),
            ("opt/tool/o", "o\n"),
        ],
        rel,
    );
    sx("zzz", &[("usr/share/zzz", "z\n")], "ID=_any\n");
    sx("wrong", &[("usr/share/wrong", "w\n")], "ID=fedora\n");
    let c = r.join("var/lib/confexts/cfg");
    write(
        &c.join("etc/extension-release.d/extension-release.cfg"),
        rel,
    );
    write(&c.join("etc/app.conf"), "cfg\n");
    // Masking: an empty directory of the same name earlier in the search path wins and is skipped.
    std::fs::create_dir_all(r.join("etc/extensions/masked")).unwrap();
    sx("masked", &[("usr/share/masked", "m\n")], rel);
    (t, r)
}

/// Lists the merged hierarchies (type, mode, size, content hash of every entry) and the overlay
/// mount options minus the layer paths.
const DUMP: &str = r#"
dump() {
  for h in usr opt etc; do
    echo "== $h $(mountpoint -q $R/$h && echo mounted || echo plain)"
    (cd $R/$h 2>/dev/null && find . -path ./.systemd-sysext/dev -prune -o -path ./.systemd-confext/dev -prune -o -printf '%p %y %m %s\n' | sort)
    (cd $R/$h 2>/dev/null && find . -type f ! -name dev -exec md5sum {} + | sort -k2)
    grep " $R/$h " /proc/self/mountinfo | awk '{print "opts", $6, $(NF-2), $(NF-1)}' | sed 's/,lowerdir[^,]*//g'
  done
}
"#;

fn run(r: &Path, o: &Path, body: &str) -> String {
    let script = format!("{DUMP}\nmount --make-rshared /\nmount -t tmpfs tmpfs /run\n{body}");
    let out = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-euc", &script])
        .env("V", BIN)
        .env("O", o)
        .env("OC", o.with_file_name("systemd-confext"))
        .env("R", r)
        .env(
            "M",
            format!(
                "--root {} --image-policy =unprotected --dangerous-no-tpm --event-log /run/log",
                r.display()
            ),
        )
        .output()
        .expect("unshare (util-linux) must be installed and the test run as root");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    eprintln!(
        "--- stdout\n{stdout}--- stderr\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success());
    stdout
}

#[test]
fn root_oracle_directory_merge_matches_systemd_257() {
    let o = oracle();
    let (_t, r) = tree();
    let theirs = run(
        &r,
        &o,
        r#"
        $O merge --root=$R >&2
        $OC merge --root=$R >&2
        dump
        echo "== verity status of systemd's merge"
        $V sysext status --root $R --json | tr -d ' \n' | sed 's/"since":[0-9]*//g'; echo
        $V confext status --root $R --json | tr -d ' \n' | sed 's/"since":[0-9]*//g'; echo
        $O unmerge --root=$R >&2; $OC unmerge --root=$R >&2
        "#,
    );
    let ours = run(
        &r,
        &o,
        r#"
        $V sysext merge $M >&2 || true
        $V confext merge $M >&2
        dump
        echo "== verity status of systemd's merge"
        $V sysext status --root $R --json | tr -d ' \n' | sed 's/"since":[0-9]*//g'; echo
        $V confext status --root $R --json | tr -d ' \n' | sed 's/"since":[0-9]*//g'; echo
        echo "== systemd status of ours"
        $O status --root=$R --json=short >&2
        $O status --root=$R --json=short | grep -q '"extensions":\["alpha","tool_2","tool_10","zzz"\]' && echo SYSTEMD_SEES_OURS
        $OC status --root=$R --json=short | grep -q '"extensions":\["cfg"\]' && echo SYSTEMD_SEES_OUR_CONFEXT
        s=$($V sysext status --root $R --json=short | grep -o '"since":[0-9]*' | head -n 1 | cut -d: -f2)
        [ "$($V sysext status --root $R --json=short | wc -l)" = 1 ] && echo JSON_SHORT_ONE_LINE
        $V sysext status --root $R --no-legend >&2
        $V sysext status --root $R --no-legend | grep -qF "$(date -d "@$s" '+%a %Y-%m-%d %H:%M:%S %Z')" && echo STATUS_DATE_AS_DATE_PRINTS_IT
        $V sysext --root $R --json=off | grep -q HIERARCHY && echo DEFAULT_VERB_STATUS_JSON_OFF
        $V sysext unmerge --root $R >&2; $V confext unmerge --root $R >&2
        "#,
    );
    let (ours_tree, ours_rest) = ours.split_once("== systemd status of ours").unwrap();
    assert_eq!(
        ours_tree, theirs,
        "our merge differs from systemd-sysext 257's"
    );
    assert!(ours_rest.contains("SYSTEMD_SEES_OURS"));
    assert!(ours_rest.contains("SYSTEMD_SEES_OUR_CONFEXT"));
    assert!(ours_rest.contains("JSON_SHORT_ONE_LINE"));
    assert!(ours_rest.contains("STATUS_DATE_AS_DATE_PRINTS_IT"));
    assert!(ours_rest.contains("DEFAULT_VERB_STATUS_JSON_OFF"));
    assert!(theirs.contains("./share/x f"), "{theirs}");
    assert!(theirs.contains(r#""merged":true,"extensions":["alpha","tool_2","tool_10","zzz"]"#));
}

/// Writable merges cross over: what systemd-sysext 257 merges with `--mutable=yes` verity
/// recognises as mutable and unmerges (read-only marker bind, work dir removed, written data kept
/// in the upper dir), and the other way round.
#[test]
fn root_oracle_mutable_merges_unmerge_across_tools() {
    let o = oracle();
    let (_t, r) = tree();
    let out = run(
        &r,
        &o,
        r#"
        W=$R/var/lib/extensions.mutable
        $O --root=$R --mutable=yes merge >&2
        touch $R/usr/share/by-systemd
        $V sysext status --root $R --json=short | grep -q '"mutable":true' && echo VERITY_SEES_MUTABLE
        test -d $W/.systemd-usr-workdir && echo SYSTEMD_WORKDIR
        $V sysext unmerge --root $R >&2
        test ! -e $W/.systemd-usr-workdir && test -f $W/usr/share/by-systemd && test ! -e $R/usr/share/by-systemd && echo VERITY_UNMERGED_SYSTEMD
        $V sysext merge $M --mutable=yes >&2 || true
        touch $R/usr/share/by-verity
        test "$(cat $R/usr/.systemd-sysext/work_dir)" = var/lib/extensions.mutable/.systemd-usr-workdir && echo SAME_WORKDIR_MARKER
        if touch $R/usr/.systemd-sysext/x 2>/dev/null; then echo MARKER_WRITABLE; fi
        $O status --root=$R --json=short | grep -q '"extensions":\["alpha","tool_2","tool_10","zzz"\]' && echo SYSTEMD_SEES_OURS
        $O --root=$R unmerge >&2
        test ! -e $W/.systemd-usr-workdir && test -f $W/usr/share/by-verity && test ! -e $R/usr/share/by-verity && echo SYSTEMD_UNMERGED_VERITY
        "#,
    );
    for want in [
        "VERITY_SEES_MUTABLE",
        "SYSTEMD_WORKDIR",
        "VERITY_UNMERGED_SYSTEMD",
        "SAME_WORKDIR_MARKER",
        "SYSTEMD_SEES_OURS",
        "SYSTEMD_UNMERGED_VERITY",
    ] {
        assert!(out.contains(want), "{want} missing:\n{out}");
    }
    assert!(!out.contains("MARKER_WRITABLE"), "{out}");
}
