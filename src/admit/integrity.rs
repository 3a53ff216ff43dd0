//! Step 3: integrity activation and the read-only mount. Two modes: kernel dm-verity (the kernel
//! checks each block as it is read; an altered block reads as EIO), through an [`Activator`]
//! (the real one, [`DeviceMapper`], carries it out with `sys::dm`), or userspace: the image module
//! already copied the data once into a sealed memfd and verified that copy, and that memfd is
//! loop-mounted, so nothing reads the original file again.

use super::{AdmitError, IMAGE_ATTRS};
use crate::image::Verified;
use crate::image::{AdmitAs, ImageInfo, VerifiedImage};
#[cfg(feature = "dm")]
use crate::sys::dm::{DmError, MappedDevice};
use crate::sys::loopdev::{self, LoopDevice};
use crate::sys::memfd::SealedMemfd;
use crate::sys::mount::{self, FsOption};
use crate::verity::RootHash;
use std::fs::File;
use std::path::{Path, PathBuf};

pub use crate::image::Integrity;

/// The mode [`Integrity`] resolves to for one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Kernel dm-verity.
    Kernel,
    /// Sealed memfd, verified in userspace.
    Userspace,
}

impl Mode {
    /// The name reports use (`kernel`, `userspace`).
    pub fn name(self) -> &'static str {
        match self {
            Mode::Kernel => "kernel",
            Mode::Userspace => "userspace",
        }
    }
}

/// `auto` is kernel when an activator is available and the kernel has device-mapper.
pub fn mode(integrity: Integrity, dm: Option<&dyn Activator>) -> Mode {
    if integrity.uses_kernel(dm.is_some()) {
        Mode::Kernel
    } else {
        Mode::Userspace
    }
}

/// Kernel dm-verity activation, defined here (the layer that needs it) and carried out by
/// [`DeviceMapper`] through `sys::dm`; tests can substitute a fake.
pub trait Activator {
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
        root_hash: &RootHash,
    ) -> Result<PathBuf, String>;
}

/// The activator of this build: `Some` where it was built with device-mapper support.
pub fn kernel() -> Option<&'static dyn Activator> {
    #[cfg(feature = "dm")]
    {
        Some(&DeviceMapper)
    }
    #[cfg(not(feature = "dm"))]
    {
        None
    }
}

/// The real kernel activator: regular files (sidecar images) get read-only autoclear loop
/// devices over exactly the partition's byte range (a DDI holds both partitions in one file or
/// disk), which stay alive as long as the dm table holds them. The signature was verified in
/// userspace by step 2, so the table is loaded without one.
#[cfg(feature = "dm")]
#[derive(Debug, Default, Clone, Copy)]
pub struct DeviceMapper;

#[cfg(feature = "dm")]
impl Activator for DeviceMapper {
    fn activate(
        &self,
        _name: &str,
        data_file: &File,
        data: (u64, u64),
        hash_file: &File,
        hash: (u64, u64),
        root_hash: &RootHash,
    ) -> Result<PathBuf, String> {
        use crate::sys::dm;
        use std::os::fd::AsFd;
        let as_block = |f: &File, (off, size): (u64, u64), what: &str| {
            let lo = loopdev::attach_readonly(f.as_fd(), off, size)
                .map_err(|e| format!("{what}: loop device: {e}"))?;
            File::open(lo.path()).map_err(|e| format!("{}: {e}", lo.path().display()))
        };
        let d = as_block(data_file, data, "data")?;
        let h = as_block(hash_file, hash, "hash")?;
        dm::activate_block_files(&d, &h, 0, root_hash.as_bytes(), dm::Signature::None)
            .map(|m| m.path)
            .map_err(|e| e.to_string())
    }
}

