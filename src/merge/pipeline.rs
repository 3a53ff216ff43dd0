//! The per-image pipeline (DESIGN.md section 2), reusable by soft-reboot and the boot hook:
//! open once by fd -> dissect -> signature + policy -> integrity activation -> read-only mount ->
//! extension-release check -> rollback check (`release_check`) -> measure. [`admit_image`] returns an [`Admitted`] image that is
//! mounted read-only in the workspace and held open, and whose token is a
//! `Measured<Verified<ImageInfo>>`: nothing else can reach the overlay.
//!
//! Directory trees are accepted only if the image policy allows `unprotected`. Raw images (GPT
//! DDIs, bare file systems with sidecars) are dissected and verified by the image module on the
//! descriptor opened here; for userspace integrity the image module copies the data once into a
//! sealed memfd and verifies that copy against the tree it authenticated (reading each hash block
//! once), and that memfd is loop-mounted, so the checked bytes are the mounted bytes.

use super::plan::Class;
use crate::gate::Bypass;
use crate::image::policy::{Policy, State};
use crate::image::release::{OsRelease, Scope};
use crate::image::AdmitAs;
use crate::image::Verified;
pub use crate::image::{ImageInfo, ImageKind};
use crate::measure::step::Measured;
use crate::sys::loopdev::{self, LoopDevice};
use crate::sys::memfd::SealedMemfd;
use crate::sys::mount::{self, Attrs, FsOption};
use crate::timing::Steps;
use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};

/// How verified images are activated (`--integrity`); defined with the image types.
pub use crate::image::Integrity;

/// Kernel dm-verity activation, implemented in `sys::dm` (VM issue). Returns the mapped device.
pub trait DmActivator {
    /// Loads a read-only verity table over the byte ranges `data` (offset, size) of `data_file` and
    /// `hash` (offset of the verity superblock, size) of `hash_file` with `root_hash`; returns
    /// `/dev/mapper/..`.
    fn activate(
        &self,
        name: &str,
        data_file: &File,
        data: (u64, u64),
        hash_file: &File,
        hash: (u64, u64),
        root_hash: &str,
    ) -> Result<PathBuf, String>;
}

/// Everything needed to admit images of one class.
#[derive(Debug, Clone)]
pub struct PipelineConfig {
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

/// The pipeline step that refused an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Check {
    /// Opening or reading the image.
    Open,
    /// Working out what the image is.
    Dissect,
    /// Signature verification.
    Signature,
    /// The image policy.
    Policy,
    /// dm-verity or userspace verification of the data.
    Integrity,
    /// The read-only mount.
    Mount,
    /// extension-release compatibility.
    Release,
    /// Rollback protection: the version (or epoch) is below its floor.
    Rollback,
    /// PCR extend or event-log append.
    Measure,
}

/// One image that was not admitted: which, at which check, why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ImageFailure {
    /// Image name.
    pub name: String,
    /// Where it was found.
    pub path: PathBuf,
    /// The step that refused it.
    pub check: Check,
    /// Why.
    pub reason: String,
}

impl fmt::Display for ImageFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({}): {:?} check failed: {}",
            self.name,
            self.path.display(),
            self.check,
            self.reason
        )
    }
}

/// Records an admitted image in the TPM and the event log. Implementations call the measuring
/// step (`measure::step`), the only code that can mint the token.
pub trait Measurer {
    /// Measures one verified image into `pcr`.
    fn measure(
        &mut self,
        v: Verified<ImageInfo>,
        pcr: u32,
    ) -> Result<Measured<Verified<ImageInfo>>, String>;
}

/// What keeps an admitted image's backing alive until its mount is in the overlay.
#[derive(Debug)]
enum Backing {
    None,
    Memfd(
        #[allow(dead_code)] SealedMemfd,
        #[allow(dead_code)] LoopDevice,
    ),
}

/// An image that passed every check, mounted read-only at [`Admitted::mount_path`].
#[derive(Debug)]
pub struct Admitted {
    token: Measured<Verified<ImageInfo>>,
    mount_path: PathBuf,
    _backing: Backing,
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
const IMAGE_ATTRS: Attrs = Attrs {
    rdonly: true,
    nodev: true,
    nosuid: true,
    noexec: false,
};

fn fail(name: &str, path: &Path, check: Check, reason: impl fmt::Display) -> ImageFailure {
    ImageFailure {
        name: name.to_string(),
        path: path.to_path_buf(),
        check,
        reason: reason.to_string(),
    }
}

/// An image that passed every check up to (not including) measurement, mounted read-only.
#[derive(Debug)]
pub struct Prepared {
    verified: Verified<ImageInfo>,
    mount_path: PathBuf,
    backing: Backing,
    steps: Steps,
}

impl Prepared {
    /// What was verified.
    pub fn info(&self) -> &ImageInfo {
        self.verified.get()
    }

