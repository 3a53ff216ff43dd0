//! The erofs structures needed to walk a path and read a small file: the superblock (at byte
//! 1024), compact (32-byte) and extended (64-byte) inodes, directory blocks of `erofs_dirent`s,
//! and the uncompressed data layouts FLAT_PLAIN, FLAT_INLINE (tail packed after the inode) and
//! CHUNK_BASED. Compressed file data (lz4/lzma/deflate/zstd pclusters) is refused by name: small
//! release files are stored uncompressed by mkfs.erofs (compression cannot save a block), and
//! directories are never compressed by the erofs-utils versions we build with. Layout as in the
//! kernel's `fs/erofs/erofs_fs.h`. Pure core.

use super::{le16, le32, le64, Entry, FsError, Kind, Src, Tree};
use crate::limits;
use crate::verity::BlockSource;

const MAGIC: u32 = 0xE0F5_E1E2;
const SB_OFFSET: u64 = 1024;
/// Incompatible features that change nothing for uncompressed files and directories: LZ4
/// zero padding, compression configs / big pclusters, chunked files, device table / compressed
/// head2, ztailpacking, fragments / dedupe, xattr prefixes.
const KNOWN_INCOMPAT: u32 = 0x7f;
const CHUNKED_FILE: u32 = 0x4;
const NULL_ADDR: u32 = 0xffff_ffff;

const FLAT_PLAIN: u8 = 0;
const FLAT_INLINE: u8 = 2;
const CHUNK_BASED: u8 = 4;

fn corrupt(msg: impl Into<String>) -> FsError {
    FsError::Corrupt {
        fs: "erofs",
        msg: msg.into(),
    }
}

fn unsupported(feature: impl Into<String>) -> FsError {
    FsError::Unsupported {
        fs: "erofs",
        feature: feature.into(),
    }
}

/// An erofs file system.
pub struct Erofs<'a> {
    src: Src<'a>,
    blkbits: u32,
    meta_blkaddr: u64,
    root_nid: u64,
    incompat: u32,
}

/// A node as a directory entry names it; its inode is read when needed.
#[derive(Debug, Clone, Copy)]
pub struct Node {
    nid: u64,
    kind: Kind,
}

/// A parsed inode.
struct Inode {
    nid: u64,
    kind: Kind,
    layout: u8,
    size: u64,
    raw: u32,
    /// Inode plus inline xattrs: where inline data or chunk indexes start.
    body: u64,
}

fn kind_of_mode(mode: u16) -> Kind {
    match mode & 0o170000 {
        0o100000 => Kind::File,
        0o040000 => Kind::Dir,
        0o120000 => Kind::Symlink,
        _ => Kind::Other,
    }
}

impl<'a> Erofs<'a> {
    /// Reads and checks the superblock.
    pub fn open(src: &'a dyn BlockSource) -> Result<Self, FsError> {
        let src = Src::new(src);
        let sb = src.read(SB_OFFSET, 128)?;
        if le32(&sb, 0) != MAGIC {
            return Err(corrupt("no erofs superblock magic at byte 1024"));
        }
        let blkbits = sb[12] as u32;
        if !(9..=16).contains(&blkbits) {
            return Err(corrupt(format!("block size bits {blkbits} out of range")));
        }
        let incompat = le32(&sb, 80);
        if incompat & !KNOWN_INCOMPAT != 0 {
            return Err(unsupported(format!(
                "incompatible feature bits {:#x}",
                incompat & !KNOWN_INCOMPAT
            )));
        }
        if le16(&sb, 86) != 0 {
            return Err(unsupported("extra devices"));
        }
        Ok(Self {
            src,
            blkbits,
            meta_blkaddr: le32(&sb, 40) as u64,
            root_nid: le16(&sb, 14) as u64,
            incompat,
        })
    }

    fn blksz(&self) -> u64 {
        1 << self.blkbits
    }

