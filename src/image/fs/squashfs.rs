//! The squashfs 4.0 structures needed to walk a path and read a small file: the 96-byte superblock,
//! metadata blocks (8 KiB, each compressed or stored), basic and extended directory and file
//! inodes, directory listings, data blocks and tail-end fragments. Metadata and data are
//! decompressed with gzip (the mksquashfs default), xz, lzma, lz4 or zstd through
//! [`super::decompress`]; lzo is refused by name. Layout as in the kernel's
//! `fs/squashfs/squashfs_fs.h`. Pure core.

use super::decompress::{decompress, Codec};
use super::{le16, le32, le64, Entry, FsError, Kind, Src, Tree};
use crate::limits;
use crate::verity::BlockSource;

const MAGIC: u32 = 0x7371_7368;
const META_SIZE: usize = 8192;
const NO_FRAGMENT: u32 = 0xffff_ffff;

fn corrupt(msg: impl Into<String>) -> FsError {
    FsError::Corrupt {
        fs: "squashfs",
        msg: msg.into(),
    }
}

/// A squashfs file system.
pub struct Squashfs<'a> {
    src: Src<'a>,
    codec: Codec,
    block_size: u64,
    root: u64,
    inode_table: u64,
    dir_table: u64,
    frag_table: u64,
    frag_count: u32,
}

/// A node: its inode reference and the kind its directory entry gave.
#[derive(Debug, Clone, Copy)]
pub struct Node {
    iref: u64,
    kind: Kind,
}

/// The parts of an inode this reader uses.
enum Inode {
    Dir {
        start: u64,
        offset: u64,
        size: u64,
    },
    File {
        blocks_start: u64,
        size: u64,
        frag: u32,
        frag_offset: u64,
        /// Where the block size list starts in the inode table: (block, offset).
        list: (u64, u64),
    },
    Other,
}

impl<'a> Squashfs<'a> {
    /// Reads and checks the superblock.
    pub fn open(src: &'a dyn BlockSource) -> Result<Self, FsError> {
        let src = Src::new(src);
        let sb = src.read(0, 96)?;
        if le32(&sb, 0) != MAGIC {
            return Err(corrupt("no squashfs magic at byte 0"));
        }
        let (major, minor) = (le16(&sb, 28), le16(&sb, 30));
        if (major, minor) != (4, 0) {
            return Err(FsError::Unsupported {
                fs: "squashfs",
                feature: format!("version {major}.{minor}"),
            });
        }
        let codec = match le16(&sb, 20) {
            1 => Codec::Gzip,
            2 => Codec::Lzma,
            4 => Codec::Xz,
            5 => Codec::Lz4,
            6 => Codec::Zstd,
            3 => {
                return Err(FsError::Unsupported {
                    fs: "squashfs",
                    feature: "lzo compression".into(),
                })
            }
            c => return Err(corrupt(format!("compression id {c}"))),
        };
        let block_size = le32(&sb, 12) as u64;
        let block_log = le16(&sb, 22) as u32;
        if !(12..=20).contains(&block_log) || block_size != 1 << block_log {
            return Err(corrupt(format!(
                "block size {block_size} does not match block_log {block_log}"
            )));
        }
        Ok(Self {
            codec,
            block_size,
            root: le64(&sb, 32),
            inode_table: le64(&sb, 64),
            dir_table: le64(&sb, 72),
            frag_table: le64(&sb, 80),
            frag_count: le32(&sb, 16),
            src,
        })
    }

    /// Reads one metadata block at `pos`; returns its bytes and where the next one starts.
    fn meta_block(&self, pos: u64) -> Result<(Vec<u8>, u64), FsError> {
        let h = self.src.read(pos, 2)?;
        let h = le16(&h, 0);
        let len = (h & 0x7fff) as u64;
        if len == 0 || len as usize > META_SIZE {
            return Err(corrupt(format!(
                "metadata block at byte {pos} has length {len}"
            )));
        }
        let raw = self.src.read(pos + 2, len)?;
        let out = if h & 0x8000 != 0 {
            raw
        } else {
            decompress(self.codec, &raw, META_SIZE)
                .map_err(|e| corrupt(format!("metadata block at byte {pos}: {e}")))?
        };
        self.src.charge_meta(out.len() as u64)?;
        Ok((out, pos + 2 + len))
    }

