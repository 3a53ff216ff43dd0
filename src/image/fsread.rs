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

/// The kernel file-system type to mount a partition as, from its first 2 KiB: the types we can
/// read ([`detect`]), plus ext4 (superblock magic 0xEF53 at byte 1080), which is mounted but never
/// read by us. The one file-system detection of the crate; admission mounts by it.
pub fn mount_type(head: &[u8]) -> Option<&'static str> {
    detect(head).map(FsType::name).or_else(|| {
        (head.len() >= 1082 && head[1080..1082] == 0xEF53u16.to_le_bytes()).then_some("ext4")
    })
}

/// Reads the file-system type of a partition.
pub fn detect_in(src: &FileSource, extent: Extent) -> Option<FsType> {
    let n = extent.size.min(2048) as usize;
    let mut head = vec![0u8; n];
    src.read_at(&mut head, extent.offset).ok()?;
    detect(&head)
}
