//! Root tests of `verity sysext|confext`: real overlay, erofs, loop and memfd mounts, each test in
//! its own `unshare -m --propagation private` shell under a temporary root, so the machine's own
//! /usr, /opt and /etc are never touched. They need root, util-linux (unshare, mountpoint),
//! erofs-utils and cryptsetup-bin (veritysetup), and fail when any is missing.

use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_verity");

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs `script` with `sh -eu` inside a private mount namespace; `$V` is the binary, `$R` the
/// temporary root, `$T` a scratch directory, and `$M` the common merge options.
fn in_ns(root: &Path, script: &str) -> Out {
    let t = root.parent().unwrap();
    let o = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-euc", script])
        .env("V", BIN)
        .env("R", root)
        .env("T", t)
        .env(
            "M",
            format!(
                "--root {} --image-policy =unprotected+verity+signed+absent --trust {}/trust --dangerous-no-tpm --event-log {}/log",
                root.display(),
                t.display(),
                t.display()
            ),
        )
        .output()
        .expect("unshare (util-linux) must be installed and the tests run as root");
    let out = Out {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    };
    eprintln!("--- stdout\n{}--- stderr\n{}", out.stdout, out.stderr);
    out
}

fn write(p: &Path, s: &str) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, s).unwrap();
}

/// A host tree: os-release and a few files in /usr and /etc.
fn host() -> (tempfile::TempDir, PathBuf) {
    let t = tempfile::tempdir().unwrap();
    let r = t.path().join("root");
    write(&r.join("etc/os-release"), "ID=debian\nVERSION_ID=12\n");
    write(&r.join("etc/host.conf"), "host-etc\n");
    write(&r.join("usr/share/host/f"), "host-usr\n");
    write(&r.join("usr/bin/true"), "");
    // Only the TEST-ONLY leaf certificate is trusted.
    let trust = t.path().join("trust");
    std::fs::create_dir_all(&trust).unwrap();
    std::fs::copy(keys().join("leaf.crt"), trust.join("leaf.crt")).unwrap();
    (t, r)
}

/// A directory sysext in /var/lib/extensions.
fn dir_sysext(r: &Path, name: &str, files: &[(&str, &str)], release: &str) -> PathBuf {
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
    d
}

fn dir_confext(r: &Path, name: &str, files: &[(&str, &str)], release: &str) -> PathBuf {
    let d = r.join("var/lib/confexts").join(name);
    write(
        &d.join(format!("etc/extension-release.d/extension-release.{name}")),
        release,
    );
    for (p, c) in files {
        write(&d.join(p), c);
    }
    d
}

/// A bare erofs sysext with sidecar verity data (`NAME.raw`, `NAME.verity`, `NAME.roothash`)
/// made by mkfs.erofs and veritysetup.
fn erofs_sysext(r: &Path, name: &str, files: &[(&str, &str)], release: &str) -> PathBuf {
    let t = r.parent().unwrap().join(format!("src-{name}"));
    let rel = name.split(['_', '+']).next().unwrap();
    write(
        &t.join(format!(
            "usr/lib/extension-release.d/extension-release.{rel}"
        )),
        release,
    );
    for (p, c) in files {
        write(&t.join(p), c);
    }
    let dir = r.join("var/lib/extensions");
    std::fs::create_dir_all(&dir).unwrap();
    let img = dir.join(format!("{name}.raw"));
    let st = Command::new("mkfs.erofs")
        .arg("--quiet")
        .arg(&img)
        .arg(&t)
        .status()
        .expect("mkfs.erofs (erofs-utils) must be installed");
    assert!(st.success());
    let hash = dir.join(format!("{name}.verity"));
    let o = Command::new("veritysetup")
        .arg("format")
        .arg(&img)
        .arg(&hash)
        .output()
        .expect("veritysetup (cryptsetup-bin) must be installed");
    assert!(o.status.success());
    let text = String::from_utf8_lossy(&o.stdout);
    let root = text
        .lines()
        .find_map(|l| l.strip_prefix("Root hash:"))
        .unwrap()
        .trim()
        .to_string();
    write(&dir.join(format!("{name}.roothash")), &format!("{root}\n"));
    img
}

