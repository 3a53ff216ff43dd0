//! Step 5: rollback protection ([`crate::rollback::admit`]) on the `IMAGE_VERSION=` /
//! `VERITY_EPOCH=` of the release file step 4 read (os-release for a soft-reboot root). The version
//! found goes into the token, so the event log records it.

use super::{AdmitError, Config};
use crate::image::release::{release_name, OsRelease};
use crate::image::ImageInfo;
use crate::image::Verified;
use crate::rollback::Class;
use std::path::Path;

/// Checks the version in `release` against the floor of the image's (class, name) and returns the
/// token carrying it.
pub fn check(
    name: &str,
    cfg: &Config,
    verified: Verified<ImageInfo>,
    release: Option<&OsRelease>,
) -> Result<Verified<ImageInfo>, AdmitError> {
    let (class, key) = key(name, cfg, release);
    let version = cfg
        .rollback
        .check(class, &key, release)
        .map_err(|r| AdmitError::Rollback {
            class,
            key,
            reason: r.to_string(),
        })?;
    Ok(crate::image::verify::with_version(verified, version))
}

/// The (class, name) a floor is kept for: an extension's name as in its extension-release file
/// name; a root's `IMAGE_ID=` (its verified os-release), else its image name.
pub fn key(name: &str, cfg: &Config, release: Option<&OsRelease>) -> (Class, String) {
    if cfg.nextroot {
        return (Class::Root, root_key(name, release));
    }
    (cfg.class.into(), release_name(name).to_string())
}

/// The floor name of the root tree mounted at `mnt`, admitted as `name` (see [`key`]).
pub fn root_floor_key(name: &str, mnt: &Path) -> String {
    root_key(
        name,
        crate::image::tree_release::read_os_release(mnt)
            .ok()
            .flatten()
            .as_ref(),
    )
}

/// A root's floor name: its os-release `IMAGE_ID=`, else the image name.
fn root_key(name: &str, release: Option<&OsRelease>) -> String {
    let id = release.and_then(|r| r.get("IMAGE_ID"));
    id.filter(|s| !s.is_empty()).unwrap_or(name).to_string()
}
