//! Admission: the per-image pipeline (DESIGN.md section 2) that merge, the boot hook and
//! `soft-reboot prepare` all run, and none of them reimplements. In order, one file per step:
//!
//! 1. [`open`]: open the image once by descriptor and dissect it (GPT DDI, sidecar file system);
//!    directory trees go to [`directory`] instead (admitted only if the image policy allows
//!    `unprotected`).
//! 2. [`signature`]: signature against the trust store and the image policy (the image module's
//!    checks, run on that descriptor).
//! 3. [`integrity`]: activation, by kernel dm-verity ([`Activator`]) or by the sealed memfd the
//!    image module verified (`--integrity userspace`), and the read-only mount.
//! 4. [`release`]: the extension-release check (os-release read for a root), on the mounted,
//!    verified tree.
//! 5. [`rollback`]: the version found there against the floors and the TPM epoch.
//! 6. [`measure`]: PCR extend and event-log append, which turn the [`Verified`] token into a
//!    `Measured<Verified<ImageInfo>>`: nothing else can reach an overlay or a nextroot.
//!
//! [`prepare`] runs steps 1-5 and returns a [`Prepared`] image (mounted read-only in the
//! workspace); [`Prepared::measure`] is step 6. A refusal is an [`AdmitError`] naming the check.
//! This module decides; `sys` only carries out (mounts, loop devices, device-mapper).
//!
//! Layer L11 (`tests/layering.rs`): imports `image`, `measure`, `rollback`, `sign`, `sys`, `io`,
//! `gate`, `verity` and the L0 words; never `host`, `merge`, `reboot`, `boot`, `attest` or `cli`.

pub mod directory;
mod error;
pub mod integrity;
pub mod measure;
pub mod open;
pub mod release;
pub mod rollback;
pub mod signature;

pub use error::{AdmitError, Check, ImageFailure};
pub use integrity::{Activator, Integrity};
pub use measure::Measurer;

use crate::gate::Bypass;
use crate::image::policy::{Policy, State};
use crate::image::release::{OsRelease, Scope};
use crate::image::AdmitAs;
use crate::image::Verified;
pub use crate::image::{Class, ImageInfo, ImageKind};
use crate::measure::step::Measured;
use crate::sys::mount::{self, Attrs};
use crate::timing::Steps;
use std::path::{Path, PathBuf};

/// Everything needed to admit images of one class.
#[derive(Debug, Clone)]
pub struct Config {
    /// sysext or confext.
    pub class: Class,
    /// The tree operated on (`--root`).
    pub root: PathBuf,
    /// systemd image-policy string; `None` = signed images only.
    pub image_policy: Option<String>,
    /// Certificate directories (`--trust`); empty = the default verity.d dirs under `root`.
    pub trust: Vec<PathBuf>,
    /// Activation mode.
    pub integrity: Integrity,
    /// PCR to extend.
    pub pcr: u32,
    /// Skip the extension-release check (`--dangerous-skip-release-check`; recorded as a bypass).
    pub force: bool,
    /// Admitting a root image for a soft reboot: measured as `nextroot`, and the extension-release
    /// check does not apply (the tree is checked as an OS instead).
    pub nextroot: bool,
    /// Running in the initrd (changes the required scope).
    pub in_initrd: bool,
    /// Host os-release fields.
    pub host: OsRelease,
    /// systemd architecture id of the running kernel.
    pub arch: String,
    /// A private directory where admitted images are mounted (`<workspace>/<name>`).
    pub workspace: PathBuf,
    /// Version floors and TPM epoch every image is checked against (`Guard::none()` = none).
    pub rollback: crate::rollback::admit::Guard,
}

impl Config {
    /// The scope systemd requires of extensions: `initrd` in the initrd, else `system`.
    pub fn scope(&self) -> Scope {
        if self.in_initrd {
            Scope::Initrd
        } else {
            Scope::System
        }
    }

    /// The image policy; `None` = signed images only. (Directory trees have always had the
    /// string trimmed first, raw images not; kept so.)
    fn policy(&self, trim: bool) -> Result<Policy, AdmitError> {
        match self.image_policy.as_deref() {
            Some(p) => Policy::parse(if trim { p.trim() } else { p })
                .map_err(|e| AdmitError::Policy(format!("image policy: {e}"))),
            None => Ok(Policy::signed_only()),
        }
    }

    /// How this run names and uses an image (the trust facts come from the image token).
    fn admit_as(&self, name: &str, path: &Path, kind: ImageKind) -> AdmitAs {
        AdmitAs {
            name: name.into(),
            kind,
            path: path.into(),
            class: self.class,
            nextroot: self.nextroot,
            bypasses: if self.force {
                vec![Bypass::SkipReleaseCheck]
            } else {
                Vec::new()
            },
        }
    }
}

/// Does the systemd image-policy string allow a partition in state `flag` (`unprotected`,
/// `verity`, `signed`) for the partitions an extension uses (`root` or `usr`)? No policy = signed
/// only; a policy that does not parse allows nothing. The decision is the image module's.
pub fn policy_allows(policy: Option<&str>, flag: &str) -> bool {
    let policy = match policy {
        Some(p) => match Policy::parse(p.trim()) {
            Ok(p) => p,
            Err(_) => return false,
        },
        None => Policy::signed_only(),
    };
    let state = match flag {
        "unprotected" => State::Unprotected,
        "verity" => State::Verity,
        "signed" => State::Signed,
        _ => return false,
    };
    ["root", "usr"]
        .iter()
        .any(|d| policy.check(d, state, None, None).is_ok())
}