/// The trust decision `sys::dm` does not take: a signed table is loaded with the signature for the
/// kernel to check (`load` is one activation, e.g. `sys::dm::activate_verity`); when the kernel
/// refuses it (the signer is not in its keyrings, or its dm-verity has no signature option), the
/// table is loaded again without the signature only if `userspace_verified` (the signature passed
/// the check against the host's trust store, as systemd's `userspace_verity_signature`), and the
/// device says why the kernel did not check it. Otherwise the kernel's refusal stands.
#[cfg(feature = "dm")]
pub fn activate_signed(
    load: impl Fn(crate::sys::dm::Signature<'_>) -> Result<MappedDevice, DmError>,
    der: &[u8],
    userspace_verified: bool,
) -> Result<MappedDevice, DmError> {
    use crate::sys::dm::Signature;
    let note = match load(Signature::Pkcs7 {
        der,
        userspace_verified,
    }) {
        Err(DmError::SignatureRejected { reason, .. }) if userspace_verified => {
            format!("kernel: {reason}; verified in userspace")
        }
        Err(DmError::SignatureUnsupported(a, b)) if userspace_verified => {
            format!("dm-verity {a}.{b} has no signature option; verified in userspace")
        }
        r => return r,
    };
    let mut m = load(Signature::None)?;
    m.kernel_signature = false;
    m.kernel_signature_note = Some(note);
    Ok(m)
}

/// What keeps an admitted image's backing alive until its mount is in the overlay.
#[derive(Debug)]
pub(crate) enum Backing {
    None,
    Memfd(
        #[allow(dead_code)] SealedMemfd,
        #[allow(dead_code)] LoopDevice,
    ),
}

/// Turns the image module's token into an image mounted read-only at `target`.
pub(crate) fn activate(
    verified: Verified<VerifiedImage>,
    how: AdmitAs,
    mode: Mode,
    dm: Option<&dyn Activator>,
    target: &Path,
) -> Result<(Verified<ImageInfo>, Backing), AdmitError> {
    let (source, fstype, backing) = match mode {
        Mode::Kernel => {
            let dev = kernel_device(&how.name, verified.get(), dm)?;
            let fstype = fs_type(&read_head(&dev)?)?;
            (dev, fstype, Backing::None)
        }
        Mode::Userspace => {
            let (sealed, fstype, lo) = sealed_loop(verified.get())?;
            (lo.path().to_path_buf(), fstype, Backing::Memfd(sealed, lo))
        }
    };
    mount_ro(&source, fstype, target)?;
    // The image module's token, passed through: the device mounted serves the verified bytes.
    Ok((crate::image::verify::activated(verified, how), backing))
}

/// Userspace: a read-only loop device over the sealed memfd the image module verified.
fn sealed_loop(vi: &VerifiedImage) -> Result<(SealedMemfd, &'static str, LoopDevice), AdmitError> {
    let sealed = vi
        .sealed
        .as_ref()
        .ok_or_else(|| AdmitError::Integrity("no sealed copy of the verified data".into()))?
        .try_clone()
        .map_err(|e| AdmitError::Integrity(format!("memfd: {e}")))?;
    let mut head = [0u8; 2048];
    // A short read leaves zeros, which match no magic.
    let _ = crate::verity::BlockSource::read_at(&sealed, &mut head, 0);
    let fstype = fs_type(&head)?;
    let size = crate::verity::BlockSource::size(&sealed);
    let lo = loopdev::attach_readonly(sealed.fd(), 0, size)
        .map_err(|e| AdmitError::Mount(e.to_string()))?;
    Ok((sealed, fstype, lo))
}

/// Kernel: the image module verified the signature in userspace on this descriptor; the kernel
/// now checks every data block as it is read.
fn kernel_device(
    name: &str,
    vi: &VerifiedImage,
    dm: Option<&dyn Activator>,
) -> Result<PathBuf, AdmitError> {
    let dm = dm.ok_or_else(|| {
        AdmitError::Integrity("kernel dm-verity activation is not available in this build".into())
    })?;
    let i = vi.integrity.as_ref().ok_or_else(|| {
        AdmitError::Integrity(
            "integrity = kernel needs a verity image, this one has no hash tree".into(),
        )
    })?;
    dm.activate(
        name,
        vi.source.file(),
        (vi.data.offset, vi.data.size),
        i.hash.source.file(),
        (i.hash.extent.offset, i.hash.extent.size),
        &i.root_hash,
    )
    .map_err(AdmitError::Integrity)
}

/// The first 2 KiB of the activated device.
fn read_head(dev: &Path) -> Result<[u8; 2048], AdmitError> {
    use std::os::unix::fs::FileExt;
    let mut head = [0u8; 2048];
    let d = File::open(dev).map_err(|e| AdmitError::Mount(format!("{}: {e}", dev.display())))?;
    d.read_exact_at(&mut head, 0)
        .map_err(|e| AdmitError::Integrity(format!("{}: {e}", dev.display())))?;
    Ok(head)
}

/// The file system to mount, by magic number ([`crate::image::fsread::mount_type`]).
fn fs_type(head: &[u8]) -> Result<&'static str, AdmitError> {
    crate::image::fsread::mount_type(head)
        .ok_or_else(|| AdmitError::Dissect("not an erofs, squashfs or ext4 file system".into()))
}

