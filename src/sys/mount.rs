//! The new mount API (fsopen/fsconfig/fsmount/move_mount/open_tree/mount_setattr) through rustix,
//! plus detach-unmount, propagation changes and mount-point detection.
//!
//! Everything here is a thin, named wrapper: errors carry the operation and the path so a failed
//! merge says "fsconfig lowerdir on overlay: ELOOP" instead of a bare errno. No decisions are taken
//! here; the merge planner decides what to mount, this module only does it.

use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{statx, AtFlags, StatxFlags, CWD};
use rustix::io::Errno;
use rustix::mount::{
    fsconfig_create, fsconfig_set_flag, fsconfig_set_string, fsmount, fsopen, mount_change,
    move_mount, open_tree, unmount, FsMountFlags, FsOpenFlags, MountAttrFlags,
    MountPropagationFlags, MoveMountFlags, OpenTreeFlags, UnmountFlags,
};
use std::fmt;
use std::path::{Path, PathBuf};

/// A failed mount syscall: which operation, on what, and the errno.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountError {
    /// The syscall or step, e.g. `fsconfig lowerdir`.
    pub op: String,
    /// The path or file-system type it was about.
    pub what: PathBuf,
    /// The kernel's answer.
    pub errno: Errno,
}

impl fmt::Display for MountError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} on {}: {}", self.op, self.what.display(), self.errno)
    }
}

impl std::error::Error for MountError {}

fn err(op: impl Into<String>, what: impl AsRef<Path>) -> impl FnOnce(Errno) -> MountError {
    let op = op.into();
    let what = what.as_ref().to_path_buf();
    move |errno| MountError { op, what, errno }
}

/// Per-mount flags, as mount_setattr(2) and fsmount(2) take them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Attrs {
    /// Read-only mount.
    pub rdonly: bool,
    /// No device nodes.
    pub nodev: bool,
    /// setuid/setgid bits ignored.
    pub nosuid: bool,
    /// No execution.
    pub noexec: bool,
}

impl Attrs {
    fn flags(self) -> MountAttrFlags {
        let mut f = MountAttrFlags::empty();
        if self.rdonly {
            f |= MountAttrFlags::MOUNT_ATTR_RDONLY;
        }
        if self.nodev {
            f |= MountAttrFlags::MOUNT_ATTR_NODEV;
        }
        if self.nosuid {
            f |= MountAttrFlags::MOUNT_ATTR_NOSUID;
        }
        if self.noexec {
            f |= MountAttrFlags::MOUNT_ATTR_NOEXEC;
        }
        f
    }
}

/// A mount that is not attached anywhere yet (from fsmount or open_tree). Dropping it without
/// attaching lets the kernel tear it down.
#[derive(Debug)]
pub struct DetachedMount {
    fd: OwnedFd,
    what: PathBuf,
}