    fn inode(&self, nid: u64) -> Result<Inode, FsError> {
        let at = self
            .meta_blkaddr
            .checked_mul(self.blksz())
            .and_then(|m| nid.checked_mul(32).and_then(|n| m.checked_add(n)))
            .ok_or_else(|| corrupt(format!("inode {nid} lies beyond 2^64")))?;
        let c = self.src.read(at, 32)?;
        let format = le16(&c, 0);
        if format & !0xf != 0 {
            return Err(unsupported(format!("inode {nid} format bits {format:#x}")));
        }
        let extended = format & 1 == 1;
        let layout = ((format >> 1) & 7) as u8;
        let (isize, size, mode, raw) = if extended {
            let e = self.src.read(at, 64)?;
            (64u64, le64(&e, 8), le16(&e, 4), le32(&e, 16))
        } else {
            (32u64, le32(&c, 8) as u64, le16(&c, 4), le32(&c, 16))
        };
        let icount = le16(&c, 2) as u64;
        let xattrs = if icount == 0 {
            0
        } else {
            12 + 4 * (icount - 1)
        };
        Ok(Inode {
            nid,
            kind: kind_of_mode(mode),
            layout,
            size,
            raw,
            body: at + isize + xattrs,
        })
    }

    /// Reads `[off, off + len)` of the inode's data (`len` already bounded by the caller).
    fn data(&self, ino: &Inode, off: u64, len: u64) -> Result<Vec<u8>, FsError> {
        let bs = self.blksz();
        let end = off + len;
        if end > ino.size {
            return Err(corrupt(format!("read past the end of inode {}", ino.nid)));
        }
        let mut out = Vec::with_capacity(len as usize);
        let mut pos = off;
        while pos < end {
            // One block (or the inline tail) at a time.
            let in_blk = pos % bs;
            let n = (end - pos).min(bs - in_blk);
            let chunk = match ino.layout {
                FLAT_PLAIN => {
                    let a = (ino.raw as u64 * bs)
                        .checked_add(pos)
                        .ok_or_else(|| corrupt(format!("inode {} data address", ino.nid)))?;
                    self.src.read(a, n)?
                }
                FLAT_INLINE => {
                    let last = ino.size.div_ceil(bs) - 1;
                    if pos / bs < last {
                        self.src.read(ino.raw as u64 * bs + pos, n)?
                    } else {
                        let tail = ino.size - last * bs;
                        if ino.body % bs + tail > bs {
                            return Err(corrupt(format!(
                                "inline data of inode {} crosses a block boundary",
                                ino.nid
                            )));
                        }
                        self.src.read(ino.body + in_blk, n)?
                    }
                }
                CHUNK_BASED => self.chunk_read(ino, pos, n)?,
                1 | 3 => {
                    return Err(unsupported(format!(
                        "compressed data (inode {}, layout {})",
                        ino.nid, ino.layout
                    )))
                }
                l => return Err(corrupt(format!("inode {} has data layout {l}", ino.nid))),
            };
            out.extend_from_slice(&chunk);
            pos += n;
        }
        Ok(out)
    }

    fn chunk_read(&self, ino: &Inode, pos: u64, n: u64) -> Result<Vec<u8>, FsError> {
        if self.incompat & CHUNKED_FILE == 0 {
            return Err(corrupt(format!(
                "inode {} is chunk-based without the feature",
                ino.nid
            )));
        }
        let format = ino.raw & 0xffff;
        if format & !0x3f != 0 {
            return Err(unsupported(format!("chunk format {format:#x}")));
        }
        let chunkbits = self.blkbits + (format & 0x1f);
        if chunkbits > 40 {
            return Err(corrupt(format!("chunk size 2^{chunkbits}")));
        }
        let indexes = format & 0x20 != 0;
        let unit = if indexes { 8 } else { 4 };
        let base = ino.body.div_ceil(unit) * unit;
        let chunk = pos >> chunkbits;
        let e = self.src.read(base + chunk * unit, unit)?;
        let (dev, blk) = if indexes {
            (le16(&e, 2), le32(&e, 4))
        } else {
            (0, le32(&e, 0))
        };
        if dev != 0 {
            return Err(unsupported("chunks on extra devices"));
        }
        if blk == NULL_ADDR {
            return Ok(vec![0; n as usize]);
        }
        let a = ((blk as u64) << self.blkbits) + (pos & ((1u64 << chunkbits) - 1));
        self.src.read(a, n)
    }

