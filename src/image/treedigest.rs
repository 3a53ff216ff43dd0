//! The content digest of a directory extension (`verity-tree-v1`), so an unprotected extension is
//! measured as exactly what it is: a remote verifier sees its name, that it was unprotected and
//! unsigned, and a digest of everything in it.
//!
//! The digest is the SHA-256 of a manifest with one line per entry (the top directory is `.`),
//! lines sorted by their path bytes (as `LC_ALL=C sort` orders them):
//!
//! ```text
//! <type> <mode> <uid> <gid> <detail> <path>\n
//! ```
//!
//! - `type`: `d` directory, `f` regular file, `l` symlink, `c`/`b` character/block device, `p` fifo,
//!   `s` socket;
//! - `mode`: the permission bits (`st_mode & 07777`) as four octal digits; `uid`, `gid` decimal;
//! - `detail`: for `f` the size and the SHA-256 of the contents, `<size>:<hex>`; for `l` the link
//!   target; for `c`/`b` `<major>:<minor>`; `-` otherwise;
//! - `path`: relative to the top, `./` prefixed (`./usr/bin/tool`).
//!
//! Paths and link targets are escaped so a line cannot be forged by a crafted name: every byte
//! outside `!`..`~`, and `\`, is written `\ooo` (three octal digits). Timestamps, extended
//! attributes and hard-link identity are not covered. Like composefs and fs-verity digests it
//! covers names, types, modes, owners, link targets and every byte of file contents; unlike them it
//! is computed once, when the extension is merged: an unprotected tree can change afterwards, which
//! is what `unprotected` says.
//!
//! The digest is computed over the tree as mounted for the merge (the read-only bind in the
//! workspace), not a second lookup of the source path.

use sha2::{Digest, Sha256};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// What kind of entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// A directory.
    Dir,
    /// A regular file: size and SHA-256 of the contents.
    File(u64, [u8; 32]),
    /// A symlink and its target bytes.
    Symlink(Vec<u8>),
    /// A character device (major, minor).
    Char(u32, u32),
    /// A block device (major, minor).
    Block(u32, u32),
    /// A fifo.
    Fifo,
    /// A socket.
    Socket,
}

/// One manifest entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Path bytes relative to the top, without the `./` prefix (empty for the top itself).
    pub path: Vec<u8>,
    /// Type and type-specific detail.
    pub kind: Kind,
    /// `st_mode & 0o7777`.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
}

/// Escapes bytes outside `!`..`~` and the backslash as `\ooo`.
pub fn escape(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len());
    for &c in b {
        if (0x21..=0x7e).contains(&c) && c != b'\\' {
            s.push(c as char);
        } else {
            s.push_str(&format!("\\{c:03o}"));
        }
    }
    s
}

impl Entry {
    /// The manifest line, newline included.
    pub fn line(&self) -> String {
        let (t, detail) = match &self.kind {
            Kind::Dir => ('d', "-".to_string()),
            Kind::File(size, h) => ('f', format!("{size}:{}", crate::hex::encode(h))),
            Kind::Symlink(t) => ('l', escape(t)),
            Kind::Char(a, b) => ('c', format!("{a}:{b}")),
            Kind::Block(a, b) => ('b', format!("{a}:{b}")),
            Kind::Fifo => ('p', "-".to_string()),
            Kind::Socket => ('s', "-".to_string()),
        };
        let mut path = b".".to_vec();
        if !self.path.is_empty() {
            path.push(b'/');
            path.extend_from_slice(&self.path);
        }
        format!(
            "{t} {:04o} {} {} {detail} {}\n",
            self.mode & 0o7777,
            self.uid,
            self.gid,
            escape(&path)
        )
    }
}

/// The manifest of `entries`: their lines sorted by bytes.
pub fn manifest(entries: &[Entry]) -> String {
    let mut lines: Vec<(Vec<u8>, String)> = entries
        .iter()
        .map(|e| {
            let l = e.line();
            // Sort key: the escaped path as written (what `sort` sees when it sorts by that field).
            let key = l
                .rsplit_once(' ')
                .map(|(_, p)| p)
                .unwrap_or("")
                .as_bytes()
                .to_vec();
            (key, l)
        })
        .collect();
    lines.sort();
    lines.into_iter().map(|(_, l)| l).collect()
}

/// SHA-256 of the manifest.
pub fn digest(entries: &[Entry]) -> [u8; 32] {
    Sha256::digest(manifest(entries).as_bytes()).into()
}

