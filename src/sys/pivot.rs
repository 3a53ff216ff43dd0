//! The syscalls of a root switch: mount propagation, bind mounts, `pivot_root` (with the `MS_MOVE` +
//! `chroot` fallback), lazy detach, resolving paths inside another root, mount identity (`statx`),
//! and the final `execve` that hands renumbered file descriptors to the new init.
//!
//! No decisions here: `reboot::exec` decides what to bind, in which order, and what to undo.

use rustix::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use rustix::fs::{openat2, statx, AtFlags, Mode, OFlags, ResolveFlags, StatxFlags};
use rustix::mount::{
    mount_bind, mount_bind_recursive, mount_change, mount_move, unmount, MountPropagationFlags,
    UnmountFlags,
};
use std::ffi::OsString;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

/// `STATX_MNT_ID_UNIQUE` (Linux 6.8): a 64-bit mount id never reused while the system runs.
const STATX_MNT_ID_UNIQUE: u32 = 0x4000;

fn err(e: rustix::io::Errno, what: impl std::fmt::Display) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

/// Identity of a mounted file system's root as the kernel reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MountIdentity {
    /// st_dev of the directory (major, minor).
    pub dev: (u32, u32),
    /// Inode of the directory.
    pub ino: u64,
    /// Mount id: the unique one when the kernel has it, else the classic (reusable) one.
    pub mnt_id: u64,
    /// Whether `mnt_id` is the never-reused one.
    pub mnt_id_unique: bool,
    /// The id of the mount that holds the parent directory (`..`); differs from `mnt_id` at a mount
    /// point.
    pub parent_mnt_id: u64,
}

fn statx_mnt(
    dirfd: BorrowedFd<'_>,
    path: &str,
    what: &Path,
) -> io::Result<(rustix::fs::Statx, u64, bool)> {
    let mask = StatxFlags::BASIC_STATS | StatxFlags::from_bits_retain(STATX_MNT_ID_UNIQUE);
    let st = statx(dirfd, path, AtFlags::EMPTY_PATH, mask)
        .map_err(|e| err(e, format_args!("statx {}", what.display())))?;
    if st.stx_mask & STATX_MNT_ID_UNIQUE != 0 {
        return Ok((st, st.stx_mnt_id, true));
    }
    let st = statx(
        dirfd,
        path,
        AtFlags::EMPTY_PATH,
        StatxFlags::BASIC_STATS | StatxFlags::MNT_ID,
    )
    .map_err(|e| err(e, format_args!("statx {}", what.display())))?;
    if st.stx_mask & StatxFlags::MNT_ID.bits() == 0 {
        return Err(io::Error::other(format!(
            "statx {}: the kernel reports no mount id",
            what.display()
        )));
    }
    Ok((st, st.stx_mnt_id, false))
}

/// Opens a directory as an `O_PATH` handle, following symlinks (systemd accepts a symlinked
/// /run/nextroot).
pub fn open_dir(path: &Path) -> io::Result<OwnedFd> {
    rustix::fs::open(
        path,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| err(e, format_args!("open {}", path.display())))
}

/// The identity of the directory `dir` (opened with [`open_dir`]).
pub fn mount_identity(dir: BorrowedFd<'_>, what: &Path) -> io::Result<MountIdentity> {
    let (st, mnt_id, unique) = statx_mnt(dir, "", what)?;
    if st.stx_mode as u32 & libc::S_IFMT != libc::S_IFDIR {
        return Err(io::Error::other(format!(
            "{} is not a directory",
            what.display()
        )));
    }
    let (_, parent_mnt_id, _) = statx_mnt(dir, "..", &what.join(".."))?;
    Ok(MountIdentity {
        dev: (st.stx_dev_major, st.stx_dev_minor),
        ino: st.stx_ino,
        mnt_id,
        mnt_id_unique: unique,
        parent_mnt_id,
    })
}

/// Opens `path` (relative to `root`) with every symlink resolved inside `root`, as the new root will
/// see it: an absolute symlink such as `/sbin/init -> /bin/busybox` must not escape into ours.
pub fn open_in_root(root: BorrowedFd<'_>, path: &str, flags: OFlags) -> io::Result<OwnedFd> {
    let rel = path.trim_start_matches('/');
    openat2(
        root,
        if rel.is_empty() { "." } else { rel },
        flags | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
    )
    .map_err(|e| err(e, format_args!("open {path} inside the new root")))
}

/// File type and permission bits of an open file.
pub fn mode_of(fd: BorrowedFd<'_>, what: &str) -> io::Result<u32> {
    let st = rustix::fs::fstat(fd).map_err(|e| err(e, format_args!("fstat {what}")))?;
    Ok(st.st_mode)
}

