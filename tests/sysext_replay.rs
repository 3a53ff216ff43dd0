//! A replay of systemd 257's own sysext test cases (test/units/TEST-50-DISSECT.sysext.sh of the
//! systemd 257.13 source, `run_sysext_tests`; plus the confext and raw-image checks of
//! TEST-50-DISSECT.dissect.sh), re-expressed here (not copied) and run twice per case: once with
//! `systemd-sysext`/`systemd-confext` 257 (unpacked by tests/oracle/systemd-257) and once with
//! `verity sysext`/`verity confext`, each case as root in its own private mount namespace on its
//! own fake root under a temporary directory. Every sysext case is also run as a confext case on
//! `/etc` (systemd's script has only sysext ones; the code paths are the same in systemd).
//!
//! The verdict of a case is whether systemd's assertions hold (files visible or not, hierarchy
//! writable or not, mutable data kept or discarded, expected failures failing). The table of
//! cases and both verdicts is printed; a case where the verdicts differ fails the test unless it
//! is in [`ALLOWED_DIFFERENCES`] with its reason (README.md, "Differences from systemd-sysext").
//!
//! verity is stricter by default (signed images only, every merge measured). The replay passes
//! what systemd's test implies: an explicit image policy that admits unprotected images (systemd's
//! own default does), and `--dangerous-no-tpm` since the machine has no TPM; each verity call gets
//! them all (`merge`, `unmerge`, `status` alike: one option set for every verb).

use std::path::Path;
use std::process::Command;

#[path = "support/systemd257.rs"]
mod systemd257;

const BIN: &str = env!("CARGO_BIN_EXE_verity");

/// Cases where verity and systemd 257 deliberately disagree: (class, case, reason).
const ALLOWED_DIFFERENCES: &[(&str, &str, &str)] = &[];

/// Helpers every case uses (re-expressed from the systemd script's prepare_*/extension_verify).
/// `$R` fake root, `$H` hierarchy, `$C` class, `$SX` the tool, `$MUT` the mutable dir.
const LIB: &str = r#"
set -eE
trap 'echo "replay: FAILED at line $LINENO: $BASH_COMMAND" >&2' ERR
MUT=$R/var/lib/extensions.mutable$H
sx() { "$SX" --root="$R" "$@"; }
# fails CMD...: CMD must fail, on the case itself (not on its command line), and leave nothing merged.
fails() {
  local e
  if e=$("$@" 2>&1); then echo "replay: expected failure: $*" >&2; return 1; fi
  echo "$e" >&2
  case $e in *Usage:*|*"unexpected argument"*|*"invalid value"*) echo "replay: usage error, not the case's failure" >&2; return 1 ;; esac
  if [ -e "$R$H/.systemd-$C/dev" ]; then echo "replay: $R$H left merged after a failure" >&2; return 1; fi
}
root_init() {
  mkdir -p "$R$H" "$R/usr/lib" "$R/var/lib/extensions" "$R/var/lib/confexts" "$R/var/lib/extensions.mutable"
  printf 'ID=testtest\nID_LIKE="foobar test_alike something-else"\nVERSION=1.2.3\n' > "$R/usr/lib/os-release"
}
ext_image() {
  local name=${2:-test-extension} d rel
  if [ "$C" = sysext ]; then d=$R/var/lib/extensions/$name; rel=$d/usr/lib/extension-release.d
  else d=$R/var/lib/confexts/$name; rel=$d/etc/extension-release.d; fi
  mkdir -p "$rel" "$d$H"
  echo "ID=${1:-_any}" > "$rel/extension-release.$name"
  touch "$d$H/preexisting-file-in-extension-image"
}
mutable_dir() { mkdir -p "$1"; touch "$1/preexisting-file-in-extensions-mutable"; }
host_file() { touch "$R$H/preexisting-file-in-hierarchy"; }
ro_bind() { mount -o bind,ro "$R$H" "$R$H"; }
assert_ro() { if touch "$R$H/probe-$1" 2>/dev/null; then echo "replay: $R$H is writable ($1)" >&2; return 1; fi; }
assert_rw() { touch "$R$H/$1"; }
# verify WHEN [-e] [-h] [-u]: exactly the named preexisting files are visible in the hierarchy.
verify() {
  local when=$1 f o want; shift
  for o in e h u; do
    case $o in e) f=preexisting-file-in-extension-image ;; h) f=preexisting-file-in-hierarchy ;; u) f=preexisting-file-in-extensions-mutable ;; esac
    case " $* " in *" -$o "*) want=1 ;; *) want=0 ;; esac
    if [ $want = 1 ] && [ ! -f "$R$H/$f" ]; then echo "replay: $f missing $when" >&2; ls -la "$R$H" >&2; return 1; fi
    if [ $want = 0 ] && [ -f "$R$H/$f" ]; then echo "replay: $f present $when" >&2; ls -la "$R$H" >&2; return 1; fi
  done
}
"#;