    fn parse_dir_block(
        &self,
        blk: &[u8],
        nid: u64,
        out: &mut Vec<(Entry, Node)>,
    ) -> Result<(), FsError> {
        let bad = |m: &str| corrupt(format!("directory inode {nid}: {m}"));
        if blk.len() < 12 {
            return Err(bad("block shorter than one entry"));
        }
        let first = le16(blk, 8) as usize;
        if first < 12 || !first.is_multiple_of(12) || first > blk.len() {
            return Err(bad("first name offset is not a whole number of entries"));
        }
        let n = first / 12;
        for i in 0..n {
            let d = &blk[i * 12..i * 12 + 12];
            let off = le16(d, 8) as usize;
            let end = if i + 1 < n {
                le16(blk, (i + 1) * 12 + 8) as usize
            } else {
                blk.len()
            };
            if off < first || end > blk.len() || off >= end {
                return Err(bad("name offsets out of order"));
            }
            let mut name = &blk[off..end];
            if i + 1 == n {
                if let Some(z) = name.iter().position(|&c| c == 0) {
                    name = &name[..z];
                }
            }
            if name.is_empty() || name.len() > 255 {
                return Err(bad("empty or over-long name"));
            }
            let kind = match d[10] {
                1 => Kind::File,
                2 => Kind::Dir,
                7 => Kind::Symlink,
                3..=6 => Kind::Other,
                t => return Err(bad(&format!("entry type {t}"))),
            };
            if name == b"." || name == b".." {
                continue;
            }
            if out.len() >= limits::FS_DIRECTORY_ENTRIES {
                return Err(FsError::Limit {
                    what: format!("entries of directory inode {nid}"),
                    limit: limits::FS_DIRECTORY_ENTRIES as u64,
                });
            }
            out.push((
                Entry {
                    name: name.to_vec(),
                    kind,
                },
                Node {
                    nid: le64(d, 0),
                    kind,
                },
            ));
        }
        Ok(())
    }
}

impl Tree for Erofs<'_> {
    type Node = Node;

    fn src(&self) -> &Src<'_> {
        &self.src
    }

    fn root(&self) -> Result<Node, FsError> {
        let i = self.inode(self.root_nid)?;
        if i.kind != Kind::Dir {
            return Err(corrupt("the root inode is not a directory"));
        }
        Ok(Node {
            nid: self.root_nid,
            kind: Kind::Dir,
        })
    }

    fn kind(&self, n: &Node) -> Kind {
        n.kind
    }

    fn entries(&self, dir: &Node) -> Result<Vec<(Entry, Node)>, FsError> {
        let ino = self.inode(dir.nid)?;
        if ino.kind != Kind::Dir {
            return Err(corrupt(format!(
                "inode {} is listed as a directory but is not one",
                ino.nid
            )));
        }
        if ino.size > limits::FS_DIRECTORY {
            return Err(FsError::Limit {
                what: format!("size of directory inode {}", ino.nid),
                limit: limits::FS_DIRECTORY,
            });
        }
        let bs = self.blksz();
        let mut out = Vec::new();
        let mut pos = 0;
        while pos < ino.size {
            let n = (ino.size - pos).min(bs);
            let blk = self.data(&ino, pos, n)?;
            self.parse_dir_block(&blk, ino.nid, &mut out)?;
            pos += n;
        }
        Ok(out)
    }

    fn contents(&self, file: &Node, max: u64) -> Result<Vec<u8>, FsError> {
        let ino = self.inode(file.nid)?;
        if ino.kind != Kind::File {
            return Err(corrupt(format!(
                "inode {} is listed as a file but is not one",
                ino.nid
            )));
        }
        if ino.size > max {
            return Err(FsError::Limit {
                what: format!("size of file inode {} ({} bytes)", ino.nid, ino.size),
                limit: max,
            });
        }
        self.data(&ino, 0, ino.size)
    }
}