    /// Measures it; on failure its mount is removed and it is not admitted.
    pub fn measure(self, pcr: u32, measurer: &mut dyn Measurer) -> Result<Admitted, ImageFailure> {
        let (name, path) = (self.info().name.clone(), self.info().path.clone());
        let mut steps = self.steps;
        match steps.time("measure", || measurer.measure(self.verified, pcr)) {
            Ok(token) => Ok(Admitted {
                token,
                mount_path: self.mount_path,
                _backing: self.backing,
                steps,
            }),
            Err(r) => {
                let _ = mount::detach(&self.mount_path);
                Err(fail(&name, &path, Check::Measure, r))
            }
        }
    }

    /// Gives up on the image (e.g. `--strict` after another image failed): unmounts it.
    pub fn discard(self) {
        let _ = mount::detach(&self.mount_path);
    }
}

/// Runs one image through the whole pipeline. On success it is mounted read-only at
/// `<workspace>/<name>` and measured; on failure nothing of it stays mounted.
pub fn admit_image(
    name: &str,
    path: &Path,
    kind: ImageKind,
    cfg: &PipelineConfig,
    measurer: &mut dyn Measurer,
    dm: Option<&dyn DmActivator>,
) -> Result<Admitted, ImageFailure> {
    prepare_image(name, path, kind, cfg, dm)?.measure(cfg.pcr, measurer)
}

/// Every step but measurement: open, verify, activate, mount read-only, check extension-release.
pub fn prepare_image(
    name: &str,
    path: &Path,
    kind: ImageKind,
    cfg: &PipelineConfig,
    dm: Option<&dyn DmActivator>,
) -> Result<Prepared, ImageFailure> {
    let target = cfg.workspace.join(name);
    std::fs::create_dir_all(&target).map_err(|e| {
        fail(
            name,
            path,
            Check::Mount,
            format!("{}: {e}", target.display()),
        )
    })?;
    let mut steps = Steps::default();
    let (verified, backing) = match kind {
        ImageKind::Directory => {
            let policy = match cfg.image_policy.as_deref() {
                Some(p) => Policy::parse(p.trim())
                    .map_err(|e| fail(name, path, Check::Policy, format!("image policy: {e}")))?,
                None => Policy::signed_only(),
            };
            // The image module decides before anything is mounted, then digests the read-only
            // mount that is merged (and records the bypass).
            crate::image::verify::directory_allowed(&policy)
                .map_err(|e| fail(name, path, Check::Policy, e))?;
            let m = mount::clone_tree(path, true).map_err(|e| fail(name, path, Check::Mount, e))?;
            mount::set_attrs(&m, IMAGE_ATTRS, true)
                .map_err(|e| fail(name, path, Check::Mount, e))?;
            mount::attach(m, &target).map_err(|e| fail(name, path, Check::Mount, e))?;
            let verified = steps
                .time("digest", || {
                    crate::image::verify::admit_directory(
                        &policy,
                        admit_as(name, path, kind, cfg),
                        &target,
                    )
                })
                .map_err(|e| {
                    let _ = mount::detach(&target);
                    fail(name, path, Check::Integrity, e)
                })?;
            (verified, Backing::None)
        }
        ImageKind::Raw | ImageKind::Block => {
            admit_raw(name, path, kind, cfg, dm, &target, &mut steps)?
        }
    };
    // The release file of the mounted, verified tree: compatibility, then rollback.
    let released = steps.time("release", || {
        super::release_check::admit_release(name, &target, cfg, verified)
    });
    let verified = match released {
        Ok(v) => v,
        Err((check, r)) => {
            let _ = mount::detach(&target);
            return Err(fail(name, path, check, r));
        }
    };
    Ok(Prepared {
        verified,
        mount_path: target,
        backing,
        steps,
    })
}

/// A raw image (GPT DDI or bare file system with sidecars): dissected and verified by the image
/// module on the one descriptor we opened (for userspace integrity, into a sealed memfd), and
/// loop-mounted.
fn admit_raw(
    name: &str,
    path: &Path,
    kind: ImageKind,
    cfg: &PipelineConfig,
    dm: Option<&dyn DmActivator>,
    target: &Path,
    steps: &mut Steps,
) -> Result<(Verified<ImageInfo>, Backing), ImageFailure> {
    use crate::image;
    let f = |c, r: String| fail(name, path, c, r);
    let file = steps
        .time("open", || File::open(path))
        .map_err(|e| f(Check::Open, format!("open: {e}")))?;
    let d = steps
        .time("dissect", || {
            image::Dissected::open(file, path, &image::DissectOptions { arch: None })
        })
        .map_err(|e| f(Check::Dissect, e.to_string()))?;
    let dirs = if cfg.trust.is_empty() {
        crate::sign::TrustStore::default_dirs(&cfg.root)
    } else {
        cfg.trust.clone()
    };
    let trust = crate::sign::TrustStore::load(&dirs)
        .map_err(|e| f(Check::Signature, format!("trust store: {e}")))?;
    let policy = match cfg.image_policy.as_deref() {
        Some(p) => Policy::parse(p).map_err(|e| f(Check::Policy, format!("image policy: {e}")))?,
        None => Policy::signed_only(),
    };
    let opts = image::VerifyOptions {
        trust,
        policy,
        class: Some(cfg.class),
        host: None,
        host_arch: cfg.arch.clone(),
        scope: scope(cfg),
        // extension-release is checked on the mounted, verified tree below.
        read_release: false,
        // Kernel activation checks each block as it is read (an altered block is EIO), as
        // systemd does; userspace activation has the image module copy the data once into a
        // sealed memfd and verify that copy against the tree it authenticated (each hash block
        // read once), so the bytes checked are the bytes mounted.
        data: if use_kernel(cfg, dm) {
            image::verify::DataCheck::Kernel
        } else {
            image::verify::DataCheck::Sealed
        },
    };
    let (report, res) = image::verify(d, &opts);
    // The image module times its checks; the signature ones are one step, the rest is verity.
    for c in &report.checks {
        let step = if c.name.starts_with("signature") {
            "signature"
        } else {
            "verity"
        };
        steps.add(step, std::time::Duration::from_micros(c.micros));
    }
    let verified = res.map_err(|msg| {
        let failed = report.failures();
        let check = match failed.first().map(|c| c.name) {
            Some("signature") => Check::Signature,
            Some("image-policy") => Check::Policy,
            Some("verity-tree") | Some("verity-superblock") | Some("partition-uuids") => {
                Check::Integrity
            }
            Some(_) | None => Check::Dissect,
        };
        let detail: Vec<String> = failed
            .iter()
            .map(|c| format!("{}: {}", c.name, c.detail))
            .collect();
        f(
            check,
            if detail.is_empty() {
                msg
            } else {
                detail.join("; ")
            },
        )
    })?;
    steps.time("mount", || {
        activate(name, path, kind, cfg, dm, target, verified)
    })
}

/// Turns the image module's token into a mounted image: the sealed memfd the image module
/// verified is what the loop device serves.
fn activate(
    name: &str,
    path: &Path,
    kind: ImageKind,
    cfg: &PipelineConfig,
    dm: Option<&dyn DmActivator>,
    target: &Path,
    verified: Verified<crate::image::VerifiedImage>,
) -> Result<(Verified<ImageInfo>, Backing), ImageFailure> {
    let f = |c, r: String| fail(name, path, c, r);
    let vi = verified.get();
    if use_kernel(cfg, dm) {
        return activate_kernel(name, path, kind, cfg, dm, target, verified);
    }
    // The image module copied the data once into this sealed memfd and checked that copy against
    // the tree it authenticated; nothing here reads the original file again.
    let sealed = vi
        .sealed
        .as_ref()
        .ok_or_else(|| {
            f(
                Check::Integrity,
                "no sealed copy of the verified data".into(),
            )
        })?
        .try_clone()
        .map_err(|e| f(Check::Integrity, format!("memfd: {e}")))?;
    let size = crate::verity::BlockSource::size(&sealed);
    let fstype = detect_fs(&sealed).ok_or_else(|| {
        f(
            Check::Dissect,
            "not an erofs, squashfs or ext4 file system".into(),
        )
    })?;
    let lo = loopdev::attach_readonly(sealed.fd(), 0, size)
        .map_err(|e| f(Check::Mount, e.to_string()))?;
    let dev = lo.path().to_string_lossy().into_owned();
    let m = mount::new_fs(
        fstype,
        &[FsOption::Str("source", &dev), FsOption::Flag("ro")],
        IMAGE_ATTRS,
    )
    .map_err(|e| f(Check::Mount, e.to_string()))?;
    mount::attach(m, target).map_err(|e| f(Check::Mount, e.to_string()))?;
    // The image module's token, passed through: the sealed copy we mount matched its root hash.
    let token = crate::image::verify::activated(verified, admit_as(name, path, kind, cfg));
    Ok((token, Backing::Memfd(sealed, lo)))
}

/// How this pipeline run names and uses an image (the trust facts come from the image token).
fn admit_as(name: &str, path: &Path, kind: ImageKind, cfg: &PipelineConfig) -> AdmitAs {
    AdmitAs {
        name: name.into(),
        kind,
        path: path.into(),
        class: cfg.class,
        nextroot: cfg.nextroot,
        bypasses: if cfg.force {
            vec![Bypass::SkipReleaseCheck]
        } else {
            Vec::new()
        },
    }
}

fn use_kernel(cfg: &PipelineConfig, dm: Option<&dyn DmActivator>) -> bool {
    match cfg.integrity {
        Integrity::Kernel => true,
        Integrity::Userspace => false,
        Integrity::Auto => dm.is_some() && Path::new("/dev/mapper/control").exists(),
    }
}

/// The kernel path: the image module verified the signature in userspace on this descriptor; the
/// kernel now checks every data block as it is read (an altered block reads as EIO).
fn activate_kernel(
    name: &str,
    path: &Path,
    kind: ImageKind,
    cfg: &PipelineConfig,
    dm: Option<&dyn DmActivator>,
    target: &Path,
    verified: Verified<crate::image::VerifiedImage>,
) -> Result<(Verified<ImageInfo>, Backing), ImageFailure> {
    let f = |c, r: String| fail(name, path, c, r);
    let vi = verified.get();
    let dm = dm.ok_or_else(|| {
        f(
            Check::Integrity,
            "kernel dm-verity activation is not available in this build".into(),
        )
    })?;
    let i = vi.integrity.as_ref().ok_or_else(|| {
        f(
            Check::Integrity,
            "integrity = kernel needs a verity image, this one has no hash tree".into(),
        )
    })?;
    let root_hex = crate::hex::encode(&i.root_hash);
    let dev = dm
        .activate(
            name,
            vi.source.file(),
            (vi.data.offset, vi.data.size),
            i.hash.source.file(),
            (i.hash.extent.offset, i.hash.extent.size),
            &root_hex,
        )
        .map_err(|e| f(Check::Integrity, e))?;
    let mut head = [0u8; 2048];
    {
        use std::os::unix::fs::FileExt;
        let d = File::open(&dev).map_err(|e| f(Check::Mount, format!("{}: {e}", dev.display())))?;
        d.read_exact_at(&mut head, 0)
            .map_err(|e| f(Check::Integrity, format!("{}: {e}", dev.display())))?;
    }
    let fstype = fs_of(&head).ok_or_else(|| {
        f(
            Check::Dissect,
            "not an erofs, squashfs or ext4 file system".into(),
        )
    })?;
    let devs = dev.to_string_lossy().into_owned();
    let m = mount::new_fs(
        fstype,
        &[FsOption::Str("source", &devs), FsOption::Flag("ro")],
        Attrs {
            rdonly: true,
            nodev: true,
            nosuid: true,
            noexec: false,
        },
    )
    .map_err(|e| f(Check::Mount, e.to_string()))?;
    mount::attach(m, target).map_err(|e| f(Check::Mount, e.to_string()))?;
    let token = crate::image::verify::activated(verified, admit_as(name, path, kind, cfg));
    Ok((token, Backing::None))
}

fn fs_of(b: &[u8; 2048]) -> Option<&'static str> {
    if &b[0..4] == b"hsqs" {
        Some("squashfs")
    } else if b[1024..1028] == [0xe2, 0xe1, 0xf5, 0xe0] {
        Some("erofs")
    } else if b[1080..1082] == [0x53, 0xef] {
        Some("ext4")
    } else {
        None
    }
}

/// File-system type by magic number.
fn detect_fs(src: &SealedMemfd) -> Option<&'static str> {
    use crate::verity::BlockSource;
    let mut b = [0u8; 2048];
    src.read_at(&mut b, 0).ok()?;
    if &b[0..4] == b"hsqs" {
        Some("squashfs")
    } else if b[1024..1028] == [0xe2, 0xe1, 0xf5, 0xe0] {
        Some("erofs")
    } else if b[1080..1082] == [0x53, 0xef] {
        Some("ext4")
    } else {
        None
    }
}

/// The scope systemd requires of extensions: `initrd` in the initrd, else `system`.
pub(super) fn scope(cfg: &PipelineConfig) -> Scope {
    if cfg.in_initrd {
        Scope::Initrd
    } else {
        Scope::System
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
