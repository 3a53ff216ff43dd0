//! File-system types of image partitions (recognised by their magic numbers). Reading files out of
//! an image is [`super::fs`]:
//! Rust readers over authenticated blocks, with no copy of the partition and no C tool.

use super::ddi::Extent;
use crate::io::FileSource;
use crate::verity::BlockSource;

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
