//! Reading a few files (extension-release, os-release) out of a file-system image without mounting
//! anything: the bytes are copied out of the open image into a private temporary file and read by
//! the file-system tools in user space (`fsck.erofs --extract` from erofs-utils, `unsquashfs` from
//! squashfs-tools) into a private temporary directory. Nothing is mounted, in any namespace, so this
//! needs no privileges and cannot disturb the host. I/O edge.

use super::ddi::Extent;
use crate::io::FileSource;
use crate::verity::BlockSource;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;
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

/// A file system copied out of an image and unpacked enough to read release files.
pub struct Unpacked {
    dir: TempDir,
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {:?}: {e}", cmd.get_program()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{:?} failed: {}",
            cmd.get_program(),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Copies `extent` of `src` into a private file (streaming, 1 MiB at a time).
pub fn copy_extent(src: &FileSource, extent: Extent, dest: &Path) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::create(dest)?;
    let mut buf = vec![0u8; 1 << 20];
    let mut done = 0u64;
    while done < extent.size {
        let n = ((extent.size - done) as usize).min(buf.len());
        src.read_at(&mut buf[..n], extent.offset + done)?;
        f.write_all_at(&buf[..n], done)?;
        done += n as u64;
    }
    f.set_len(extent.size)
}

impl Unpacked {
    /// Unpacks the release files of the file system image at `image` (a private copy).
    pub fn new(image: &Path, fs: FsType) -> Result<Self, String> {
        let dir = TempDir::new().map_err(|e| format!("temporary directory: {e}"))?;
        let root = dir.path().join("root");
        match fs {
            FsType::Erofs => run(Command::new("fsck.erofs")
                .arg(format!("--extract={}", root.display()))
                .arg("--no-preserve")
                .arg(image))?,
            FsType::Squashfs => {
                // Only the paths that matter; unsquashfs skips the ones that do not exist.
                run(Command::new("unsquashfs")
                    .args(["-no-xattrs", "-no-progress", "-quiet", "-d"])
                    .arg(&root)
                    .arg(image)
                    .args([
                        "usr/lib/extension-release.d",
                        "etc/extension-release.d",
                        "usr/lib/os-release",
                    ]))?
            }
        }
        Ok(Self { dir })
    }

    /// A regular file's contents (symlinks are not followed: they could point out of the image),
    /// None if absent.
    pub fn read(&self, rel: &str) -> Result<Option<Vec<u8>>, String> {
        let p = self.dir.path().join("root").join(rel);
        match std::fs::symlink_metadata(&p) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("{rel}: {e}")),
            Ok(m) if !m.is_file() => Err(format!("{rel} is not a regular file")),
            Ok(m) if m.len() > super::release::MAX_SIZE as u64 => {
                Err(format!("{rel} is larger than 64 KiB"))
            }
            Ok(_) => std::fs::read(&p)
                .map(Some)
                .map_err(|e| format!("{rel}: {e}")),
        }
    }

    /// True if `rel` exists in any form.
    pub fn exists(&self, rel: &str) -> bool {
        std::fs::symlink_metadata(self.dir.path().join("root").join(rel)).is_ok()
    }
}
