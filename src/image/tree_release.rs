//! Reading the release file out of a mounted, verified tree: an extension's extension-release
//! (the file named for the image, or systemd's single `user.extension-release.strict=0` fallback)
//! and a root's os-release. Every path is resolved inside the tree (`RESOLVE_IN_ROOT`, as
//! systemd's chase does), so a symlink in the image cannot point the read at the host, and every
//! read is bounded by [`limits::RELEASE_FILE`].

use super::ostree::OS_RELEASE_PATHS;
use super::release::{release_name, release_path, OsRelease};
use super::Class;
use crate::limits;
use crate::sys::pivot;
use rustix::fs::OFlags;
use std::io::Read;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;

/// The file at `rel` inside the tree opened as `root` (mounted at `mnt`, for messages), or `None`
/// when it cannot be opened there; an over-long or unreadable file is an error naming it.
fn read_in_tree(root: BorrowedFd<'_>, mnt: &Path, rel: &str) -> Result<Option<Vec<u8>>, String> {
    let Ok(fd) = pivot::open_in_root(root, rel, OFlags::RDONLY) else {
        return Ok(None);
    };
    let shown = mnt.join(rel);
    let max = limits::RELEASE_FILE as u64;
    let mut bytes = Vec::new();
    std::fs::File::from(fd)
        .take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("{}: {e}", shown.display()))?;
    if bytes.len() as u64 > max {
        return Err(format!("{}: larger than {max} bytes", shown.display()));
    }
    Ok(Some(bytes))
}

/// The os-release of a root tree (etc/os-release, else usr/lib/os-release); `None` when it has
/// none (the tree check refuses that).
pub fn read_os_release(mnt: &Path) -> Result<Option<OsRelease>, String> {
    let root = pivot::open_dir(mnt).map_err(|e| e.to_string())?;
    for p in OS_RELEASE_PATHS {
        if let Some(bytes) = read_in_tree(root.as_fd(), mnt, p)? {
            return OsRelease::parse(&bytes)
                .map(Some)
                .map_err(|e| format!("{}: {e}", mnt.join(p).display()));
        }
    }
    Ok(None)
}

/// The text of the extension-release of image `name` mounted at `mnt`: the file named for the
/// image, or (systemd's fallback) the one file marked `user.extension-release.strict=0`.
pub fn read_extension_release(name: &str, mnt: &Path, class: Class) -> Result<String, String> {
    let root = pivot::open_dir(mnt).map_err(|e| e.to_string())?;
    let dir = class.release_dir();
    let want = release_path(class, release_name(name));
    let bytes = match read_in_tree(root.as_fd(), mnt, &want)? {
        Some(b) => b,
        None => fallback(root.as_fd(), name, mnt, dir)?,
    };
    String::from_utf8(bytes).map_err(|_| format!("{}: not UTF-8", mnt.join(&want).display()))
}

/// systemd's fallback: exactly one regular `extension-release.*` file marked non-strict.
fn fallback(root: BorrowedFd<'_>, name: &str, mnt: &Path, dir: &str) -> Result<Vec<u8>, String> {
    let mut found = Vec::new();
    if let Ok(rd) = std::fs::read_dir(mnt.join(dir)) {
        for e in rd.flatten().take(limits::FS_DIRECTORY_ENTRIES) {
            let n = e.file_name().to_string_lossy().into_owned();
            if n.starts_with("extension-release.")
                && e.file_type().map(|t| t.is_file()).unwrap_or(false)
                && strict_false(&e.path())
            {
                found.push(n);
            }
        }
    }
    match found.as_slice() {
        [] => Err(format!(
            "no extension-release.{} in {dir}",
            release_name(name)
        )),
        [one] => {
            let rel = format!("{dir}/{one}");
            read_in_tree(root, mnt, &rel)?
                .ok_or_else(|| format!("{}: cannot be opened", mnt.join(&rel).display()))
        }
        _ => Err("more than one acceptable extension-release file (ENOTUNIQ)".into()),
    }
}

/// Whether the file is marked `user.extension-release.strict=0` (or no/false/n/off).
fn strict_false(path: &Path) -> bool {
    let mut buf = [0u8; 16];
    match rustix::fs::getxattr(path, "user.extension-release.strict", &mut buf[..]) {
        Ok(n) => matches!(
            std::str::from_utf8(&buf[..n])
                .unwrap_or("")
                .trim_end_matches('\0'),
            "0" | "no" | "false" | "n" | "off"
        ),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn tree() -> (tempfile::TempDir, std::path::PathBuf) {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("tree/usr/lib/extension-release.d");
        fs::create_dir_all(&dir).unwrap();
        (t, dir)
    }

    #[test]
    fn reads_the_file_named_for_the_image() {
        let (t, dir) = tree();
        fs::write(dir.join("extension-release.foo"), "ID=_any\n").unwrap();
        let text = read_extension_release("foo_1.2", &t.path().join("tree"), Class::Sysext);
        assert_eq!(text.unwrap(), "ID=_any\n");
    }

    #[test]
    fn a_symlink_cannot_point_the_read_at_the_host() {
        let (t, dir) = tree();
        let outside = t.path().join("host-secret");
        fs::write(&outside, "ID=_any\nSECRET=1\n").unwrap();
        std::os::unix::fs::symlink(&outside, dir.join("extension-release.foo")).unwrap();
        // Resolved inside the tree the absolute target does not exist, so nothing is read.
        let e = read_extension_release("foo", &t.path().join("tree"), Class::Sysext).unwrap_err();
        assert!(e.contains("no extension-release.foo"), "{e}");
    }

    #[test]
    fn an_oversized_release_file_is_refused_naming_it() {
        let (t, dir) = tree();
        let big = "X=1\n".repeat(limits::RELEASE_FILE / 4 + 1);
        fs::write(dir.join("extension-release.foo"), big).unwrap();
        let e = read_extension_release("foo", &t.path().join("tree"), Class::Sysext).unwrap_err();
        assert!(e.contains("extension-release.foo: larger than"), "{e}");
    }

    #[test]
    fn os_release_prefers_etc_and_is_absent_without_either() {
        let t = tempfile::tempdir().unwrap();
        assert!(read_os_release(t.path()).unwrap().is_none());
        fs::create_dir_all(t.path().join("usr/lib")).unwrap();
        fs::create_dir_all(t.path().join("etc")).unwrap();
        fs::write(t.path().join("usr/lib/os-release"), "ID=usr\n").unwrap();
        fs::write(t.path().join("etc/os-release"), "ID=etc\n").unwrap();
        let r = read_os_release(t.path()).unwrap().unwrap();
        assert_eq!(r.get("ID"), Some("etc"));
    }
}
