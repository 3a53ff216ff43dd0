//! The authenticated tree: the upper levels of a hash tree (level 1 up to the top block), each read
//! once from the hash device, checked top-down against the root and kept in memory, so that every
//! digest a block is later compared with comes from bytes already authenticated in this run, never
//! from a second read of a device that may answer differently (FUSE, network storage, an attacker
//! swapping blocks between passes). Level 0 is read block by block as the data needs it and
//! checked against the in-memory level 1 before any of its digests is used, which is what the
//! kernel's dm-verity does on every read.
//!
//! [`AuthTree::reader`] turns that into a [`BlockSource`] that returns only data blocks that passed
//! their hash path, for parsers that read a few files out of an image without copying it.

use super::geometry::Geometry;
use super::hasher::BlockHasher;
use super::source::BlockSource;
use super::verify::{BadBlock, Defect, Location, VerifyError, VerifyReport};
use std::io;
use std::sync::Mutex;

/// The verified upper levels, as loaded for a whole-image check (which records every problem and
/// goes on) or for an [`AuthTree`] (which stops at the first).
pub(crate) struct Upper {
    /// `levels[l]` holds the blocks of level `l >= 1` back to back; `levels[0]` is empty.
    pub levels: Vec<Vec<u8>>,
    /// Blocks that cannot vouch for their children: they failed their digest, or a block above
    /// them did. Same indexing as `levels`.
    pub unusable: Vec<Vec<bool>>,
}

/// True when the bytes of a hash block that hold no digest are zero (and, for format 1, the tail
/// of every digest slot).
pub(crate) fn padding_is_zero(geom: &Geometry, blk: &[u8], used: usize, d: usize) -> bool {
    if blk[used..].iter().any(|&b| b != 0) {
        return false;
    }
    if geom.slot_size > d {
        let used_slots = used.div_ceil(geom.slot_size);
        for s in 0..used_slots {
            let a = s * geom.slot_size + d;
            let b = ((s + 1) * geom.slot_size).min(used);
            if a < b && blk[a..b].iter().any(|&x| x != 0) {
                return false;
            }
        }
    }
    true
}

/// Checks hash block `index` of `level` against the digest its parent holds: digest first, then
/// the padding.
pub(crate) fn check_hash_block(
    geom: &Geometry,
    hasher: &BlockHasher,
    level: usize,
    index: u64,
    blk: &[u8],
    expected: &[u8],
) -> Option<Defect> {
    let d = hasher.digest_size();
    let mut got = [0u8; 64];
    hasher.hash_into(blk, &mut got[..d]);
    if got[..d] != *expected {
        return Some(Defect::Mismatch);
    }
    let used = geom.used_bytes(geom.entries_in(level, index));
    if !padding_is_zero(geom, blk, used, d) {
        return Some(Defect::NonZeroPadding);
    }
    None
}

/// Byte offset of hash block `index` of `level` on the hash device.
pub(crate) fn hash_offset(geom: &Geometry, level: usize, index: u64) -> u64 {
    (geom.levels[level].start + index) * geom.params.hash_block_size as u64
}

/// The digest of block `index` of `level` (a hash level, or `None` for the data), taken from the
/// authenticated level above it in `upper`, or the root at the top.
pub(crate) fn digest_in<'a>(
    geom: &Geometry,
    upper: &'a [Vec<u8>],
    root: &'a [u8],
    level: usize,
    index: u64,
) -> &'a [u8] {
    let d = root.len();
    if level + 1 >= geom.levels.len() {
        return root;
    }
    let parent = level + 1;
    let (abs, off) = geom.locate(parent, index);
    let rel = (abs - geom.levels[parent].start) as usize * geom.params.hash_block_size as usize;
    &upper[parent][rel + off..rel + off + d]
}

