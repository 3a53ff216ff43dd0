//! Read-only loop devices backed by a file descriptor we already hold (a verified image or a sealed
//! memfd), via LOOP_CONFIGURE with a LOOP_SET_FD + LOOP_SET_STATUS64 fallback for old kernels.
//! Devices are attached with LO_FLAGS_AUTOCLEAR, so they go away with the last mount using them.

use rustix::fd::{AsRawFd, BorrowedFd};
use std::fs::{File, OpenOptions};
use std::io;
use std::path::PathBuf;

const LOOP_SET_FD: libc::c_ulong = 0x4C00;
const LOOP_CLR_FD: libc::c_ulong = 0x4C01;
const LOOP_SET_STATUS64: libc::c_ulong = 0x4C04;
const LOOP_CONFIGURE: libc::c_ulong = 0x4C0A;
const LOOP_CTL_GET_FREE: libc::c_ulong = 0x4C82;
const LO_FLAGS_READ_ONLY: u32 = 1;
const LO_FLAGS_AUTOCLEAR: u32 = 4;

#[repr(C)]
#[derive(Clone, Copy)]
struct LoopInfo64 {
    lo_device: u64,
    lo_inode: u64,
    lo_rdevice: u64,
    lo_offset: u64,
    lo_sizelimit: u64,
    lo_number: u32,
    lo_encrypt_type: u32,
    lo_encrypt_key_size: u32,
    lo_flags: u32,
    lo_file_name: [u8; 64],
    lo_crypt_name: [u8; 64],
    lo_encrypt_key: [u8; 32],
    lo_init: [u64; 2],
}

#[repr(C)]
struct LoopConfig {
    fd: u32,
    block_size: u32,
    info: LoopInfo64,
    reserved: [u64; 8],
}

/// An attached loop device, open read-only. Dropping it closes our handle; with autoclear the
/// kernel detaches the device once nothing (no mount) uses it any more.
#[derive(Debug)]
pub struct LoopDevice {
    file: File,
    path: PathBuf,
}

impl LoopDevice {
    /// `/dev/loopN`.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// Detaches the device now (for error paths before anything was mounted from it).
    pub fn detach(self) -> io::Result<()> {
        ioctl_arg(&self.file, LOOP_CLR_FD, 0)
    }
}

fn ioctl_arg(f: &File, req: libc::c_ulong, arg: libc::c_ulong) -> io::Result<()> {
    // SAFETY: the loop ioctls used with this helper take an integer argument (an fd or 0), not a
    // pointer; `f` is an open descriptor for the duration of the call.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::ioctl(f.as_raw_fd(), req, arg) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn ioctl_ptr<T>(f: &File, req: libc::c_ulong, arg: &T) -> io::Result<libc::c_int> {
    // SAFETY: `arg` points to a live, #[repr(C)] struct with the exact layout the ioctl expects
    // (struct loop_config / struct loop_info64 from <linux/loop.h>); the kernel only reads it.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::ioctl(f.as_raw_fd(), req, arg as *const T) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(rc)
}

fn with_path(e: io::Error, what: &str) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

/// Attaches `backing` read-only to a free loop device, covering `size` bytes from `offset` (0 =
/// to the end).
pub fn attach_readonly(backing: BorrowedFd<'_>, offset: u64, size: u64) -> io::Result<LoopDevice> {
    let ctl = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/loop-control")
        .map_err(|e| with_path(e, "/dev/loop-control"))?;
    // A free device can be taken by someone else between GET_FREE and SET_FD (EBUSY): retry.
    for _ in 0..16 {
        // SAFETY: LOOP_CTL_GET_FREE takes no argument and returns a device number.
        #[allow(unsafe_code)]
        let n = unsafe { libc::ioctl(ctl.as_raw_fd(), LOOP_CTL_GET_FREE) };
        if n < 0 {
            return Err(with_path(io::Error::last_os_error(), "LOOP_CTL_GET_FREE"));
        }
        let path = PathBuf::from(format!("/dev/loop{n}"));
        let dev = OpenOptions::new()
            .read(true)
            .open(&path)
            .map_err(|e| with_path(e, &path.display().to_string()))?;
        // SAFETY: loop_info64 is plain old data; all-zero is its documented "unset" value.
        #[allow(unsafe_code)]
        let mut info: LoopInfo64 = unsafe { std::mem::zeroed() };
        info.lo_offset = offset;
        info.lo_sizelimit = size;
        info.lo_flags = LO_FLAGS_READ_ONLY | LO_FLAGS_AUTOCLEAR;
        let cfg = LoopConfig {
            fd: backing.as_raw_fd() as u32,
            block_size: 0,
            info,
            reserved: [0; 8],
        };
        match ioctl_ptr(&dev, LOOP_CONFIGURE, &cfg) {
            Ok(_) => return Ok(LoopDevice { file: dev, path }),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => continue,
            Err(e)
                if e.raw_os_error() == Some(libc::EINVAL)
                    || e.raw_os_error() == Some(libc::ENOTTY) =>
            {
                // Kernels before 5.8: two steps.
                match ioctl_arg(&dev, LOOP_SET_FD, backing.as_raw_fd() as libc::c_ulong) {
                    Ok(()) => {}
                    Err(e) if e.raw_os_error() == Some(libc::EBUSY) => continue,
                    Err(e) => return Err(with_path(e, "LOOP_SET_FD")),
                }
                if let Err(e) = ioctl_ptr(&dev, LOOP_SET_STATUS64, &info) {
                    let _ = ioctl_arg(&dev, LOOP_CLR_FD, 0);
                    return Err(with_path(e, "LOOP_SET_STATUS64"));
                }
                return Ok(LoopDevice { file: dev, path });
            }
            Err(e) => return Err(with_path(e, &format!("LOOP_CONFIGURE {}", path.display()))),
        }
    }
    Err(io::Error::other("no free loop device after 16 tries"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn struct_layouts_match_linux_loop_h() {
        assert_eq!(std::mem::size_of::<LoopInfo64>(), 232);
        assert_eq!(std::mem::size_of::<LoopConfig>(), 304);
    }
}
