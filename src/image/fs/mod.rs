//! Reading a few small files (extension-release, os-release) and directory listings out of an
//! erofs or squashfs image without mounting it, copying it or running a C tool on it: just the
//! on-disk structures needed to walk a path and read a regular file, parsed in Rust.
//!
//! Every read goes through a [`BlockSource`]; for a verity-protected image that is the verifying
//! reader of an authenticated tree ([`crate::verity::authtree::AuthTree::reader`]), so only bytes
//! that passed their hash path are ever parsed. Everything is bounded ([`crate::limits`]): path
//! depth, directory size and entry count, file size, decompressed metadata, and the number of
//! reads one question may cost. Features a reader does not implement fail closed with
//! [`FsError::Unsupported`] naming the feature. Pure core.

pub mod decompress;
pub mod erofs;
pub mod squashfs;

use crate::limits;
use crate::verity::BlockSource;
use std::cell::Cell;

/// Why a file system could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FsError {
    /// The underlying source failed (for a verifying source: a block that does not match its
    /// hash tree).
    #[error("reading {len} bytes at byte {offset} of the file system: {msg}")]
    Read {
        /// Where.
        offset: u64,
        /// How many bytes.
        len: u64,
        /// The error text.
        msg: String,
    },
    /// A structure is inconsistent.
    #[error("{fs}: {msg}")]
    Corrupt {
        /// erofs or squashfs.
        fs: &'static str,
        /// What is wrong, naming the structure.
        msg: String,
    },
    /// The image uses something this reader does not implement.
    #[error("{fs}: {feature} is not supported by verity's reader")]
    Unsupported {
        /// erofs or squashfs.
        fs: &'static str,
        /// The feature.
        feature: String,
    },
    /// A bound was hit.
    #[error("{what} is over the limit of {limit}")]
    Limit {
        /// What grew too large.
        what: String,
        /// The limit.
        limit: u64,
    },
    /// A path component that must be a directory is not one.
    #[error("{path}: {msg}")]
    Path {
        /// The path looked up.
        path: String,
        /// What is wrong with it.
        msg: String,
    },
}

/// What a directory entry or path names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link (never followed).
    Symlink,
    /// A device, FIFO or socket.
    Other,
}

/// One directory entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The name, as stored (not necessarily UTF-8).
    pub name: Vec<u8>,
    /// What it is.
    pub kind: Kind,
}

/// A [`BlockSource`] with a read budget: every structure a reader parses comes through here.
pub(crate) struct Src<'a> {
    src: &'a dyn BlockSource,
    reads: Cell<u64>,
    meta: Cell<u64>,
}

impl<'a> Src<'a> {
    pub(crate) fn new(src: &'a dyn BlockSource) -> Self {
        Self {
            src,
            reads: Cell::new(0),
            meta: Cell::new(0),
        }
    }

    /// Reads `len` bytes at `offset`; out-of-range reads are [`FsError::Read`].
    pub(crate) fn read(&self, offset: u64, len: u64) -> Result<Vec<u8>, FsError> {
        let err = |msg: String| FsError::Read { offset, len, msg };
        let n = self.reads.get() + 1;
        if n > limits::FS_BLOCK_READS {
            return Err(FsError::Limit {
                what: "reads for one lookup".into(),
                limit: limits::FS_BLOCK_READS,
            });
        }
        self.reads.set(n);
        if offset.checked_add(len).is_none_or(|e| e > self.src.size()) {
            return Err(err(format!(
                "past the end of the {}-byte file system",
                self.src.size()
            )));
        }
        let len = usize::try_from(len).map_err(|_| err("too large".into()))?;
        let mut buf = vec![0u8; len];
        self.src
            .read_at(&mut buf, offset)
            .map_err(|e| err(e.to_string()))?;
        Ok(buf)
    }

    /// Counts `n` decompressed metadata bytes against [`limits::FS_METADATA`].
    pub(crate) fn charge_meta(&self, n: u64) -> Result<(), FsError> {
        let t = self.meta.get().saturating_add(n);
        if t > limits::FS_METADATA {
            return Err(FsError::Limit {
                what: "metadata decompressed for one lookup".into(),
                limit: limits::FS_METADATA,
            });
        }
        self.meta.set(t);
        Ok(())
    }

    /// Starts a new question: the budgets are per lookup.
    pub(crate) fn reset(&self) {
        self.reads.set(0);
        self.meta.set(0);
    }
}

