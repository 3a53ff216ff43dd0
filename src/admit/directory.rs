//! Directory extensions: no hash tree and no signature, so admitted only when the image policy
//! allows `unprotected` (decided by the image module before anything is mounted). The tree is
//! bind-mounted read-only into the workspace and the image module digests that mount, the one that
//! is merged, so what is measured is what the overlay shows.

use super::{AdmitError, Config, IMAGE_ATTRS};
use crate::image::Verified;
use crate::image::{AdmitAs, ImageInfo};
use crate::sys::mount;
use crate::timing::Steps;
use std::path::Path;

/// Policy check, read-only bind mount of `path` at `target`, digest of the mount.
pub fn admit(
    cfg: &Config,
    how: AdmitAs,
    path: &Path,
    target: &Path,
    steps: &mut Steps,
) -> Result<Verified<ImageInfo>, AdmitError> {
    let policy = cfg.policy(true)?;
    crate::image::verify::directory_allowed(&policy).map_err(AdmitError::Policy)?;
    let mount_err = |e: mount::MountError| AdmitError::Mount(e.to_string());
    let m = mount::clone_tree(path, true).map_err(mount_err)?;
    mount::set_attrs(&m, IMAGE_ATTRS, true).map_err(mount_err)?;
    mount::attach(m, target).map_err(mount_err)?;
    steps
        .time("digest", || {
            crate::image::verify::admit_directory(&policy, how, target)
        })
        .map_err(|e| {
            let _ = mount::detach(target);
            AdmitError::Integrity(e)
        })
}