/// Reads levels top..=1 once each, top-down, checking every block against the authenticated
/// level above (or the root). Bad blocks go into `report`; with `stop_at_first`, loading stops at
/// the first one (returns None). Checks sizes before allocating.
pub(crate) fn load_upper<H: BlockSource + ?Sized>(
    geom: &Geometry,
    hasher: &BlockHasher,
    hash: &H,
    root: &[u8],
    stop_at_first: bool,
    report: &mut VerifyReport,
) -> Result<Option<Upper>, VerifyError> {
    let hbs = geom.params.hash_block_size as u64;
    let n = geom.levels.len();
    let mut total: u64 = 0;
    for l in geom.levels.iter().skip(1) {
        total = l
            .blocks
            .checked_mul(hbs)
            .and_then(|b| total.checked_add(b))
            .ok_or(VerifyError::TreeTooLarge {
                bytes: u64::MAX,
                limit: crate::limits::TREE_UPPER_LEVELS,
            })?;
    }
    if total > crate::limits::TREE_UPPER_LEVELS {
        return Err(VerifyError::TreeTooLarge {
            bytes: total,
            limit: crate::limits::TREE_UPPER_LEVELS,
        });
    }
    let mut up = Upper {
        levels: vec![Vec::new(); n.max(1)],
        unusable: vec![Vec::new(); n.max(1)],
    };
    for level in (1..n).rev() {
        let blocks = geom.levels[level].blocks;
        let mut buf = vec![0u8; (blocks * hbs) as usize];
        let offset = hash_offset(geom, level, 0);
        hash.read_at(&mut buf, offset)
            .map_err(|source| VerifyError::Read {
                what: "hash device",
                offset,
                source,
            })?;
        let mut unusable = vec![false; blocks as usize];
        let mut padding = Vec::new();
        for k in 0..blocks {
            let parent_bad = level + 1 < n && up.unusable[level + 1][(k >> geom.hpb_bits) as usize];
            if parent_bad {
                report.unverifiable += 1;
                unusable[k as usize] = true;
                continue;
            }
            let blk = &buf[(k * hbs) as usize..((k + 1) * hbs) as usize];
            let expected = digest_in(geom, &up.levels, root, level, k);
            let bad = |defect| BadBlock {
                location: Location::Hash { level, index: k },
                offset: hash_offset(geom, level, k),
                defect,
            };
            match check_hash_block(geom, hasher, level, k, blk, expected) {
                None => {}
                Some(Defect::Mismatch) => {
                    report.bad.push(bad(Defect::Mismatch));
                    unusable[k as usize] = true;
                    if stop_at_first {
                        return Ok(None);
                    }
                }
                // Reported after the level's mismatches, as veritysetup orders them; the block
                // still vouches for its children, so they are checked and blamed precisely.
                Some(Defect::NonZeroPadding) => padding.push(bad(Defect::NonZeroPadding)),
            }
        }
        if let Some(first) = padding.first() {
            if stop_at_first {
                report.bad.push(*first);
                return Ok(None);
            }
            report.bad.extend(padding);
        }
        up.levels[level] = buf;
        up.unusable[level] = unusable;
    }
    Ok(Some(up))
}

/// A tree whose upper levels were read once and authenticated against the root.
pub struct AuthTree {
    geom: Geometry,
    hasher: BlockHasher,
    root: Vec<u8>,
    upper: Upper,
}

impl AuthTree {
    /// Reads and authenticates the upper levels of the tree on `hash`. The outer error is a failed
    /// read or an unusable geometry, the inner one the first block that does not match.
    pub fn load<H: BlockSource + ?Sized>(
        geom: &Geometry,
        hash: &H,
        root: &[u8],
    ) -> Result<Result<Self, BadBlock>, VerifyError> {
        let hasher = super::verify::check_inputs(geom, hash, root)?;
        let mut report = VerifyReport::default();
        let Some(up) = load_upper(geom, &hasher, hash, root, true, &mut report)? else {
            return Ok(Err(report.bad[0]));
        };
        Ok(Ok(Self {
            geom: geom.clone(),
            hasher,
            root: root.to_vec(),
            upper: up,
        }))
    }

    /// The tree's layout.
    pub fn geometry(&self) -> &Geometry {
        &self.geom
    }

    /// The root hash it was authenticated against.
    pub fn root(&self) -> &[u8] {
        &self.root
    }

    /// Reads level-0 block `k` into `buf` and authenticates it against the in-memory level above.
    fn level0<H: BlockSource + ?Sized>(
        &self,
        hash: &H,
        k: u64,
        buf: &mut [u8],
    ) -> Result<Result<(), BadBlock>, VerifyError> {
        let offset = hash_offset(&self.geom, 0, k);
        hash.read_at(buf, offset)
            .map_err(|source| VerifyError::Read {
                what: "hash device",
                offset,
                source,
            })?;
        let expected = digest_in(&self.geom, &self.upper.levels, &self.root, 0, k);
        Ok(
            match check_hash_block(&self.geom, &self.hasher, 0, k, buf, expected) {
                None => Ok(()),
                Some(defect) => Err(BadBlock {
                    location: Location::Hash { level: 0, index: k },
                    offset,
                    defect,
                }),
            },
        )
    }