fn keys() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("keys")
}

/// Signs the image's sidecar root hash with a TEST-ONLY key (`NAME.roothash.p7s`).
fn sign_image(img: &Path, key: &str) {
    let rh = img.with_extension("roothash");
    let st = Command::new(BIN)
        .arg("sign")
        .arg("--key")
        .arg(keys().join(format!("{key}.key")))
        .arg("--cert")
        .arg(keys().join(format!("{key}.crt")))
        .arg("--root-hash-file")
        .arg(&rh)
        .arg("-o")
        .arg(img.with_extension("roothash.p7s"))
        .status()
        .unwrap();
    assert!(st.success());
}

fn mountinfo_line<'a>(out: &'a str, mnt: &Path) -> &'a str {
    let needle = format!(" {} ", mnt.display());
    out.lines()
        .find(|l| l.contains(&needle) && l.contains(" - overlay "))
        .unwrap_or_else(|| panic!("no overlay at {}", mnt.display()))
}

/// The overlay's lower layers from its mountinfo line: `lowerdir=a:b` (mount(2)) or repeated
/// `lowerdir+=a` (fd-based fsconfig).
fn lower_layers(line: &str) -> Vec<String> {
    let sopts = line.split(" - ").nth(1).unwrap().split(' ').nth(2).unwrap();
    let mut out = Vec::new();
    for o in sopts.split(',') {
        if let Some(v) = o.strip_prefix("lowerdir=") {
            out.extend(v.split(':').map(String::from));
        } else if let Some(v) = o.strip_prefix("lowerdir+=") {
            out.push(v.to_string());
        }
    }
    out
}

fn opts_of(line: &str) -> Vec<&str> {
    line.split(' ').nth(5).unwrap().split(',').collect()
}