/// Why a tree could not be digested.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}")]
pub struct WalkError {
    /// The entry that failed.
    pub path: PathBuf,
    /// Why.
    pub source: std::io::Error,
}

/// Walks the tree at `top` (not following symlinks, not crossing into other mounts' contents
/// any differently from what a reader of the merged tree would see) and returns its entries.
pub fn walk(top: &Path) -> Result<Vec<Entry>, WalkError> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let full = if rel.as_os_str().is_empty() {
            top.to_path_buf()
        } else {
            top.join(&rel)
        };
        let err = |source| WalkError {
            path: full.clone(),
            source,
        };
        let md = std::fs::symlink_metadata(&full).map_err(err)?;
        let ft = md.file_type();
        let kind = if ft.is_dir() {
            for e in std::fs::read_dir(&full).map_err(err)? {
                stack.push(rel.join(e.map_err(err)?.file_name()));
            }
            Kind::Dir
        } else if ft.is_file() {
            let mut f = std::fs::File::open(&full).map_err(err)?;
            let mut h = Sha256::new();
            let n = std::io::copy(&mut f, &mut h).map_err(err)?;
            Kind::File(n, h.finalize().into())
        } else if ft.is_symlink() {
            Kind::Symlink(
                std::fs::read_link(&full)
                    .map_err(err)?
                    .as_os_str()
                    .as_bytes()
                    .to_vec(),
            )
        } else if ft.is_char_device() {
            Kind::Char(rustix::fs::major(md.rdev()), rustix::fs::minor(md.rdev()))
        } else if ft.is_block_device() {
            Kind::Block(rustix::fs::major(md.rdev()), rustix::fs::minor(md.rdev()))
        } else if ft.is_fifo() {
            Kind::Fifo
        } else {
            Kind::Socket
        };
        out.push(Entry {
            path: rel.as_os_str().as_bytes().to_vec(),
            kind,
            mode: md.mode() & 0o7777,
            uid: md.uid(),
            gid: md.gid(),
        });
    }
    Ok(out)
}

/// The digest of the tree at `top`, lower-case hex.
pub fn tree_digest(top: &Path) -> Result<String, WalkError> {
    Ok(crate::hex::encode(&digest(&walk(top)?)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(path: &str, kind: Kind, mode: u32) -> Entry {
        Entry {
            path: path.as_bytes().to_vec(),
            kind,
            mode,
            uid: 0,
            gid: 0,
        }
    }

    #[test]
    fn lines_and_order() {
        let m = manifest(&[
            e("a/b", Kind::Dir, 0o755),
            e("a-c", Kind::Symlink(b"../x y".to_vec()), 0o777),
            e("", Kind::Dir, 0o755),
            e("a", Kind::Dir, 0o700),
            e("a/f\n", Kind::File(1, [0xab; 32]), 0o644),
        ]);
        let want = format!(
            "d 0755 0 0 - .\n\
             d 0700 0 0 - ./a\n\
             l 0777 0 0 ../x\\040y ./a-c\n\
             d 0755 0 0 - ./a/b\n\
             f 0644 0 0 1:{} ./a/f\\012\n",
            "ab".repeat(32)
        );
        assert_eq!(m, want);
    }

    #[test]
    fn every_covered_property_changes_the_digest() {
        let base = vec![
            e("", Kind::Dir, 0o755),
            e("f", Kind::File(3, [1; 32]), 0o644),
            e("l", Kind::Symlink(b"f".to_vec()), 0o777),
        ];
        let d = digest(&base);
        let variants: Vec<fn(&mut Vec<Entry>)> = vec![
            |v| v[1].kind = Kind::File(3, [2; 32]),
            |v| v[1].kind = Kind::File(4, [1; 32]),
            |v| v[1].mode = 0o755,
            |v| v[1].uid = 1,
            |v| v[1].gid = 1,
            |v| v[1].path = b"g".to_vec(),
            |v| v[2].kind = Kind::Symlink(b"g".to_vec()),
            |v| v[2].kind = Kind::File(0, [0; 32]),
            |v| v.push(e("d", Kind::Dir, 0o755)),
            |v| {
                v.remove(2);
            },
        ];
        for (i, f) in variants.iter().enumerate() {
            let mut v = base.clone();
            f(&mut v);
            assert_ne!(digest(&v), d, "variant {i}");
        }
        // Order of discovery does not matter.
        let mut r = base.clone();
        r.reverse();
        assert_eq!(digest(&r), d);
    }
}