/// Whether `path` is a mount point in the current namespace (its mount differs from its parent's).
pub fn is_mount_point(path: &Path) -> io::Result<bool> {
    let fd = open_dir(path)?;
    let id = mount_identity(fd.as_fd(), path)?;
    Ok(id.mnt_id != id.parent_mnt_id)
}

/// Makes every mount below `/` private, recursively: the kernel refuses to move shared mounts, and
/// nothing we do here may propagate back to another namespace.
pub fn make_rprivate() -> io::Result<()> {
    mount_change(
        "/",
        MountPropagationFlags::PRIVATE | MountPropagationFlags::REC,
    )
    .map_err(|e| err(e, "making / recursively private"))
}

/// Bind-mounts `src` on `dst`, recursively or not.
pub fn bind(src: &Path, dst: &Path, recursive: bool) -> io::Result<()> {
    let r = if recursive {
        mount_bind_recursive(src, dst)
    } else {
        mount_bind(src, dst)
    };
    r.map_err(|e| {
        err(
            e,
            format_args!(
                "bind-mounting {} on {}{}",
                src.display(),
                dst.display(),
                if recursive { " (recursive)" } else { "" }
            ),
        )
    })
}

/// Lazily detaches the mount at `path` (and everything below it).
pub fn detach(path: &Path) -> io::Result<()> {
    unmount(path, UnmountFlags::DETACH)
        .map_err(|e| err(e, format_args!("detaching {}", path.display())))
}

/// How a pivot failed.
#[derive(Debug)]
pub enum PivotError {
    /// `pivot_root` itself was refused: nothing changed (the working directory aside).
    Refused(io::Error),
    /// The pivot happened but the old root could not be detached: there is no way back.
    Pivoted(io::Error),
}

/// `pivot_root(".", ".")` inside `new_root`, then lazily detaches the old root that now sits on top
/// of it. On success the process's root and working directory are the new root and the old root is
/// unreachable from this mount namespace.
pub fn pivot_into(new_root: BorrowedFd<'_>) -> Result<(), PivotError> {
    rustix::process::fchdir(new_root)
        .map_err(|e| PivotError::Refused(err(e, "chdir into the new root")))?;
    rustix::process::pivot_root(".", ".").map_err(|e| PivotError::Refused(err(e, "pivot_root")))?;
    // The old root is stacked on "." now; past this point there is no way back.
    unmount(".", UnmountFlags::DETACH)
        .map_err(|e| PivotError::Pivoted(err(e, "detaching the old root after pivot_root")))?;
    rustix::process::chdir("/").map_err(|e| PivotError::Pivoted(err(e, "chdir / after pivot_root")))
}

/// The fallback where pivot_root is impossible (the old root is the initramfs rootfs): move the new
/// root over `/` and chroot into it. The old root stays mounted underneath, unreachable.
pub fn move_and_chroot(new_root: BorrowedFd<'_>) -> io::Result<()> {
    rustix::process::fchdir(new_root).map_err(|e| err(e, "chdir into the new root"))?;
    mount_move(".", "/").map_err(|e| err(e, "moving the new root onto / (MS_MOVE)"))?;
    rustix::process::chroot(".").map_err(|e| err(e, "chroot"))?;
    rustix::process::chdir("/").map_err(|e| err(e, "chdir / after chroot"))
}

/// Checks that `fd` is an open descriptor of this process.
pub fn fd_is_open(fd: i32) -> bool {
    if fd < 0 {
        return false;
    }
    // SAFETY: the borrowed descriptor is only used for this fcntl(F_GETFD) query and not kept; a
    // closed number makes the call fail with EBADF, which is the answer we want.
    let b = unsafe { BorrowedFd::borrow_raw(fd) };
    rustix::io::fcntl_getfd(b).is_ok()
}