/// (case name as in systemd's script, body).
fn cases() -> Vec<(&'static str, String)> {
    let mut v: Vec<(&'static str, String)> = vec![
        ("simple-read-only-with-read-only-hierarchy", r#"
root_init; ext_image; host_file; ro_bind; assert_ro a
sx merge; assert_ro b; verify merge -e -h
sx unmerge; verify unmerge -h; assert_ro c"#.into()),
        ("simple-read-only-with-mutable-hierarchy", r#"
root_init; ext_image; host_file; assert_rw ok1
sx merge; assert_ro a; verify merge -e -h
sx unmerge; verify unmerge -h; assert_rw ok2"#.into()),
        ("simple-read-only-with-missing-hierarchy", r#"
root_init; rmdir "$R$H"; ext_image
sx merge; assert_ro a; verify merge -e
sx unmerge; verify unmerge"#.into()),
        ("simple-read-only-with-empty-hierarchy", r#"
root_init; ext_image; ro_bind; assert_ro a
sx merge; assert_ro b; verify merge -e
sx unmerge; verify unmerge"#.into()),
        ("simple-mutable-with-read-only-hierarchy-disabled", r#"
root_init; ext_image; mutable_dir "$MUT"; host_file; ro_bind; assert_ro a
sx merge; assert_ro b; verify merge -e -h
sx unmerge; verify unmerge -h"#.into()),
        ("simple-mutable-with-read-only-hierarchy", r#"
root_init; ext_image; mutable_dir "$MUT"; host_file; ro_bind; assert_ro a
sx --mutable=auto merge; assert_rw now-is-mutable; verify merge -e -h -u; test -f "$MUT/now-is-mutable"
sx unmerge; verify unmerge -h; test -f "$MUT/now-is-mutable"; test ! -f "$R$H/now-is-mutable""#.into()),
        ("simple-mutable-with-missing-hierarchy", r#"
root_init; rmdir "$R$H"; ext_image; mutable_dir "$MUT"
sx --mutable=auto merge; assert_rw now-is-mutable; verify merge -e -u; test -f "$MUT/now-is-mutable"
sx unmerge; verify unmerge; test -f "$MUT/now-is-mutable"; test ! -f "$R$H/now-is-mutable""#.into()),
        ("simple-mutable-with-empty-hierarchy", r#"
root_init; ext_image; mutable_dir "$MUT"; ro_bind; assert_ro a
sx --mutable=auto merge; assert_rw now-is-mutable; verify merge -e -u; test -f "$MUT/now-is-mutable"
sx unmerge; verify unmerge; test -f "$MUT/now-is-mutable"; test ! -f "$R$H/now-is-mutable""#.into()),
        ("mutable-symlink-with-read-only-hierarchy", r#"
root_init; ext_image; mutable_dir "$R/upperdir"; ln -sfTr "$R/upperdir" "$MUT"; host_file; ro_bind; assert_ro a
sx --mutable=auto merge; assert_rw now-is-mutable; verify merge -e -h -u
test -f "$MUT/now-is-mutable"; test -f "$R/upperdir/now-is-mutable"
sx unmerge; verify unmerge -h; test -f "$MUT/now-is-mutable"; test -f "$R/upperdir/now-is-mutable"; test ! -f "$R$H/now-is-mutable""#.into()),
        ("mutable-self-upper", r#"
root_init; ext_image; mutable_dir "$R$H"; ln -sfTr "$R$H" "$MUT"; host_file
sx --mutable=auto merge; assert_rw now-is-mutable; verify merge -e -h -u; test -f "$MUT/now-is-mutable"
sx unmerge; verify unmerge -h -u; test -f "$MUT/now-is-mutable"; test -f "$R$H/now-is-mutable""#.into()),
        ("failure-self-upper-ro", r#"
root_init; ext_image; mutable_dir "$R$H"; ln -sfTr "$R$H" "$MUT"; host_file; ro_bind
fails sx --mutable=auto merge"#.into()),
        ("read-only-mutable-dangling-symlink", r#"
root_init; ext_image; ln -sfTr /should/not/exist/ "$MUT"; host_file; ro_bind; assert_ro a
sx --mutable=auto merge; assert_ro b; verify merge -e -h
sx unmerge; verify unmerge -h"#.into()),
        ("disabled", r#"
root_init; ext_image; mutable_dir "$MUT"; host_file; ro_bind; assert_ro a
sx --mutable=no merge; assert_ro b; verify merge -e -h
sx unmerge; verify unmerge -h"#.into()),
        ("imported", r#"
root_init; ext_image; mutable_dir "$MUT"; host_file; ro_bind; assert_ro a
sx --mutable=import merge; assert_ro b; verify merge -e -h -u
sx unmerge; verify unmerge -h"#.into()),
        ("enabled", r#"
root_init; ext_image; host_file; ro_bind; assert_ro a; test ! -d "$MUT"
sx --mutable=yes merge; test -d "$MUT"; assert_rw now-is-mutable; verify merge -e -h; test -f "$MUT/now-is-mutable"
sx unmerge; verify unmerge -h; test -f "$MUT/now-is-mutable"; test ! -f "$R$H/now-is-mutable""#.into()),
        ("simple-read-only-explicit", r#"
root_init; ext_image; host_file; ro_bind; assert_ro a
sx --mutable=auto merge; assert_ro b; verify merge -e -h
sx unmerge; verify unmerge -h"#.into()),
        ("enabled-env-var", r#"
root_init; ext_image; host_file; ro_bind; assert_ro a; test ! -d "$MUT"
env "$MODE_ENV=yes" "$SX" --root="$R" merge; test -d "$MUT"; assert_rw now-is-mutable; verify merge -e -h; test -f "$MUT/now-is-mutable"
env "$MODE_ENV=yes" "$SX" --root="$R" unmerge; verify unmerge -h; test -f "$MUT/now-is-mutable"; test ! -f "$R$H/now-is-mutable""#.into()),
        ("read-only-auto-env-var", r#"
root_init; ext_image; host_file; ro_bind; assert_ro a
env "$MODE_ENV=auto" "$SX" --root="$R" --mutable=auto merge; assert_ro b; verify merge -e -h
env "$MODE_ENV=auto" "$SX" --root="$R" unmerge; verify unmerge -h"#.into()),
        ("auto-mutable-env-var", r#"
root_init; ext_image; mutable_dir "$MUT"; host_file; ro_bind; assert_ro a
env "$MODE_ENV=auto" "$SX" --root="$R" merge; assert_rw now-is-mutable; verify merge -e -h -u; test -f "$MUT/now-is-mutable"
env "$MODE_ENV=auto" "$SX" --root="$R" unmerge; verify unmerge -h; test -f "$MUT/now-is-mutable"; test ! -f "$R$H/now-is-mutable""#.into()),
        ("env-var-disabled", r#"
root_init; ext_image; mutable_dir "$MUT"; host_file; ro_bind; assert_ro a
env "$MODE_ENV=no" "$SX" --root="$R" merge; assert_ro b; verify merge -e -h
env "$MODE_ENV=no" "$SX" --root="$R" unmerge; verify unmerge -h"#.into()),
        ("imported-env-var", r#"
root_init; ext_image; mutable_dir "$MUT"; host_file; ro_bind; assert_ro a
env "$MODE_ENV=import" "$SX" --root="$R" merge; assert_ro b; verify merge -e -h -u
env "$MODE_ENV=import" "$SX" --root="$R" unmerge; verify unmerge -h"#.into()),
        ("env-var-overridden", r#"
root_init; ext_image; mutable_dir "$MUT"; host_file; ro_bind; assert_ro a
env "$MODE_ENV=yes" "$SX" --root="$R" --mutable=no merge; assert_ro b; verify merge -e -h
env "$MODE_ENV=yes" "$SX" --root="$R" unmerge; verify unmerge -h"#.into()),
        ("ephemeral", r#"
root_init; ext_image; mutable_dir "$MUT"; host_file; ro_bind; assert_ro a
sx --mutable=ephemeral merge; assert_rw now-is-mutable; verify merge -e -h; test ! -f "$MUT/now-is-mutable"
sx unmerge; verify unmerge -h; test ! -f "$MUT/now-is-mutable"; test ! -f "$R$H/now-is-mutable""#.into()),
        ("ephemeral-env-var", r#"
root_init; ext_image; mutable_dir "$MUT"; host_file; ro_bind; assert_ro a
env "$MODE_ENV=ephemeral" "$SX" --root="$R" merge; assert_rw now-is-mutable; verify merge -e -h; test ! -f "$MUT/now-is-mutable"
env "$MODE_ENV=ephemeral" "$SX" --root="$R" unmerge; verify unmerge -h; test ! -f "$MUT/now-is-mutable"; test ! -f "$R$H/now-is-mutable""#.into()),
        ("ephemeral-import", r#"
root_init; ext_image; mutable_dir "$MUT"; host_file; ro_bind; assert_ro a
sx --mutable=ephemeral-import merge; assert_rw now-is-mutable; verify merge -e -h -u; test ! -f "$MUT/now-is-mutable"
sx unmerge; verify unmerge -h; test ! -f "$MUT/now-is-mutable"; test ! -f "$R$H/now-is-mutable""#.into()),
        ("ephemeral-import-env-var", r#"
root_init; ext_image; mutable_dir "$MUT"; host_file; ro_bind; assert_ro a
env "$MODE_ENV=ephemeral-import" "$SX" --root="$R" merge; assert_rw now-is-mutable; verify merge -e -h -u; test ! -f "$MUT/now-is-mutable"
env "$MODE_ENV=ephemeral-import" "$SX" --root="$R" unmerge; verify unmerge -h; test ! -f "$MUT/now-is-mutable"; test ! -f "$R$H/now-is-mutable""#.into()),
        ("ephemeral-import-self", r#"
root_init; ext_image; mutable_dir "$R$H"; ln -sfTr "$R$H" "$MUT"; host_file
fails sx --mutable=ephemeral-import merge"#.into()),
        ("import-self", r#"
root_init; ext_image; mutable_dir "$R$H"; ln -sfTr "$R$H" "$MUT"; host_file
fails sx --mutable=import merge"#.into()),
        ("matching-id", r#"
root_init; ext_image testtest test-extension-matching-id; host_file; ro_bind
sx merge; verify merge -e -h
sx unmerge; verify unmerge -h"#.into()),
        ("matching-id-like", r#"
root_init; ext_image test_alike test-extension-matching-id-like; host_file; ro_bind
sx merge; verify merge -e -h
sx unmerge; verify unmerge -h"#.into()),
        ("mutable-directory-with-invalid-permissions", r#"
root_init; ext_image; mutable_dir "$MUT"; host_file; chmod 0755 "$R$H"; chmod 0700 "$MUT"
fails sx --mutable=yes merge"#.into()),
    ];
    for (name, mode) in [
        ("perm-checks-mutable-no", "no"),
        ("perm-checks-mutable-yes", "yes"),
        ("perm-checks-mutable-ephemeral", "ephemeral"),
    ] {
        v.push((
            name,
            format!(
                r#"
root_init; ext_image; mutable_dir "$MUT"; host_file; ro_bind
before=$(stat -c %A "$R$H")
sx --mutable={mode} merge; after=$(stat -c %A "$R$H")
sx unmerge; again=$(stat -c %A "$R$H")
[ "$before" = "$after" ] || {{ echo "replay: mode $before became $after after merge" >&2; false; }}
[ "$before" = "$again" ] || {{ echo "replay: mode $before became $again after unmerge" >&2; false; }}"#
            ),
        ));
    }
    // TEST-50-DISSECT.dissect.sh: an ID=_any, ARCHITECTURE=_any extension with a marker file and
    // an executable script: merged as a directory (confext: the script must not run, noexec) and
    // as a plain squashfs image without verity (unprotected, admitted by the explicit policy).
    v.push((
        "dissect-directory-marker-and-noexec",
        r#"
root_init; host_file
if [ "$C" = sysext ]; then d=$R/run/extensions/test; rel=$d/usr/lib/extension-release.d; f=$H/testfile
else d=$R/run/confexts/test; rel=$d/etc/extension-release.d; f=$H/testfile; fi
mkdir -p "$rel" "$d$H"; printf 'ID=_any\nARCHITECTURE=_any\n' > "$rel/extension-release.test"
echo MARKER_123 > "$d$f"; printf '#!/bin/sh\necho ran\n' > "$d$H/testscript"; chmod +x "$d$H/testscript"
sx merge; grep -q MARKER_123 "$R$f"
if [ "$C" = confext ]; then if "$R$H/testscript" 2>/dev/null; then echo "replay: ran on a noexec confext" >&2; false; fi; else "$R$H/testscript" | grep -q ran; fi
sx status >/dev/null; sx unmerge; test ! -f "$R$f""#
            .into(),
    ));
    v.push((
        "dissect-squashfs-image",
        r#"
root_init; host_file
if [ "$C" = sysext ]; then dir=$R/run/extensions; rel=usr/lib/extension-release.d; else dir=$R/run/confexts; rel=etc/extension-release.d; fi
src=$R/../src-testkit; mkdir -p "$src/$rel" "$src$H" "$dir"
printf 'ID=_any\nARCHITECTURE=_any\n' > "$src/$rel/extension-release.testkit"; echo MARKER_SQ > "$src$H/testfile"
mksquashfs "$src" "$dir/testkit.raw" -quiet -noappend >/dev/null
sx merge; grep -q MARKER_SQ "$R$H/testfile"
sx unmerge; test ! -f "$R$H/testfile""#
            .into(),
    ));
    v
}

/// Runs one case with one tool in a fresh private mount namespace; Ok(()) = systemd's
/// assertions held, Err(log tail) otherwise.
fn run_case(
    base: &Path,
    tool: &str,
    sx: &Path,
    class: &str,
    name: &str,
    body: &str,
) -> Result<(), String> {
    let root = base.join(tool).join(format!("{class}-{name}")).join("root");
    std::fs::create_dir_all(root.parent().unwrap()).unwrap();
    let (h, mode_env) = match class {
        "sysext" => ("/opt", "SYSTEMD_SYSEXT_MUTABLE_MODE"),
        _ => ("/etc", "SYSTEMD_CONFEXT_MUTABLE_MODE"),
    };
    let script = format!("mount --make-rshared /\nmount -t tmpfs tmpfs /run\n{LIB}\n{body}\n");
    let o = Command::new("unshare")
        .args(["-m", "--propagation", "private", "bash", "-c", &script])
        .env("R", &root)
        .env("H", h)
        .env("C", class)
        .env("SX", sx)
        .env("MODE_ENV", mode_env)
        .env_remove("SYSTEMD_SYSEXT_MUTABLE_MODE")
        .env_remove("SYSTEMD_CONFEXT_MUTABLE_MODE")
        .output()
        .expect("unshare (util-linux) and bash must be installed and the test run as root");
    if o.status.success() {
        Ok(())
    } else {
        let err = String::from_utf8_lossy(&o.stderr);
        let tail: Vec<&str> = err.lines().rev().take(12).collect();
        Err(tail.into_iter().rev().collect::<Vec<_>>().join("\n"))
    }
}

/// A wrapper that runs `verity <class>` with the replay's explicit options appended to every
/// call, whatever the verb.
fn verity_wrapper(dir: &Path, class: &str) -> std::path::PathBuf {
    let p = dir.join(format!("verity-{class}"));
    std::fs::write(
        &p,
        format!(
            "#!/bin/sh\nexec {BIN} {class} \"$@\" --image-policy=root=unprotected+absent:usr=unprotected+absent --dangerous-no-tpm --event-log=/run/verity-replay.log\n"
        ),
    )
    .unwrap();
    std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    p
}

#[test]
fn root_oracle_test50_sysext_confext_replay_matches_systemd_257() {
    let sysext = systemd257::tool("systemd-sysext");
    let confext = systemd257::tool("systemd-confext");
    let t = tempfile::tempdir().unwrap();
    let tools = [
        ("sysext", sysext, verity_wrapper(t.path(), "sysext")),
        ("confext", confext, verity_wrapper(t.path(), "confext")),
    ];
    let mut rows = Vec::new();
    for (class, theirs, ours) in &tools {
        for (name, body) in cases() {
            let s = run_case(t.path(), "systemd", theirs, class, name, &body);
            let v = run_case(t.path(), "verity", ours, class, name, &body);
            rows.push((*class, name, s, v));
        }
    }
    let verdict = |r: &Result<(), String>| if r.is_ok() { "pass" } else { "FAIL" };
    println!(
        "{:<8} {:<50} {:<12} {:<8} NOTE",
        "CLASS", "CASE (TEST-50)", "SYSTEMD 257", "VERITY"
    );
    let mut bad = Vec::new();
    let (mut same, mut n_ours) = (0, 0);
    for (class, name, s, v) in &rows {
        let allowed = ALLOWED_DIFFERENCES
            .iter()
            .find(|(c, n, _)| c == class && n == name)
            .map(|(_, _, why)| *why);
        let note = match (s.is_ok() == v.is_ok(), allowed) {
            (true, _) => "",
            (false, Some(why)) => why,
            (false, None) => "DIFFERS",
        };
        println!(
            "{class:<8} {name:<50} {:<12} {:<8} {note}",
            verdict(s),
            verdict(v)
        );
        if s.is_ok() == v.is_ok() {
            same += 1;
        } else if allowed.is_none() {
            bad.push(format!(
                "{class} {name}: systemd {} / verity {}\n  systemd: {}\n  verity: {}",
                verdict(s),
                verdict(v),
                s.as_ref().err().map(String::as_str).unwrap_or("-"),
                v.as_ref().err().map(String::as_str).unwrap_or("-")
            ));
        }
        n_ours += v.is_ok() as usize;
    }
    let n_theirs = rows.iter().filter(|r| r.2.is_ok()).count();
    println!(
        "{} cases: systemd 257 passes {n_theirs}, verity passes {n_ours}, same verdict in {same}",
        rows.len()
    );
    // The replay is only a comparison if systemd itself passes its own cases here.
    assert_eq!(
        n_theirs,
        rows.len(),
        "systemd 257 fails some of its own cases: the replay is broken"
    );
    assert!(bad.is_empty(), "verdicts differ:\n{}", bad.join("\n"));
}
