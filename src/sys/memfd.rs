//! Sealed memfds: the userspace-integrity path copies an image into anonymous memory, seals it
//! against any further change (`F_SEAL_WRITE|F_SEAL_SHRINK|F_SEAL_GROW|F_SEAL_SEAL`), verifies the
//! sealed bytes and loop-mounts that very descriptor, so what was checked is what the kernel reads.

use crate::verity::BlockSource;
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{
    fcntl_add_seals, fcntl_get_seals, ftruncate, memfd_create, MemfdFlags, SealFlags,
};
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// A memfd being filled; not yet trustworthy because anyone holding it could still write.
pub struct MemfdWriter {
    file: File,
    size: u64,
}

/// A memfd whose contents can no longer change.
#[derive(Debug)]
pub struct SealedMemfd {
    file: File,
    size: u64,
}

const SEALS: SealFlags = SealFlags::WRITE
    .union(SealFlags::SHRINK)
    .union(SealFlags::GROW)
    .union(SealFlags::SEAL);

impl MemfdWriter {
    /// A new sealable memfd of exactly `size` bytes (zero-filled).
    pub fn new(name: &str, size: u64) -> io::Result<Self> {
        let fd: OwnedFd = memfd_create(name, MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING)?;
        ftruncate(&fd, size)?;
        Ok(Self {
            file: File::from(fd),
            size,
        })
    }

    /// Writes `buf` at `offset`.
    pub fn write_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.file.write_all_at(buf, offset)
    }

    /// Copies `len` bytes from `src` (starting at `src_off`) to the start of the memfd, skipping
    /// holes the source reports.
    pub fn copy_from<S: BlockSource + ?Sized>(
        &mut self,
        src: &S,
        src_off: u64,
        len: u64,
    ) -> io::Result<()> {
        use crate::io::copy::{copy_range, CopyError};
        copy_range(src, src_off, len, &self.file, 0).map_err(|e| match e {
            CopyError::Read(e) | CopyError::Write(e) => e,
        })
    }

    /// Seals the memfd; afterwards writes, truncation and growth fail with EPERM, and the seals
    /// themselves cannot be removed.
    pub fn seal(self) -> io::Result<SealedMemfd> {
        fcntl_add_seals(&self.file, SEALS)?;
        let got = fcntl_get_seals(&self.file)?;
        if !got.contains(SEALS) {
            return Err(io::Error::other("memfd seals did not stick"));
        }
        Ok(SealedMemfd {
            file: self.file,
            size: self.size,
        })
    }
}

impl SealedMemfd {
    /// The sealed descriptor.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }

    /// Another descriptor of the same sealed memfd (the seals belong to the file, not the
    /// descriptor, so the copy is just as immutable).
    pub fn try_clone(&self) -> io::Result<SealedMemfd> {
        Ok(SealedMemfd {
            file: self.file.try_clone()?,
            size: self.size,
        })
    }
}

impl BlockSource for SealedMemfd {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.file.read_exact_at(buf, offset)
    }

    fn size(&self) -> u64 {
        self.size
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_memfd_refuses_writes_and_keeps_its_bytes() {
        let src: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        let mut w = MemfdWriter::new("t", src.len() as u64).unwrap();
        w.copy_from(&src, 0, src.len() as u64).unwrap();
        let s = w.seal().unwrap();
        let mut back = vec![0u8; src.len()];
        s.read_at(&mut back, 0).unwrap();
        assert_eq!(back, src);
        let e = s.file.write_at(b"x", 0).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EPERM));
        assert!(ftruncate(s.fd(), 1).is_err());
        assert!(ftruncate(s.fd(), 1 << 30).is_err());
    }
}
