//! `image build --version V --epoch N`: writes `IMAGE_VERSION=V` and `VERITY_EPOCH=N` into the
//! image's extension-release (os-release for a root), the signed content rollback protection
//! reads them from. The source tree is never changed: it is copied (`cp -a --reflink=auto`, so
//! copy-on-write file systems share the data) into a private staging directory beside the output,
//! and the release file of the copy is rewritten.
//!
//! [`stamp`] is the pure part: the release text with those keys' lines replaced. A value the
//! source already carries must agree with the one asked for, so a build never silently
//! contradicts the tree it was given.

use super::build::BuildError;
use super::release::OsRelease;
use std::path::Path;
use std::process::Command;

/// Replaces the lines assigning each key in `fields` with one `KEY=value` line each, appended at
/// the end. Refuses when the text already assigns a key a different (non-empty) value.
pub fn stamp(text: &[u8], fields: &[(&str, String)], what: &str) -> Result<Vec<u8>, BuildError> {
    let parsed = OsRelease::parse(text).map_err(|e| BuildError::Source(format!("{what}: {e}")))?;
    for (k, v) in fields {
        if let Some(old) = parsed.get(k) {
            if old != v {
                return Err(BuildError::Usage(format!(
                    "{what} already says {k}={old}; refusing to build it as {k}={v} (change the \
                     source or the option)"
                )));
            }
        }
    }
    let s = std::str::from_utf8(text).expect("parsed as UTF-8 above");
    let mut out = String::with_capacity(s.len() + 64);
    for line in s.lines() {
        let key = line
            .trim()
            .split_once('=')
            .map(|(k, _)| k.trim())
            .filter(|_| !line.trim_start().starts_with(['#', ';']));
        if key.is_some_and(|k| fields.iter().any(|(f, _)| *f == k)) {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    for (k, v) in fields {
        out.push_str(&format!("{k}={v}\n"));
    }
    Ok(out.into_bytes())
}

/// A copy of the source tree (a private temporary directory beside the output), removed on drop.
pub type Staged = tempfile::TempDir;

/// Copies `src` beside `output` and stamps `fields` into each of `release_files` (relative to the
/// tree) that is a regular file; at least one must be.
pub fn stage(
    src: &Path,
    output: &Path,
    release_files: &[String],
    fields: &[(&str, String)],
) -> Result<Staged, BuildError> {
    let dir = output
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = output
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // tempfile makes the directory 0700 under a fresh random name, so a stale copy from a crashed
    // run or another builder never collides with this one.
    let staged = tempfile::Builder::new()
        .prefix(&format!(".{name}.stage."))
        .tempdir_in(dir)
        .map_err(|e| BuildError::Io(format!("{}: {e}", dir.display())))?;
    let out = Command::new("cp")
        .arg("-a")
        .arg("--reflink=auto")
        .arg(src.join("."))
        .arg(staged.path())
        .output()
        .map_err(|e| BuildError::Io(format!("cannot run cp: {e}")))?;
    if !out.status.success() {
        return Err(BuildError::Io(format!(
            "copying {} to stamp its release file failed: {}",
            src.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let mut stamped = 0;
    for rel in release_files {
        let p = staged.path().join(rel);
        // A symlink (etc/os-release -> ../usr/lib/os-release) is left alone: writing through it
        // could leave the tree, and its target is stamped itself.
        match std::fs::symlink_metadata(&p) {
            Ok(m) if m.is_file() => {}
            _ => continue,
        }
        let text =
            std::fs::read(&p).map_err(|e| BuildError::Io(format!("{}: {e}", p.display())))?;
        let new = stamp(&text, fields, &format!("{}/{rel}", src.display()))?;
        // Replace, not rewrite in place: the copy may share blocks or a hard link with the source.
        std::fs::remove_file(&p).map_err(|e| BuildError::Io(format!("{}: {e}", p.display())))?;
        std::fs::write(&p, new).map_err(|e| BuildError::Io(format!("{}: {e}", p.display())))?;
        stamped += 1;
    }
    if stamped == 0 {
        return Err(BuildError::Source(format!(
            "{}: none of {} is a regular file to write {} into",
            src.display(),
            release_files.join(", "),
            fields
                .iter()
                .map(|(k, _)| *k)
                .collect::<Vec<_>>()
                .join(" and ")
        )));
    }
    Ok(staged)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(v: &str) -> Vec<(&'static str, String)> {
        vec![("IMAGE_VERSION", v.to_string())]
    }

    #[test]
    fn replaces_and_appends() {
        let text = b"ID=debian\n# IMAGE_VERSION=old comment\nIMAGE_VERSION=\nVERSION_ID=12";
        let out = stamp(text, &f("2.1"), "x").unwrap();
        assert_eq!(
            String::from_utf8(out.clone()).unwrap(),
            "ID=debian\n# IMAGE_VERSION=old comment\nVERSION_ID=12\nIMAGE_VERSION=2.1\n"
        );
        let r = OsRelease::parse(&out).unwrap();
        assert_eq!(r.get("IMAGE_VERSION"), Some("2.1"));
        assert_eq!(r.get("VERSION_ID"), Some("12"));
        // The same value again is fine; both keys at once.
        let both = vec![
            ("IMAGE_VERSION", "2.1".to_string()),
            ("VERITY_EPOCH", "3".to_string()),
        ];
        let out2 = stamp(&out, &both, "x").unwrap();
        let r = OsRelease::parse(&out2).unwrap();
        assert_eq!(r.get("VERITY_EPOCH"), Some("3"));
        let text = String::from_utf8(out2).unwrap();
        assert_eq!(
            text.lines()
                .filter(|l| l.starts_with("IMAGE_VERSION="))
                .count(),
            1
        );
    }

    #[test]
    fn refuses_a_contradiction() {
        let e = stamp(b"ID=x\nIMAGE_VERSION=\"1.0\"\n", &f("2.0"), "tree/rel").unwrap_err();
        assert!(
            e.to_string()
                .contains("tree/rel already says IMAGE_VERSION=1.0"),
            "{e}"
        );
        assert!(stamp(b"\xff", &f("1"), "x").is_err());
    }

    #[test]
    fn stages_a_copy_and_leaves_the_source_alone() {
        let t = tempfile::tempdir().unwrap();
        let src = t.path().join("src");
        std::fs::create_dir_all(src.join("usr/lib/extension-release.d")).unwrap();
        let rel = "usr/lib/extension-release.d/extension-release.foo";
        std::fs::write(src.join(rel), b"ID=_any\n").unwrap();
        std::fs::write(src.join("usr/lib/data"), b"payload").unwrap();
        let out = t.path().join("foo.raw");
        let s = stage(&src, &out, &[rel.to_string()], &f("5")).unwrap();
        let staged = std::fs::read_to_string(s.path().join(rel)).unwrap();
        assert_eq!(staged, "ID=_any\nIMAGE_VERSION=5\n");
        assert_eq!(
            std::fs::read(s.path().join("usr/lib/data")).unwrap(),
            b"payload"
        );
        assert_eq!(std::fs::read(src.join(rel)).unwrap(), b"ID=_any\n");
        let p = s.path().to_path_buf();
        drop(s);
        assert!(!p.exists());
        // Nothing to stamp.
        let e = stage(&src, &out, &["etc/os-release".into()], &f("5"))
            .err()
            .unwrap();
        assert!(e.to_string().contains("none of etc/os-release"), "{e}");
    }
}