    /// Checks data block `index` against its digest in an authenticated level-0 block (read from
    /// `hash` now, or given in `l0`).
    fn check_with<H: BlockSource + ?Sized>(
        &self,
        hash: &H,
        index: u64,
        block: &[u8],
        l0: &mut Option<(u64, Vec<u8>)>,
    ) -> Result<Result<(), BadBlock>, VerifyError> {
        let p = &self.geom.params;
        let bad_data = BadBlock {
            location: Location::Data { block: index },
            offset: index * p.data_block_size as u64,
            defect: Defect::Mismatch,
        };
        if index >= p.data_blocks || block.len() != p.data_block_size as usize {
            return Ok(Err(bad_data));
        }
        let got = self.hasher.hash(block);
        if self.geom.levels.is_empty() {
            return Ok(if got == self.root {
                Ok(())
            } else {
                Err(bad_data)
            });
        }
        let k = index >> self.geom.hpb_bits;
        if l0.as_ref().is_none_or(|(i, _)| *i != k) {
            *l0 = None;
            let mut buf = vec![0u8; p.hash_block_size as usize];
            if let Err(b) = self.level0(hash, k, &mut buf)? {
                return Ok(Err(b));
            }
            *l0 = Some((k, buf));
        }
        let (_, buf) = l0.as_ref().expect("set above");
        let (_, off) = self.geom.locate(0, index);
        Ok(if got[..] == buf[off..off + got.len()] {
            Ok(())
        } else {
            Err(bad_data)
        })
    }

    /// Checks every data block against this tree, reading the data and level 0 once each (the
    /// upper levels are not read again): what [`super::verify::verify_image`] does after loading
    /// them.
    pub fn verify_data<D, H>(
        &self,
        data: &D,
        hash: &H,
        opts: super::verify::VerifyOptions,
        progress: &dyn Fn(u64),
    ) -> Result<VerifyReport, VerifyError>
    where
        D: BlockSource + ?Sized,
        H: BlockSource + ?Sized,
    {
        let mut report = VerifyReport::default();
        super::verify::stream_data(
            &self.geom,
            &self.hasher,
            &self.upper,
            &self.root,
            data,
            hash,
            opts,
            progress,
            &mut report,
        )?;
        Ok(report)
    }

    /// Checks one data block through its hash path: level 0 is read from `hash` and authenticated
    /// against the in-memory level above it, then the block against that level-0 block.
    pub fn check_block<H: BlockSource + ?Sized>(
        &self,
        hash: &H,
        index: u64,
        block: &[u8],
    ) -> Result<Result<(), BadBlock>, VerifyError> {
        self.check_with(hash, index, block, &mut None)
    }

    /// A source of the data that returns only authenticated bytes: every data block it reads is
    /// checked through its hash path first, and a block that fails is an `InvalidData` error
    /// naming it. Reads past the protected data fail.
    pub fn reader<'a, D, H>(&'a self, data: &'a D, hash: &'a H) -> VerifiedReader<'a, D, H>
    where
        D: BlockSource + ?Sized,
        H: BlockSource + ?Sized,
    {
        VerifiedReader {
            tree: self,
            data,
            hash,
            cache: Mutex::new(Cache::default()),
        }
    }
}

#[derive(Default)]
struct Cache {
    /// The last authenticated level-0 block.
    l0: Option<(u64, Vec<u8>)>,
    /// The last authenticated data block.
    data: Option<(u64, Vec<u8>)>,
}

/// See [`AuthTree::reader`].
pub struct VerifiedReader<'a, D: ?Sized, H: ?Sized> {
    tree: &'a AuthTree,
    data: &'a D,
    hash: &'a H,
    cache: Mutex<Cache>,
}

impl<D: BlockSource + ?Sized, H: BlockSource + ?Sized> VerifiedReader<'_, D, H> {
    fn block_into(&self, cache: &mut Cache, index: u64) -> io::Result<()> {
        if cache.data.as_ref().is_some_and(|(i, _)| *i == index) {
            return Ok(());
        }
        cache.data = None;
        let bs = self.tree.geom.params.data_block_size as usize;
        let mut blk = vec![0u8; bs];
        self.data.read_at(&mut blk, index * bs as u64)?;
        match self
            .tree
            .check_with(self.hash, index, &blk, &mut cache.l0)
            .map_err(|e| io::Error::other(e.to_string()))?
        {
            Ok(()) => {
                cache.data = Some((index, blk));
                Ok(())
            }
            Err(b) => Err(io::Error::new(io::ErrorKind::InvalidData, b.to_string())),
        }
    }
}

impl<D: BlockSource + ?Sized, H: BlockSource + ?Sized> BlockSource for VerifiedReader<'_, D, H> {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let size = self.size();
        let end = offset
            .checked_add(buf.len() as u64)
            .filter(|&e| e <= size)
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "read of {} bytes at byte {offset} is past the {size} protected bytes",
                        buf.len()
                    ),
                )
            })?;
        let bs = self.tree.geom.params.data_block_size as u64;
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        let mut pos = offset;
        while pos < end {
            let index = pos / bs;
            self.block_into(&mut cache, index)?;
            let (_, blk) = cache.data.as_ref().expect("set by block_into");
            let a = (pos - index * bs) as usize;
            let n = ((end - pos) as usize).min(bs as usize - a);
            let o = (pos - offset) as usize;
            buf[o..o + n].copy_from_slice(&blk[a..a + n]);
            pos += n as u64;
        }
        Ok(())
    }

    fn size(&self) -> u64 {
        self.tree.geom.data_size()
    }
}
