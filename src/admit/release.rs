//! Step 4: the release file of the mounted, verified tree. An extension's extension-release is
//! checked for compatibility as systemd-sysext does; a soft-reboot root's os-release is only read
//! here (the tree is checked as an OS later); `--dangerous-skip-release-check` skips the
//! compatibility check but still reads the file for the version. The version is never taken from
//! a file name.

use super::{AdmitError, Config};
use crate::image::release::{self, Host, OsRelease};
use crate::image::tree_release::{self, read_extension_release};
use crate::image::Class;
use std::path::Path;

/// The release file of the image `name` mounted at `mnt`, checked as `cfg` says; `None` when it
/// has none and that is allowed (a root without os-release, a forced extension).
pub fn check(name: &str, mnt: &Path, cfg: &Config) -> Result<Option<OsRelease>, AdmitError> {
    if cfg.nextroot {
        // A root is checked as an OS later; here only its os-release is read.
        tree_release::read_os_release(mnt).map_err(AdmitError::Release)
    } else if cfg.force {
        // --dangerous-skip-release-check skips compatibility, not rollback: without a readable
        // release file the image has no version (refused once a floor exists).
        Ok(read_extension_release(name, mnt, cfg.class)
            .ok()
            .and_then(|t| OsRelease::parse(t.as_bytes()).ok()))
    } else {
        check_release(name, mnt, cfg)
            .map(Some)
            .map_err(AdmitError::Release)
    }
}

/// Finds and checks the image's extension-release file; returns it parsed.
fn check_release(name: &str, mnt: &Path, cfg: &Config) -> Result<OsRelease, String> {
    let text = read_extension_release(name, mnt, cfg.class)?;
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