impl DetachedMount {
    /// The mount's descriptor (its root directory).
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// One `fsconfig` setting.
#[derive(Debug, Clone)]
pub enum FsOption<'a> {
    /// `FSCONFIG_SET_FLAG key`.
    Flag(&'a str),
    /// `FSCONFIG_SET_STRING key=value` (the kernel caps values at 256 bytes).
    Str(&'a str, &'a str),
    /// `FSCONFIG_SET_FD key=fd` (e.g. overlayfs `lowerdir+` on Linux 6.13 and later).
    Fd(&'a str, BorrowedFd<'a>),
}

/// Creates a new file-system instance and returns it as a detached mount with `attrs`.
pub fn new_fs(
    fstype: &str,
    opts: &[FsOption<'_>],
    attrs: Attrs,
) -> Result<DetachedMount, MountError> {
    let ctx = fsopen(fstype, FsOpenFlags::FSOPEN_CLOEXEC).map_err(err("fsopen", fstype))?;
    for o in opts {
        match o {
            FsOption::Flag(k) => {
                fsconfig_set_flag(&ctx, *k).map_err(err(format!("fsconfig {k}"), fstype))?
            }
            FsOption::Str(k, v) => fsconfig_set_string(&ctx, *k, *v)
                .map_err(err(format!("fsconfig {k}={v}"), fstype))?,
            FsOption::Fd(k, fd) => rustix::mount::fsconfig_set_fd(&ctx, *k, *fd)
                .map_err(err(format!("fsconfig {k} by fd"), fstype))?,
        }
    }
    fsconfig_create(&ctx).map_err(err("fsconfig create", fstype))?;
    let fd = fsmount(&ctx, FsMountFlags::FSMOUNT_CLOEXEC, attrs.flags())
        .map_err(err("fsmount", fstype))?;
    Ok(DetachedMount {
        fd,
        what: PathBuf::from(fstype),
    })
}

/// Mounts a file system the old way (mount(2) with a monolithic option string, up to a page) at
/// `at`, then returns a detached copy of it and detaches the original. For option strings longer
/// than fsconfig's 256-byte limit on kernels without fd-based options.
pub fn legacy_new_fs(
    fstype: &str,
    source: &str,
    data: &str,
    at: &Path,
    attrs: Attrs,
) -> Result<DetachedMount, MountError> {
    let mut flags = rustix::mount::MountFlags::empty();
    if attrs.rdonly {
        flags |= rustix::mount::MountFlags::RDONLY;
    }
    let data = std::ffi::CString::new(data).map_err(|_| err("mount options", at)(Errno::INVAL))?;
    rustix::mount::mount(source, at, fstype, flags, Some(data.as_c_str()))
        .map_err(err(format!("mount {fstype}"), at))?;
    let m = clone_tree(at, false);
    let _ = detach(at);
    let m = m?;
    set_attrs(&m, attrs, false)?;
    Ok(m)
}

/// Opens a directory as an O_PATH descriptor (for fd-based fsconfig options).
pub fn open_path(path: &Path) -> Result<OwnedFd, MountError> {
    use rustix::fs::{open, Mode, OFlags};
    open(
        path,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(err("open O_PATH", path))
}

/// A detached copy of the mount at `path` (a bind mount), recursive or not.
pub fn clone_tree(path: &Path, recursive: bool) -> Result<DetachedMount, MountError> {
    let mut flags = OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC;
    if recursive {
        flags |= OpenTreeFlags::AT_RECURSIVE;
    }
    let fd = open_tree(CWD, path, flags).map_err(err("open_tree clone", path))?;
    Ok(DetachedMount {
        fd,
        what: path.to_path_buf(),
    })
}

/// Sets flags on a mount (and, with `recursive`, everything below it) via mount_setattr(2).
pub fn set_attrs(m: &DetachedMount, attrs: Attrs, recursive: bool) -> Result<(), MountError> {
    #[repr(C)]
    struct MountAttr {
        attr_set: u64,
        attr_clr: u64,
        propagation: u64,
        userns_fd: u64,
    }
    let ma = MountAttr {
        attr_set: u64::from(attrs.flags().bits()),
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    let mut flags = libc::AT_EMPTY_PATH as libc::c_uint;
    if recursive {
        flags |= libc::AT_RECURSIVE as libc::c_uint;
    }
    let fd = rustix::fd::AsRawFd::as_raw_fd(&m.fd);
    #[allow(unsafe_code)]
    // SAFETY: mount_setattr reads `size` (32) bytes from `&ma`, a live `struct mount_attr`; the
    // path is a NUL-terminated empty string and `fd` is open and ours for the whole call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd,
            c"".as_ptr(),
            flags,
            &ma as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if rc != 0 {
        let e =
            Errno::from_raw_os_error(std::io::Error::last_os_error().raw_os_error().unwrap_or(0));
        return Err(err("mount_setattr", &m.what)(e));
    }
    Ok(())
}

/// Attaches a detached mount at `target` (on top of whatever is there).
pub fn attach(m: DetachedMount, target: &Path) -> Result<(), MountError> {
    move_mount(
        m.fd.as_fd(),
        "",
        CWD,
        target,
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
    )
    .map_err(err("move_mount", target))
}

/// Attaches a detached mount *beneath* the top mount at `target` (MOVE_MOUNT_BENEATH, Linux 6.5):
/// it stays hidden until the top mount is detached, then shows at once.
pub fn attach_beneath(m: &DetachedMount, target: &Path) -> Result<(), MountError> {
    move_mount(
        m.fd.as_fd(),
        "",
        CWD,
        target,
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH | MoveMountFlags::MOVE_MOUNT_BENEATH,
    )
    .map_err(err("move_mount beneath", target))
}

/// Whether the running kernel has MOVE_MOUNT_BENEATH (6.5 and later).
pub fn beneath_supported() -> bool {
    let uts = rustix::system::uname();
    let rel = uts.release().to_string_lossy();
    let mut it = rel.split(|c: char| !c.is_ascii_digit());
    let major: u32 = it.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    let minor: u32 = it.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    (major, minor) >= (6, 5)
}

/// Lazily unmounts the top mount at `path` (MNT_DETACH): open files keep working, new lookups see
/// what was underneath.
pub fn detach(path: &Path) -> Result<(), MountError> {
    unmount(path, UnmountFlags::DETACH | UnmountFlags::NOFOLLOW)
        .map_err(err("umount2 detach", path))
}

/// Makes the mount at `path` private so nothing we attach below it propagates anywhere.
pub fn make_private(path: &Path) -> Result<(), MountError> {
    mount_change(path, MountPropagationFlags::PRIVATE).map_err(err("make private", path))
}

/// statx of `path` itself (a final symlink is not followed).
fn statx_nofollow(path: &Path) -> Result<rustix::fs::Statx, MountError> {
    statx(
        CWD,
        path,
        AtFlags::SYMLINK_NOFOLLOW,
        StatxFlags::BASIC_STATS,
    )
    .map_err(err("statx", path))
}

/// Whether `path` is the root of a mount (statx STATX_ATTR_MOUNT_ROOT).
pub fn is_mount_root(path: &Path) -> Result<bool, MountError> {
    let st = statx_nofollow(path)?;
    let mask = rustix::fs::StatxAttributes::MOUNT_ROOT;
    if !st.stx_attributes_mask.contains(mask) {
        return Err(err("statx mount-root attribute unsupported", path)(
            Errno::NOSYS,
        ));
    }
    Ok(st.stx_attributes.contains(mask))
}

/// Device number (major, minor) of the file system holding `path`, not following a final symlink.
pub fn dev_of(path: &Path) -> Result<(u32, u32), MountError> {
    let st = statx_nofollow(path)?;
    Ok((st.stx_dev_major, st.stx_dev_minor))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attrs_map_to_the_kernel_bits() {
        let a = Attrs {
            rdonly: true,
            nodev: true,
            nosuid: false,
            noexec: true,
        };
        assert_eq!(a.flags().bits(), 0x1 | 0x4 | 0x8);
        assert_eq!(Attrs::default().flags().bits(), 0);
    }

    #[test]
    fn root_of_proc_is_a_mount_root() {
        assert!(is_mount_root(Path::new("/proc")).unwrap());
        assert!(!is_mount_root(Path::new("/proc/self")).unwrap_or(false));
    }
}