/// How every admitted image is mounted, whatever its kind: read-only, no devices, no setuid;
/// executables stay usable (extensions ship binaries).
pub(crate) const IMAGE_ATTRS: Attrs = Attrs {
    rdonly: true,
    nodev: true,
    nosuid: true,
    noexec: false,
};

/// An image that passed every check up to (not including) measurement, mounted read-only.
#[derive(Debug)]
pub struct Prepared {
    verified: Verified<ImageInfo>,
    mount_path: PathBuf,
    backing: integrity::Backing,
    steps: Steps,
}

impl Prepared {
    /// What was verified.
    pub fn info(&self) -> &ImageInfo {
        self.verified.get()
    }

    /// Where its tree is mounted (read-only) in the workspace.
    pub fn mount_path(&self) -> &Path {
        &self.mount_path
    }

    /// Gives up on the image (e.g. `--strict` after another image failed): unmounts it.
    pub fn discard(self) {
        let _ = mount::detach(&self.mount_path);
    }
}

/// An image that passed every check, mounted read-only at [`Admitted::mount_path`].
#[derive(Debug)]
pub struct Admitted {
    token: Measured<Verified<ImageInfo>>,
    mount_path: PathBuf,
    _backing: integrity::Backing,
    steps: Steps,
}

impl Admitted {
    /// The proof that it was verified and measured.
    pub fn token(&self) -> &Measured<Verified<ImageInfo>> {
        &self.token
    }

    /// What was admitted.
    pub fn info(&self) -> &ImageInfo {
        self.token.get().get()
    }

    /// Where its tree is mounted (read-only) in the workspace.
    pub fn mount_path(&self) -> &Path {
        &self.mount_path
    }

    /// How long each step of its admission took.
    pub fn steps(&self) -> &Steps {
        &self.steps
    }

    /// Hierarchies (e.g. `/usr`) in which this image has a non-empty directory.
    pub fn provides(&self) -> Vec<String> {
        self.info()
            .class
            .hierarchies()
            .iter()
            .filter(|h| {
                std::fs::read_dir(self.mount_path.join(h.trim_start_matches('/')))
                    .map(|mut d| d.next().is_some())
                    .unwrap_or(false)
            })
            .map(|h| h.to_string())
            .collect()
    }
}

/// Runs one image through the whole pipeline. On success it is mounted read-only at
/// `<workspace>/<name>` and measured; on failure nothing of it stays mounted.
pub fn admit(
    name: &str,
    path: &Path,
    kind: ImageKind,
    cfg: &Config,
    measurer: &mut dyn Measurer,
    dm: Option<&dyn Activator>,
) -> Result<Admitted, ImageFailure> {
    prepare(name, path, kind, cfg, dm)?.measure(cfg.pcr, measurer)
}

/// Every step but measurement, in order: open and dissect, signature and policy, integrity and
/// read-only mount, release check, rollback check. On failure nothing stays mounted.
pub fn prepare(
    name: &str,
    path: &Path,
    kind: ImageKind,
    cfg: &Config,
    dm: Option<&dyn Activator>,
) -> Result<Prepared, ImageFailure> {
    let failure = |error| ImageFailure {
        name: name.to_string(),
        path: path.to_path_buf(),
        error,
    };
    let target = cfg.workspace.join(name);
    std::fs::create_dir_all(&target)
        .map_err(|e| failure(AdmitError::Mount(format!("{}: {e}", target.display()))))?;
    let mut steps = Steps::default();
    let how = cfg.admit_as(name, path, kind);
    let (verified, backing) = match kind {
        ImageKind::Directory => {
            let v = directory::admit(cfg, how, path, &target, &mut steps).map_err(failure)?;
            (v, integrity::Backing::None)
        }
        ImageKind::Raw | ImageKind::Block => {
            let mode = integrity::mode(cfg.integrity, dm);
            let d = open::dissect(path, &mut steps).map_err(failure)?;
            let v = signature::verify(d, cfg, mode, &mut steps).map_err(failure)?;
            steps
                .time("mount", || integrity::activate(v, how, mode, dm, &target))
                .map_err(failure)?
        }
    };
    // The release file of the mounted, verified tree: compatibility, then rollback.
    let checked = steps.time("release", || {
        let release = release::check(name, &target, cfg)?;
        rollback::check(name, cfg, verified, release.as_ref())
    });
    match checked {
        Ok(verified) => Ok(Prepared {
            verified,
            mount_path: target,
            backing,
            steps,
        }),
        Err(e) => {
            let _ = mount::detach(&target);
            Err(failure(e))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_flags() {
        assert!(policy_allows(None, "signed"));
        assert!(!policy_allows(None, "unprotected"));
        assert!(policy_allows(
            Some("root=verity+signed:usr=unprotected"),
            "unprotected"
        ));
        assert!(!policy_allows(Some("root=signed:usr=signed"), "verity"));
        assert!(policy_allows(Some("=verity+signed"), "verity"));
        assert!(policy_allows(Some("*"), "unprotected"));
        assert!(!policy_allows(Some("~"), "signed"));
        assert!(!policy_allows(Some("home=unprotected"), "unprotected"));
    }
}
