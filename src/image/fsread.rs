//! File-system types of image partitions (recognised by their magic numbers) and a private
//! temporary directory for the image builder. Reading files out of an image is [`super::fs`]:
//! Rust readers over authenticated blocks, with no copy of the partition and no C tool.

use super::ddi::Extent;
use crate::io::FileSource;
use crate::verity::BlockSource;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// A private (0700) temporary directory removed on drop.
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// Creates a new directory under the system temporary directory.
    pub fn new() -> io::Result<Self> {
        static N: AtomicU64 = AtomicU64::new(0);
        let base = std::env::temp_dir();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        for _ in 0..100 {
            let p = base.join(format!(
                "verity-image-{}-{}-{nanos}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            let mut b = std::fs::DirBuilder::new();
            std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
            match b.create(&p) {
                Ok(()) => return Ok(Self { path: p }),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
        Err(io::Error::other("cannot create a temporary directory"))
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// File-system types we can read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FsType {
    /// erofs (magic 0xE0F5E1E2 at byte 1024).
    Erofs,
    /// squashfs 4 (magic "hsqs" at byte 0).
    Squashfs,
}

impl FsType {
    /// Name as mkfs tools spell it.
    pub fn name(self) -> &'static str {
        match self {
            FsType::Erofs => "erofs",
            FsType::Squashfs => "squashfs",
        }
    }
}

/// Recognises the file system from its first 2 KiB.
pub fn detect(head: &[u8]) -> Option<FsType> {
    if head.len() >= 4 && &head[0..4] == b"hsqs" {
        return Some(FsType::Squashfs);
    }
    if head.len() >= 1028 && head[1024..1028] == 0xE0F5_E1E2u32.to_le_bytes() {
        return Some(FsType::Erofs);
    }
    None
}

/// Reads the file-system type of a partition.
pub fn detect_in(src: &FileSource, extent: Extent) -> Option<FsType> {
    let n = extent.size.min(2048) as usize;
    let mut head = vec![0u8; n];
    src.read_at(&mut head, extent.offset).ok()?;
    detect(&head)
}