#[test]
fn root_merge_status_unmerge_of_directory_and_erofs_sysexts() {
    let (_t, r) = host();
    let rel = "ID=debian\nVERSION_ID=12\n";
    dir_sysext(
        &r,
        "alpha",
        &[
            ("usr/share/x", "alpha\n"),
            ("usr/share/alpha", "only-alpha\n"),
        ],
        rel,
    );
    dir_sysext(&r, "tool_2", &[("usr/share/x", "tool2\n")], rel);
    dir_sysext(
        &r,
        "tool_10",
        &[("usr/share/x", "tool10\n"), ("opt/tool/o", "opt-file\n")],
        rel,
    );
    erofs_sysext(&r, "img", &[("usr/share/img", "from-erofs\n")], "ID=_any\n");
    let o = in_ns(
        &r,
        r#"
        $V sysext merge $M
        echo "LOG=$($V log show --json --event-log $T/log)"
        echo "X=$(cat $R/usr/share/x)"
        echo "ALPHA=$(cat $R/usr/share/alpha)"
        echo "IMG=$(cat $R/usr/share/img)"
        echo "HOST=$(cat $R/usr/share/host/f)"
        echo "OPT=$(cat $R/opt/tool/o)"
        echo "LIST=$(cat $R/usr/.systemd-sysext/extensions | tr '\n' ,)"
        echo "DEV=$(cat $R/usr/.systemd-sysext/dev)"
        echo "MP=$(mountpoint -d $R/usr)"
        echo "OPTDEV=$(cat $R/opt/.systemd-sysext/dev) $(mountpoint -d $R/opt)"
        cat /proc/self/mountinfo
        echo "STATUS=$($V sysext status --root $R --json | tr -d ' \n')"
        $V sysext unmerge --root $R
        echo "AFTER=$(ls $R/usr/share | tr '\n' ,)"
        test ! -e $R/usr/.systemd-sysext && echo NOMARKER
        $V sysext unmerge --root $R
        echo "STATUS2=$($V sysext status --root $R --json | tr -d ' \n')"
        "#,
    );
    assert_eq!(o.code, 0, "{}", o.stderr);
    let s = &o.stdout;
    // tool_10 sorts after tool_2 with systemd's version order (plain strcmp would say otherwise).
    assert!(s.contains("X=tool10\n"));
    assert!(s.contains("ALPHA=only-alpha\n"));
    assert!(s.contains("IMG=from-erofs\n"));
    assert!(s.contains("HOST=host-usr\n"));
    assert!(s.contains("OPT=opt-file\n"));
    assert!(s.contains("LIST=alpha,img,tool_2,tool_10,\n"));
    let dev = s.lines().find_map(|l| l.strip_prefix("DEV=")).unwrap();
    let mp = s.lines().find_map(|l| l.strip_prefix("MP=")).unwrap();
    assert_eq!(dev, mp, "marker dev must be the overlay's st_dev");
    let od = s.lines().find_map(|l| l.strip_prefix("OPTDEV=")).unwrap();
    let (a, b) = od.split_once(' ').unwrap();
    assert_eq!(a, b);
    let usr = mountinfo_line(s, &r.join("usr"));
    let uo = opts_of(usr);
    assert!(
        uo.contains(&"ro")
            && uo.contains(&"nodev")
            && !uo.contains(&"noexec")
            && !uo.contains(&"nosuid"),
        "{usr}"
    );
    assert!(usr.contains(" - overlay sysext "), "{usr}");
    // Layer order: meta, tool_10, tool_2, img, alpha, host.
    let layers = lower_layers(usr);
    let lower = layers.join(":");
    assert_eq!(layers.len(), 6, "{lower}");
    assert!(layers[1].ends_with("/tool_10/usr") && layers[2].ends_with("/tool_2/usr"));
    assert!(layers[3].ends_with("/img/usr") && layers[4].ends_with("/alpha/usr"));
    assert_eq!(layers[5], r.join("usr").to_str().unwrap());
    assert!(
        s.contains(r#""merged":true,"extensions":["alpha","img","tool_2","tool_10"]"#),
        "{s}"
    );
    assert!(s.contains("AFTER=bin,host,\n") || s.contains("AFTER=host,\n"));
    assert!(s.contains("NOMARKER"));
    // After unmerge every hierarchy (/usr and /opt were merged) must report itself unmerged.
    let st2 = s.lines().find_map(|l| l.strip_prefix("STATUS2=")).unwrap();
    let ok = st2.starts_with(r#"[{"hierarchy""#) && st2.contains(r#""merged":false"#);
    assert!(ok && !st2.contains(r#""merged":true"#), "{st2}");
    assert!(s.contains("nothing to unmerge"));
    point6_bypass_records(s);
}

/// Issue 12 point 6: under --dangerous-no-tpm each admission is a `dangerous` record that `verity
/// log show` reads back (no PCR, digest = sha256 of the string), and the directory trees that the
/// written policy let in carry their `unprotected` bypass too; the verity image only `no-tpm`.
fn point6_bypass_records(stdout: &str) {
    let log = stdout.lines().find_map(|l| l.strip_prefix("LOG=")).unwrap();
    let recs: serde_json::Value = serde_json::from_str(log).expect("log show --json reads the log");
    let recs = recs.as_array().unwrap();
    let strings: Vec<&str> = recs
        .iter()
        .map(|r| r["content"]["string"].as_str().unwrap())
        .collect();
    for r in recs {
        assert!(r["pcr"].is_null(), "nothing was extended: {r}");
        assert_eq!(r["content"]["eventType"], "dangerous", "{r}");
        let s = r["content"]["string"].as_str().unwrap();
        let d = r["digests"][0]["digest"].as_str().unwrap();
        let want = Command::new("sh")
            .args(["-c", "printf %s \"$S\" | sha256sum | cut -d' ' -f1"])
            .env("S", s)
            .output()
            .unwrap();
        assert_eq!(d, String::from_utf8_lossy(&want.stdout).trim(), "{s}");
    }
    for n in ["alpha", "tool_2", "tool_10"] {
        for b in ["unprotected", "no-tpm"] {
            // A directory tree is measured with its content digest (verity-tree-v1).
            let want = format!("dangerous:{b}:sysext:{n}:unprotected-tree-");
            assert!(
                strings.iter().any(|s| s
                    .strip_prefix(want.as_str())
                    .and_then(|r| r.strip_suffix(":unsigned"))
                    .is_some_and(|d| d.len() == 64)),
                "{want}<digest>:unsigned in {strings:?}"
            );
        }
    }
    let img: Vec<&&str> = strings
        .iter()
        .filter(|s| s.contains(":sysext:img:"))
        .collect();
    assert_eq!(img.len(), 1, "{img:?}");
    assert!(
        img[0].starts_with("dangerous:no-tpm:sysext:img:") && img[0].ends_with(":unsigned"),
        "{img:?}"
    );
    assert_eq!(recs.len(), 7, "{strings:?}");
}

#[test]
fn root_confext_flags_marker_and_noexec_override() {
    let (_t, r) = host();
    dir_confext(
        &r,
        "cfg",
        &[("etc/app.conf", "cfg\n")],
        "ID=debian\nVERSION_ID=12\n",
    );
    let o = in_ns(
        &r,
        r#"
        $V confext merge $M
        echo "APP=$(cat $R/etc/app.conf) HOST=$(cat $R/etc/host.conf)"
        echo "LIST=$(cat $R/etc/.systemd-confext/confexts)"
        echo "DEV=$(cat $R/etc/.systemd-confext/dev) $(mountpoint -d $R/etc)"
        grep ' - overlay confext ' /proc/self/mountinfo | sed 's/^/MI1 /'
        $V sysext status --root $R --json | tr -d ' \n'; echo
        $V confext refresh $M --noexec=no
        grep ' - overlay confext ' /proc/self/mountinfo | sed 's/^/MI2 /'
        $V confext unmerge --root $R
        "#,
    );
    assert_eq!(o.code, 0, "{}", o.stderr);
    let s = &o.stdout;
    assert!(s.contains("APP=cfg HOST=host-etc"));
    assert!(s.contains("LIST=cfg\n"));
    let d = s.lines().find_map(|l| l.strip_prefix("DEV=")).unwrap();
    let (a, b) = d.split_once(' ').unwrap();
    assert_eq!(a, b);
    let mi1 = s.lines().find(|l| l.starts_with("MI1 ")).unwrap();
    let o1 = opts_of(&mi1[4..]);
    for f in ["ro", "nodev", "nosuid", "noexec"] {
        assert!(o1.contains(&f), "{f} missing: {mi1}");
    }
    let mi2 = s.lines().find(|l| l.starts_with("MI2 ")).unwrap();
    let o2 = opts_of(&mi2[4..]);
    assert!(o2.contains(&"nosuid") && !o2.contains(&"noexec"), "{mi2}");
    // sysext status does not claim the confext overlay.
    assert!(!s.contains(r#""merged":true"#) || s.matches(r#""merged":true"#).count() == 0);
}

#[test]
fn root_failing_images_are_skipped_and_strict_merges_nothing() {
    let (_t, r) = host();
    let rel = "ID=debian\nVERSION_ID=12\n";
    dir_sysext(&r, "good", &[("usr/share/good", "good\n")], rel);
    erofs_sysext(&r, "goodimg", &[("usr/share/goodimg", "goodimg\n")], rel);
    dir_sysext(
        &r,
        "wrongos",
        &[("usr/share/wrongos", "x\n")],
        "ID=fedora\nVERSION_ID=40\n",
    );
    // Tampered: one byte of file data changed after the tree was built.
    let bad = erofs_sysext(
        &r,
        "tampered",
        &[("usr/share/tampered", "AAAAAAAAAAAAAAAAAAAAAAAA\n")],
        rel,
    );
    let mut b = std::fs::read(&bad).unwrap();
    let pos = b
        .windows(8)
        .position(|w| w == b"AAAAAAAA")
        .expect("file data inline in the image");
    b[pos] = b'B';
    std::fs::write(&bad, b).unwrap();
    // Signed by a key nobody trusts.
    let untrusted = erofs_sysext(&r, "untrusted", &[("usr/share/untrusted", "u\n")], rel);
    sign_image(&untrusted, "other");
    // Signed by the trusted leaf: merges as "signed".
    let signed = erofs_sysext(&r, "signed", &[("usr/share/signed", "s\n")], rel);
    sign_image(&signed, "leaf");
    let o = in_ns(
        &r,
        r#"
        set +e
        $V sysext merge $M --strict --json > $T/strict.json; echo "STRICT=$?"
        mountpoint -q $R/usr && echo STRICT_MOUNTED
        $V sysext merge $M --json > $T/merge.json; echo "MERGE=$?"
        ls $R/usr/share | tr '\n' ,; echo
        cat $T/merge.json
        "#,
    );
    let s = &o.stdout;
    assert!(s.contains("STRICT=1"), "{s}");
    assert!(!s.contains("STRICT_MOUNTED"));
    assert!(s.contains("MERGE=1"));
    assert!(s.contains("good,goodimg,host,signed,\n"), "{s}");
    let j: serde_json::Value = serde_json::from_str(&s[s.find("{\n").unwrap()..]).unwrap();
    let merged: Vec<&str> = j["merged"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(merged, vec!["good", "goodimg", "signed"]);
    let signer = j["merged"][2]["signer"].as_str().unwrap();
    assert_eq!(signer.len(), 64);
    assert_eq!(j["merged"][2]["protection"], "signed");
    let checks: Vec<(String, String)> = j["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["name"].as_str().unwrap().to_string(),
                f["check"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(
        checks.contains(&("tampered".into(), "integrity".into())),
        "{checks:?}"
    );
    assert!(
        checks.contains(&("wrongos".into(), "release".into())),
        "{checks:?}"
    );
    assert!(
        checks.contains(&("untrusted".into(), "signature".into())),
        "{checks:?}"
    );
    assert_eq!(checks.len(), 3, "{checks:?}");
    assert!(
        o.stderr.contains("tampered") && o.stderr.contains("data block"),
        "{}",
        o.stderr
    );
}

#[test]
fn root_double_merge_refused_and_unmerge_keeps_unrelated_submounts() {
    let (_t, r) = host();
    dir_sysext(&r, "a", &[("usr/share/a", "a\n")], "ID=_any\n");
    std::fs::create_dir_all(r.join("usr/local")).unwrap();
    let o = in_ns(
        &r,
        r#"
        mount -t tmpfs before $R/usr/local
        echo pre > $R/usr/local/pre
        $V sysext merge $M
        echo "PRE=$(cat $R/usr/local/pre) A=$(cat $R/usr/share/a)"
        set +e
        $V sysext merge $M; echo "AGAIN=$?"
        set -e
        mount -t tmpfs after $R/usr/share/host
        echo post > $R/usr/share/host/post
        $V sysext unmerge --root $R
        echo "POST=$(cat $R/usr/share/host/post) PRE2=$(cat $R/usr/local/pre)"
        test ! -e $R/usr/share/a && echo GONE
        "#,
    );
    assert_eq!(o.code, 0, "{}", o.stderr);
    let s = &o.stdout;
    assert!(s.contains("PRE=pre A=a"), "{s}");
    assert!(s.contains("AGAIN=2"));
    assert!(o.stderr.contains("already merged"));
    assert!(s.contains("POST=post PRE2=pre"), "{s}");
    assert!(s.contains("GONE"));
}

#[test]
fn root_refresh_is_atomic_for_a_polling_reader() {
    let (_t, r) = host();
    dir_sysext(&r, "app_1", &[("usr/share/app", "v1\n")], "ID=_any\n");
    let o = in_ns(
        &r,
        r#"
        trap 'touch $T/stop' EXIT
        $V sysext merge $M
        ( n=0; while [ ! -e $T/stop ]; do
            read -r v < $R/usr/share/app || echo MISSING >> $T/miss
            n=$((n+1)); done; echo $n > $T/reads ) &
        for i in 2 3 4 5 6; do
          d=$R/var/lib/extensions/app_$i/usr
          mkdir -p $d/share $d/lib/extension-release.d
          echo ID=_any > $d/lib/extension-release.d/extension-release.app
          echo v$i > $d/share/app
          $V sysext refresh $M > /dev/null
          echo "NOW=$(cat $R/usr/share/app)"
        done
        touch $T/stop; wait
        echo "READS=$(cat $T/reads)"
        test -e $T/miss && echo "MISSED=$(wc -l < $T/miss)"
        echo "DEPTH=$(grep -c ' - overlay sysext ' /proc/self/mountinfo)"
        "#,
    );
    assert_eq!(o.code, 0, "{}", o.stderr);
    let s = &o.stdout;
    assert!(s.contains("NOW=v6\n"), "{s}");
    assert!(!s.contains("MISSED="), "reader saw the file missing: {s}");
    let reads: u64 = s
        .lines()
        .find_map(|l| l.strip_prefix("READS="))
        .unwrap()
        .parse()
        .unwrap();
    assert!(reads > 50, "reader barely ran: {reads}");
    // The old overlays were detached, not stacked.
    assert!(s.contains("DEPTH=1\n"), "{s}");
}

/// Builds a signed DDI with `verity image build` from a source tree.
fn ddi(r: &Path, class: &str, name: &str, files: &[(&str, &str)], key: &str) -> PathBuf {
    let src = r.parent().unwrap().join(format!("ddi-src-{name}"));
    let rel_dir = if class == "sysext" {
        "usr/lib/extension-release.d"
    } else {
        "etc/extension-release.d"
    };
    write(
        &src.join(format!("{rel_dir}/extension-release.{name}")),
        "ID=debian\nVERSION_ID=12\n",
    );
    for (p, c) in files {
        write(&src.join(p), c);
    }
    let dir = r.join(if class == "sysext" {
        "var/lib/extensions"
    } else {
        "var/lib/confexts"
    });
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join(format!("{name}.raw"));
    let st = Command::new(BIN)
        .args(["image", "build", "--class", class])
        .arg("--key")
        .arg(keys().join(format!("{key}.key")))
        .arg("--cert")
        .arg(keys().join(format!("{key}.crt")))
        .arg("-o")
        .arg(&out)
        .arg(&src)
        .status()
        .unwrap();
    assert!(st.success(), "verity image build failed");
    out
}

#[test]
fn root_signed_ddis_from_image_build_merge_and_untrusted_ones_do_not() {
    let (_t, r) = host();
    ddi(
        &r,
        "sysext",
        "tools",
        &[("usr/share/tools/t", "tools\n"), ("usr/share/x", "ddi\n")],
        "leaf",
    );
    ddi(
        &r,
        "sysext",
        "evil",
        &[("usr/share/evil", "evil\n")],
        "other",
    );
    ddi(&r, "confext", "conf", &[("etc/conf.d/c", "conf\n")], "leaf");
    let o = in_ns(
        &r,
        r#"
        set +e
        $V sysext merge $M --json > $T/s.json; echo "S=$?"
        $V confext merge $M --json > $T/c.json; echo "C=$?"
        set -e
        echo "T=$(cat $R/usr/share/tools/t) X=$(cat $R/usr/share/x) C=$(cat $R/etc/conf.d/c) H=$(cat $R/etc/host.conf)"
        test ! -e $R/usr/share/evil && echo NOEVIL
        echo "LIST=$(cat $R/usr/.systemd-sysext/extensions)"
        cat $T/s.json
        $V sysext unmerge --root $R; $V confext unmerge --root $R
        "#,
    );
    let s = &o.stdout;
    assert!(s.contains("S=1") && s.contains("C=0"), "{s}");
    assert!(s.contains("T=tools X=ddi C=conf H=host-etc"), "{s}");
    assert!(s.contains("NOEVIL"));
    assert!(s.contains("LIST=tools\n"));
    assert!(
        o.stderr.contains("evil") && o.stderr.contains("not in the trust store"),
        "{}",
        o.stderr
    );
    assert!(s.contains(r#""protection": "signed""#));
}