/// Replaces this process with `init`, handing it the descriptors `keep` renumbered from 3 in the
/// given order, and every other descriptor above 2 closed by the exec. `env` is the complete
/// environment. Only returns on failure.
///
/// The renumbering is done in two steps (first to fresh close-on-exec copies above the target
/// range, then `dup2` into place) so that a kept descriptor whose number lies in the target range
/// is not overwritten before it has been copied.
pub fn exec_with_fds(
    init: &Path,
    argv0: &str,
    keep: &[i32],
    env: &[(OsString, OsString)],
) -> io::Error {
    let n = keep.len() as i32;
    let mut copies: Vec<OwnedFd> = Vec::with_capacity(keep.len());
    for &fd in keep {
        if !fd_is_open(fd) {
            return io::Error::other(format!("kept descriptor {fd} is not open"));
        }
        // SAFETY: `fd` was just checked to be open; the borrow lives only for this dup.
        let b = unsafe { BorrowedFd::borrow_raw(fd) };
        match rustix::io::fcntl_dupfd_cloexec(b, 3 + n) {
            Ok(c) => copies.push(c),
            Err(e) => return err(e, format_args!("duplicating kept descriptor {fd}")),
        }
    }
    for (i, c) in copies.iter().enumerate() {
        let target = 3 + i as i32;
        // SAFETY: dup2 onto a number whose old descriptor the kernel closes; no Rust owner of it runs
        // again (we exec next, or report an error past the point of no return).
        let r = unsafe { libc::dup2(c.as_raw_fd(), target) };
        if r < 0 {
            return io::Error::last_os_error();
        }
    }
    // Everything above the kept range (our own descriptors, the copies) closes at exec; nothing
    // from the old root leaks into the new init unless it was asked for.
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only sets flags; it closes nothing now.
    let r = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            (3 + n) as libc::c_uint,
            libc::c_uint::MAX,
            libc::CLOSE_RANGE_CLOEXEC as libc::c_uint,
        )
    };
    if r < 0 {
        return io::Error::other(format!(
            "close_range(CLOSE_RANGE_CLOEXEC): {}",
            io::Error::last_os_error()
        ));
    }
    let mut cmd = Command::new(init);
    cmd.arg0(argv0)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)));
    let e = cmd.exec();
    io::Error::new(e.kind(), format!("execve {}: {e}", init.display()))
}

/// This process's PID as seen in its own PID namespace.
pub fn own_pid() -> i32 {
    rustix::process::getpid().as_raw_nonzero().get()
}

/// Whether `rel` below the directory `dir` is a directory itself (not a symlink to one, which a
/// mount would follow out of the new root).
pub fn is_dir_in(dir: BorrowedFd<'_>, rel: &str) -> bool {
    rustix::fs::statat(dir, rel.trim_start_matches('/'), AtFlags::SYMLINK_NOFOLLOW)
        .map(|st| st.st_mode & libc::S_IFMT == libc::S_IFDIR)
        .unwrap_or(false)
}

/// Moves the mount at `src` to `dst` (`MS_MOVE`).
pub fn move_mount_to(src: &Path, dst: &Path) -> io::Result<()> {
    mount_move(src, dst).map_err(|e| {
        err(
            e,
            format_args!("moving the mount at {} to {}", src.display(), dst.display()),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_resolve_inside_the_new_root() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("root");
        std::fs::create_dir_all(root.join("bin")).unwrap();
        std::fs::write(root.join("bin/busybox"), b"inside").unwrap();
        // An absolute symlink, as images ship them: it must land inside the new root, not ours.
        std::os::unix::fs::symlink("/bin/busybox", root.join("bin/sh")).unwrap();
        std::os::unix::fs::symlink("/", root.join("dev")).unwrap();
        std::fs::create_dir(root.join("proc")).unwrap();
        let fd = open_dir(&root).unwrap();
        let sh = open_in_root(fd.as_fd(), "/bin/sh", OFlags::RDONLY).unwrap();
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::fs::File::from(sh), &mut s).unwrap();
        assert_eq!(s, "inside");
        // ".." cannot climb out either.
        assert!(open_in_root(fd.as_fd(), "/../../etc/passwd", OFlags::RDONLY).is_err());
        // A symlinked /dev would make a bind mount follow it out of the new root.
        assert!(!is_dir_in(fd.as_fd(), "dev"));
        assert!(is_dir_in(fd.as_fd(), "proc"));
        assert!(!is_dir_in(fd.as_fd(), "missing"));
    }

    #[test]
    fn mount_identity_of_a_plain_directory() {
        let d = tempfile::tempdir().unwrap();
        let fd = open_dir(d.path()).unwrap();
        let id = mount_identity(fd.as_fd(), d.path()).unwrap();
        let md = std::fs::metadata(d.path()).unwrap();
        assert_eq!(id.ino, std::os::unix::fs::MetadataExt::ino(&md));
        // A fresh temp dir is not a mount point.
        assert_eq!(id.mnt_id, id.parent_mnt_id);
        assert!(!is_mount_point(d.path()).unwrap());
        assert!(open_dir(&d.path().join("nope")).is_err());
    }

    #[test]
    fn descriptor_checks() {
        let f = std::fs::File::open("/dev/null").unwrap();
        assert!(fd_is_open(f.as_raw_fd()));
        assert!(!fd_is_open(-1));
    }
}