/// Mounts the verified device read-only at `target`.
fn mount_ro(dev: &Path, fstype: &str, target: &Path) -> Result<(), AdmitError> {
    let devs = dev.to_string_lossy().into_owned();
    let m = mount::new_fs(
        fstype,
        &[FsOption::Str("source", &devs), FsOption::Flag("ro")],
        IMAGE_ATTRS,
    )
    .map_err(|e| AdmitError::Mount(e.to_string()))?;
    mount::attach(m, target).map_err(|e| AdmitError::Mount(e.to_string()))
}

#[cfg(all(test, feature = "dm"))]
mod tests {
    use super::*;
    use crate::sys::dm::{DevNum, Signature};
    use std::cell::RefCell;

    fn device() -> MappedDevice {
        MappedDevice {
            name: "x-verity".into(),
            dev: DevNum {
                major: 253,
                minor: 0,
            },
            path: "/dev/dm-0".into(),
            reused: false,
            kernel_signature: false,
            kernel_signature_note: None,
        }
    }

    /// A fake device-mapper: the signed load fails with `refusal`, the plain one succeeds; records
    /// which loads were asked for.
    fn run(
        refusal: fn() -> DmError,
        userspace_verified: bool,
    ) -> (Result<MappedDevice, DmError>, Vec<&'static str>) {
        let calls = RefCell::new(Vec::new());
        let r = activate_signed(
            |s| match s {
                Signature::Pkcs7 { .. } => {
                    calls.borrow_mut().push("signed");
                    Err(refusal())
                }
                Signature::None => {
                    calls.borrow_mut().push("plain");
                    Ok(device())
                }
            },
            b"der",
            userspace_verified,
        );
        (r, calls.into_inner())
    }

    fn rejected() -> DmError {
        DmError::SignatureRejected {
            name: "x-verity".into(),
            reason: "signer not in the kernel's trusted keyrings (ENOKEY)".into(),
        }
    }

    #[test]
    fn a_kernel_refusal_falls_back_only_after_the_userspace_check() {
        let (r, calls) = run(rejected, true);
        let m = r.unwrap();
        assert_eq!(calls, ["signed", "plain"]);
        assert!(!m.kernel_signature);
        assert!(m.kernel_signature_note.unwrap().contains("ENOKEY"));

        let (r, calls) = run(rejected, false);
        assert!(matches!(r, Err(DmError::SignatureRejected { .. })));
        assert_eq!(calls, ["signed"]);

        let (r, calls) = run(|| DmError::SignatureUnsupported(1, 4), true);
        assert!(r.unwrap().kernel_signature_note.unwrap().contains("1.4"));
        assert_eq!(calls, ["signed", "plain"]);
        let (r, _) = run(|| DmError::SignatureUnsupported(1, 4), false);
        assert!(matches!(r, Err(DmError::SignatureUnsupported(1, 4))));
    }

    #[test]
    fn other_errors_never_fall_back() {
        let (r, calls) = run(|| DmError::Device("gone".into()), true);
        assert!(matches!(r, Err(DmError::Device(_))));
        assert_eq!(calls, ["signed"]);
    }
}