    /// Reads `len` bytes of a metadata table starting `offset` bytes into the block at `table +
    /// block`, following on into the next blocks.
    fn meta(&self, table: u64, block: u64, offset: u64, len: u64) -> Result<Vec<u8>, FsError> {
        if len > limits::FS_METADATA {
            return Err(FsError::Limit {
                what: format!("metadata read of {len} bytes"),
                limit: limits::FS_METADATA,
            });
        }
        let mut pos = table
            .checked_add(block)
            .ok_or_else(|| corrupt("metadata position overflows"))?;
        let mut skip = offset as usize;
        let mut out = Vec::with_capacity(len as usize);
        while (out.len() as u64) < len {
            let (b, next) = self.meta_block(pos)?;
            if skip >= b.len() {
                // The offset reaches into a following block (an inode's block list does).
                skip -= b.len();
                pos = next;
                continue;
            }
            let want = (len as usize - out.len()).min(b.len() - skip);
            out.extend_from_slice(&b[skip..skip + want]);
            skip = 0;
            pos = next;
        }
        Ok(out)
    }

    fn inode(&self, iref: u64) -> Result<Inode, FsError> {
        let (blk, off) = (iref >> 16, iref & 0xffff);
        let at = |n: u64| self.meta(self.inode_table, blk, off, n);
        let h = at(16)?;
        Ok(match le16(&h, 0) {
            1 => {
                let b = at(32)?;
                Inode::Dir {
                    start: le32(&b, 16) as u64,
                    size: le16(&b, 24) as u64,
                    offset: le16(&b, 26) as u64,
                }
            }
            8 => {
                let b = at(40)?;
                Inode::Dir {
                    size: le32(&b, 20) as u64,
                    start: le32(&b, 24) as u64,
                    offset: le16(&b, 34) as u64,
                }
            }
            2 => {
                let b = at(32)?;
                Inode::File {
                    blocks_start: le32(&b, 16) as u64,
                    frag: le32(&b, 20),
                    frag_offset: le32(&b, 24) as u64,
                    size: le32(&b, 28) as u64,
                    list: (blk, off + 32),
                }
            }
            9 => {
                let b = at(56)?;
                Inode::File {
                    blocks_start: le64(&b, 16),
                    size: le64(&b, 24),
                    frag: le32(&b, 44),
                    frag_offset: le32(&b, 48) as u64,
                    list: (blk, off + 56),
                }
            }
            3..=7 | 10..=14 => Inode::Other,
            t => return Err(corrupt(format!("inode type {t} at reference {iref:#x}"))),
        })
    }

    fn block(&self, pos: u64, entry: u32, what: &str) -> Result<Vec<u8>, FsError> {
        let len = (entry & 0x00ff_ffff) as u64;
        if len > self.block_size {
            return Err(corrupt(format!("{what} at byte {pos} has length {len}")));
        }
        let raw = self.src.read(pos, len)?;
        if entry & 0x0100_0000 != 0 {
            Ok(raw)
        } else {
            decompress(self.codec, &raw, self.block_size as usize)
                .map_err(|e| corrupt(format!("{what} at byte {pos}: {e}")))
        }
    }

    /// The fragment block holding a file's tail: (start, size entry).
    fn fragment(&self, index: u32) -> Result<(u64, u32), FsError> {
        if index >= self.frag_count {
            return Err(corrupt(format!("fragment {index} of {}", self.frag_count)));
        }
        let (i, per) = (index as u64, (META_SIZE / 16) as u64);
        let loc = self.src.read(
            self.frag_table
                .checked_add(8 * (i / per))
                .ok_or_else(|| corrupt("fragment table position overflows"))?,
            8,
        )?;
        let e = self.meta(le64(&loc, 0), 0, (i % per) * 16, 16)?;
        Ok((le64(&e, 0), le32(&e, 8)))
    }
}

fn kind_of_type(t: u16) -> Result<Kind, FsError> {
    Ok(match t {
        1 | 8 => Kind::Dir,
        2 | 9 => Kind::File,
        3 | 10 => Kind::Symlink,
        4..=7 | 11..=14 => Kind::Other,
        t => return Err(corrupt(format!("directory entry type {t}"))),
    })
}

