//! Step 4: the release file of the mounted, verified tree. An extension's extension-release is
//! checked for compatibility as systemd-sysext does; a soft-reboot root's os-release is only read
//! here (the tree is checked as an OS later); `--dangerous-skip-release-check` skips the
//! compatibility check but still reads the file for the version. The version is never taken from
//! a file name.

use super::{AdmitError, Config};
use crate::image::ostree::OS_RELEASE_PATHS;
use crate::image::release::{self, release_name, Host, OsRelease};
use crate::image::Class;
use std::io::Read;
use std::path::Path;

/// A release file larger than this is refused (systemd's are a few hundred bytes).
const MAX_RELEASE: u64 = 64 << 10;

/// The release file of the image `name` mounted at `mnt`, checked as `cfg` says; `None` when it
/// has none and that is allowed (a root without os-release, a forced extension).
pub fn check(name: &str, mnt: &Path, cfg: &Config) -> Result<Option<OsRelease>, AdmitError> {
    if cfg.nextroot {
        // A root is checked as an OS later; here only its os-release is read.
        read_os_release(mnt).map_err(AdmitError::Release)
    } else if cfg.force {
        // --dangerous-skip-release-check skips compatibility, not rollback: without a readable
        // release file the image has no version (refused once a floor exists).
        Ok(read_release_text(name, mnt, cfg.class)
            .ok()
            .and_then(|t| OsRelease::parse(t.as_bytes()).ok()))
    } else {
        check_release(name, mnt, cfg)
            .map(Some)
            .map_err(AdmitError::Release)
    }
}

/// The os-release of a root tree (etc/os-release, else usr/lib/os-release), resolved inside the
/// tree, never through a symlink out of it. None when it has none (the tree check refuses that).
pub fn read_os_release(mnt: &Path) -> Result<Option<OsRelease>, String> {
    use crate::sys::pivot;
    use rustix::fs::OFlags;
    use std::os::fd::AsFd;
    let root = pivot::open_dir(mnt).map_err(|e| e.to_string())?;
    for p in OS_RELEASE_PATHS {
        let Ok(fd) = pivot::open_in_root(root.as_fd(), p, OFlags::RDONLY) else {
            continue;
        };
        let mut bytes = Vec::new();
        std::fs::File::from(fd)
            .take(MAX_RELEASE + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| format!("{}: {e}", mnt.join(p).display()))?;
        if bytes.len() as u64 > MAX_RELEASE {
            return Err(format!(
                "{}: larger than {MAX_RELEASE} bytes",
                mnt.join(p).display()
            ));
        }
        return OsRelease::parse(&bytes)
            .map(Some)
            .map_err(|e| format!("{}: {e}", mnt.join(p).display()));
    }
    Ok(None)
}

/// Finds the image's extension-release file under its mount and returns its text: the file named
/// for the image, or (systemd's fallback) the one file marked `user.extension-release.strict=0`.
fn read_release_text(name: &str, mnt: &Path, class: Class) -> Result<String, String> {
    let dir = mnt.join(class.release_dir());
    let want = dir.join(format!("extension-release.{}", release_name(name)));
    if let Ok(t) = std::fs::read_to_string(&want) {
        return Ok(t);
    }
    let mut found = Vec::new();
    if let Ok(rd) = std::fs::read_dir(&dir) {
        for e in rd.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if n.starts_with("extension-release.")
                && e.file_type().map(|t| t.is_file()).unwrap_or(false)
                && strict_false(&e.path())
            {
                found.push(e.path());
            }
        }
    }
    match found.len() {
        0 => Err(format!(
            "no extension-release.{} in {}",
            release_name(name),
            class.release_dir()
        )),
        1 => std::fs::read_to_string(&found[0]).map_err(|e| format!("{}: {e}", found[0].display())),
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

/// Finds and checks the image's extension-release file; returns it parsed.
fn check_release(name: &str, mnt: &Path, cfg: &Config) -> Result<OsRelease, String> {
    let text = read_release_text(name, mnt, cfg.class)?;
    if cfg.class == Class::Sysext && mnt.join("usr/lib/os-release").exists() {
        return Err(
            "image ships usr/lib/os-release, which would replace the host's identity".into(),
        );
    }
    let ext = OsRelease::parse(text.as_bytes()).map_err(|e| e.to_string())?;
    let host = Host {
        os_release: &cfg.host,
        arch: &cfg.arch,
        scope: cfg.scope(),
        class: cfg.class,
    };
    release::validate(&host, &ext).map_err(|e| e.to_string())?;
    Ok(ext)
}