pub(crate) fn le16(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes([b[o], b[o + 1]])
}

pub(crate) fn le32(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes(b[o..o + 4].try_into().expect("4 bytes"))
}

pub(crate) fn le64(b: &[u8], o: usize) -> u64 {
    u64::from_le_bytes(b[o..o + 8].try_into().expect("8 bytes"))
}

/// What a file-system reader provides; [`Reader`] walks paths on top of it.
pub(crate) trait Tree {
    type Node: Clone;
    fn src(&self) -> &Src<'_>;
    fn root(&self) -> Result<Self::Node, FsError>;
    fn kind(&self, n: &Self::Node) -> Kind;
    fn entries(&self, dir: &Self::Node) -> Result<Vec<(Entry, Self::Node)>, FsError>;
    fn contents(&self, file: &Self::Node, max: u64) -> Result<Vec<u8>, FsError>;
}

/// Looks `path` up, component by component, never following symlinks. None if a component is
/// missing; an error if one that must be a directory is something else.
fn walk<T: Tree>(t: &T, path: &str) -> Result<Option<T::Node>, FsError> {
    let perr = |msg: &str| FsError::Path {
        path: path.to_string(),
        msg: msg.to_string(),
    };
    let comps: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
    if comps.len() > limits::FS_PATH_DEPTH {
        return Err(FsError::Limit {
            what: format!("path depth of {path}"),
            limit: limits::FS_PATH_DEPTH as u64,
        });
    }
    if comps.iter().any(|c| *c == "." || *c == "..") {
        return Err(perr("'.' and '..' are not looked up"));
    }
    let mut node = t.root()?;
    for (i, c) in comps.iter().enumerate() {
        match t.kind(&node) {
            Kind::Dir => {}
            Kind::Symlink => {
                return Err(perr(&format!("component {i} is a symlink, not followed")))
            }
            _ => return Err(perr(&format!("component {i} is not a directory"))),
        }
        let found = t
            .entries(&node)?
            .into_iter()
            .find(|(e, _)| e.name == c.as_bytes());
        match found {
            Some((_, n)) => node = n,
            None => return Ok(None),
        }
    }
    Ok(Some(node))
}

/// A file system to read from, by type.
pub enum Reader<'a> {
    /// erofs.
    Erofs(erofs::Erofs<'a>),
    /// squashfs 4.
    Squashfs(squashfs::Squashfs<'a>),
}

macro_rules! each {
    ($self:ident, $t:ident => $e:expr) => {
        match $self {
            Reader::Erofs($t) => {
                $t.src().reset();
                $e
            }
            Reader::Squashfs($t) => {
                $t.src().reset();
                $e
            }
        }
    };
}

impl<'a> Reader<'a> {
    /// Opens the file system of type `fs` on `src` (its superblock is checked here).
    pub fn open(src: &'a dyn BlockSource, fs: super::fsread::FsType) -> Result<Self, FsError> {
        Ok(match fs {
            super::fsread::FsType::Erofs => Reader::Erofs(erofs::Erofs::open(src)?),
            super::fsread::FsType::Squashfs => Reader::Squashfs(squashfs::Squashfs::open(src)?),
        })
    }

    /// What `path` is, None if absent.
    pub fn kind(&self, path: &str) -> Result<Option<Kind>, FsError> {
        each!(self, t => Ok(walk(t, path)?.map(|n| t.kind(&n))))
    }

    /// The contents of the regular file at `path` (at most `max` bytes, else an error), None if
    /// absent; anything but a regular file is an error (symlinks are not followed).
    pub fn read_file(&self, path: &str, max: u64) -> Result<Option<Vec<u8>>, FsError> {
        each!(self, t => {
            let Some(n) = walk(t, path)? else { return Ok(None) };
            if t.kind(&n) != Kind::File {
                return Err(FsError::Path { path: path.into(), msg: "not a regular file".into() });
            }
            t.contents(&n, max).map(Some)
        })
    }

    /// The entries of the directory at `path`, None if absent.
    pub fn list_dir(&self, path: &str) -> Result<Option<Vec<Entry>>, FsError> {
        each!(self, t => {
            let Some(n) = walk(t, path)? else { return Ok(None) };
            if t.kind(&n) != Kind::Dir {
                return Err(FsError::Path { path: path.into(), msg: "not a directory".into() });
            }
            Ok(Some(t.entries(&n)?.into_iter().map(|(e, _)| e).collect()))
        })
    }
}