impl Tree for Squashfs<'_> {
    type Node = Node;

    fn src(&self) -> &Src<'_> {
        &self.src
    }

    fn root(&self) -> Result<Node, FsError> {
        match self.inode(self.root)? {
            Inode::Dir { .. } => Ok(Node {
                iref: self.root,
                kind: Kind::Dir,
            }),
            _ => Err(corrupt("the root inode is not a directory")),
        }
    }

    fn kind(&self, n: &Node) -> Kind {
        n.kind
    }

    fn entries(&self, dir: &Node) -> Result<Vec<(Entry, Node)>, FsError> {
        let Inode::Dir {
            start,
            offset,
            size,
        } = self.inode(dir.iref)?
        else {
            return Err(corrupt(format!(
                "inode {:#x} is listed as a directory but is not one",
                dir.iref
            )));
        };
        // The stored size counts 3 bytes for the implicit "." and "..".
        let len = size.saturating_sub(3);
        if len > limits::FS_DIRECTORY {
            return Err(FsError::Limit {
                what: format!("directory listing of {len} bytes"),
                limit: limits::FS_DIRECTORY,
            });
        }
        let b = self.meta(self.dir_table, start, offset, len)?;
        let mut out = Vec::new();
        let mut p = 0usize;
        let short = || {
            corrupt(format!(
                "directory listing of inode {:#x} is truncated",
                dir.iref
            ))
        };
        while p < b.len() {
            let h = b.get(p..p + 12).ok_or_else(short)?;
            let (count, istart) = (le32(h, 0) as usize + 1, le32(h, 4) as u64);
            if count > 256 {
                return Err(corrupt(format!("directory header with {count} entries")));
            }
            p += 12;
            for _ in 0..count {
                let e = b.get(p..p + 8).ok_or_else(short)?;
                let (off, kind) = (le16(e, 0) as u64, kind_of_type(le16(e, 4))?);
                let nlen = le16(e, 6) as usize + 1;
                let name = b.get(p + 8..p + 8 + nlen).ok_or_else(short)?.to_vec();
                p += 8 + nlen;
                if out.len() >= limits::FS_DIRECTORY_ENTRIES {
                    return Err(FsError::Limit {
                        what: "entries of one directory".into(),
                        limit: limits::FS_DIRECTORY_ENTRIES as u64,
                    });
                }
                let node = Node {
                    iref: (istart << 16) | off,
                    kind,
                };
                out.push((Entry { name, kind }, node));
            }
        }
        Ok(out)
    }

    fn contents(&self, file: &Node, max: u64) -> Result<Vec<u8>, FsError> {
        let Inode::File {
            blocks_start,
            size,
            frag,
            frag_offset,
            list,
        } = self.inode(file.iref)?
        else {
            return Err(corrupt(format!(
                "inode {:#x} is listed as a file but is not one",
                file.iref
            )));
        };
        if size > max {
            return Err(FsError::Limit {
                what: format!("file of {size} bytes"),
                limit: max,
            });
        }
        let bs = self.block_size;
        let nblocks = if frag == NO_FRAGMENT {
            size.div_ceil(bs)
        } else {
            size / bs
        };
        let sizes = self.meta(self.inode_table, list.0, list.1, nblocks * 4)?;
        let mut out = Vec::with_capacity(size as usize);
        let mut pos = blocks_start;
        for i in 0..nblocks as usize {
            let e = le32(&sizes, i * 4);
            let want = (size - out.len() as u64).min(bs) as usize;
            if e & 0x00ff_ffff == 0 {
                // A sparse block.
                out.resize(out.len() + want, 0);
                continue;
            }
            let blk = self.block(pos, e, "data block")?;
            if blk.len() < want {
                return Err(corrupt(format!("data block at byte {pos} is short")));
            }
            out.extend_from_slice(&blk[..want]);
            pos += (e & 0x00ff_ffff) as u64;
        }
        if frag != NO_FRAGMENT {
            let tail = (size - out.len() as u64) as usize;
            let (start, e) = self.fragment(frag)?;
            let blk = self.block(start, e, "fragment block")?;
            let from = frag_offset as usize;
            let part = blk
                .get(from..from + tail)
                .ok_or_else(|| corrupt(format!("fragment {frag} is shorter than the file tail")))?;
            out.extend_from_slice(part);
        }
        if out.len() as u64 != size {
            return Err(corrupt(format!("file inode {:#x} is short", file.iref)));
        }
        Ok(out)
    }
}
