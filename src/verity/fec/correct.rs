//! Correcting bad blocks from the parity. A round (the k covered blocks that share codewords,
//! see [`super::round`]) is decoded first without erasure information, then, where that fails,
//! with the round's blocks that failed their hash check as erasures (as the kernel does).
//! Whole-image correction repeats check -> decode until the tree verifies up to the root or
//! nothing more can be done; corrections live in an overlay and are only handed back once
//! re-verified, so callers never write a block the tree has not confirmed.

use super::encode::read_covered;
use super::layout::{FecLayout, Origin};
use super::round::{decode_block, decode_round};
use super::FecIoError;
use crate::verity::geometry::Geometry;
use crate::verity::verify::{
    verify_block, verify_image, BadBlock, Location, VerifyOptions, VerifyReport,
};
use crate::verity::BlockSource;
use std::collections::BTreeMap;
use std::io;

/// One block corrected and confirmed by the tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Correction {
    /// Which block.
    pub location: Location,
    /// Byte offset on its device (data device for data blocks, hash device for hash blocks).
    pub offset: u64,
    /// Bytes that differ from what is on the device.
    pub bytes: usize,
    /// The corrected contents.
    pub block: Vec<u8>,
}

/// What whole-image correction found and did.
#[derive(Debug, Clone)]
pub struct FecOutcome {
    /// The check before any correction.
    pub initial: VerifyReport,
    /// The check of the corrected image (data and tree with every correction applied).
    pub last: VerifyReport,
    /// The corrections, valid only when `last.is_ok()`.
    pub corrections: Vec<Correction>,
}

impl FecOutcome {
    /// True when the corrected image verifies up to the root.
    pub fn is_ok(&self) -> bool {
        self.last.is_ok()
    }

    /// Total bytes corrected.
    pub fn bytes(&self) -> usize {
        self.corrections.iter().map(|c| c.bytes).sum()
    }
}

/// A source with some blocks replaced by corrected copies.
struct Patched<'a, S: ?Sized> {
    inner: &'a S,
    block_size: u64,
    patches: &'a BTreeMap<u64, Vec<u8>>,
}

impl<S: BlockSource + ?Sized> BlockSource for Patched<'_, S> {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.inner.read_at(buf, offset)?;
        let end = offset + buf.len() as u64;
        let from = offset.saturating_sub(self.block_size - 1);
        for (&o, blk) in self.patches.range(from..end) {
            let a = o.max(offset);
            let b = (o + blk.len() as u64).min(end);
            if a < b {
                buf[(a - offset) as usize..(b - offset) as usize]
                    .copy_from_slice(&blk[(a - o) as usize..(b - o) as usize]);
            }
        }
        Ok(())
    }

    fn size(&self) -> u64 {
        self.inner.size()
    }

    fn data_ranges(&self, start: u64, end: u64) -> io::Result<Vec<(u64, u64)>> {
        // A corrected block may sit in a hole; then the whole range must really be read.
        if self
            .patches
            .range(start.saturating_sub(self.block_size)..end)
            .next()
            .is_some()
        {
            Ok(vec![(start, end)])
        } else {
            self.inner.data_ranges(start, end)
        }
    }
}

/// The corrections found so far: overlays over the data and hash devices (by byte offset), the
/// same blocks as [`Correction`]s (by covered index), and decoding attempts per covered block
/// (1 = plain, 2 = with erasures, the last).
#[derive(Default)]
struct Overlay {
    data: BTreeMap<u64, Vec<u8>>,
    hash: BTreeMap<u64, Vec<u8>>,
    fixes: BTreeMap<u64, Correction>,
    tries: BTreeMap<u64, u8>,
}

impl Overlay {
    fn sources<'a, D, H>(
        &'a self,
        bs: u64,
        data: &'a D,
        hash: &'a H,
    ) -> (Patched<'a, D>, Patched<'a, H>)
    where
        D: BlockSource + ?Sized,
        H: BlockSource + ?Sized,
    {
        let d = Patched {
            inner: data,
            block_size: bs,
            patches: &self.data,
        };
        let h = Patched {
            inner: hash,
            block_size: bs,
            patches: &self.hash,
        };
        (d, h)
    }
}

/// Verifies the image against `root` and corrects every bad block it can from the parity,
/// re-checking after each pass (a corrected hash block can reveal bad blocks below it). Nothing
/// is written: the returned corrections are for the caller to apply, and only when
/// [`FecOutcome::is_ok`].
pub fn correct_image<D, H, F>(
    geom: &Geometry,
    layout: &FecLayout,
    data: &D,
    hash: &H,
    fec: &F,
    root: &[u8],
    progress: &dyn Fn(u64),
) -> Result<FecOutcome, FecIoError>
where
    D: BlockSource + ?Sized,
    H: BlockSource + ?Sized,
    F: BlockSource + ?Sized,
{
    let mut ov = Overlay::default();
    let opts = VerifyOptions {
        stop_at_first: false,
    };
    let initial = verify_image(geom, data, hash, root, opts, progress)?;
    let mut report = initial.clone();
    // Each pass either corrects a new block or stops; the tree depth bounds how many passes can
    // uncover new bad blocks, the extra ones are slack.
    let max_passes = 2 * geom.levels.len() + 6;
    for _ in 0..max_passes {
        if report.is_ok() || !correct_pass(layout, data, hash, fec, &report, &mut ov)? {
            break;
        }
        report = recheck(geom, data, hash, root, &report, &ov, progress)?;
    }
    Ok(FecOutcome {
        initial,
        last: report,
        corrections: ov.fixes.into_values().collect(),
    })
}

/// The check of the image with the overlay applied, given `prev`, the check before the last
/// pass. When `prev` found only bad data blocks, every hash block was authenticated by it and the
/// pass changed only data blocks, so the blocks `prev` found bad are the only ones whose verdict
/// can have changed: each corrected one is checked through its hash path from the root (what a
/// full check would conclude, without reading the whole image again), the others are still bad.
/// Otherwise, or if a hash block on a path no longer authenticates, the whole image is checked.
fn recheck<D, H>(
    geom: &Geometry,
    data: &D,
    hash: &H,
    root: &[u8],
    prev: &VerifyReport,
    ov: &Overlay,
    progress: &dyn Fn(u64),
) -> Result<VerifyReport, FecIoError>
where
    D: BlockSource + ?Sized,
    H: BlockSource + ?Sized,
{
    let data_only = ov.hash.is_empty()
        && prev.unverifiable == 0
        && prev
            .bad
            .iter()
            .all(|b| matches!(b.location, Location::Data { .. }));
    if data_only {
        if let Some(next) = recheck_data(geom, hash, root, prev, ov)? {
            return Ok(next);
        }
    }
    let (pd, ph) = ov.sources(geom.params.data_block_size as u64, data, hash);
    let opts = VerifyOptions {
        stop_at_first: false,
    };
    Ok(verify_image(geom, &pd, &ph, root, opts, progress)?)
}

/// [`recheck`]'s fast path: `None` when a hash block on some path fails (then only a full check
/// can say what is bad).
fn recheck_data<H: BlockSource + ?Sized>(
    geom: &Geometry,
    hash: &H,
    root: &[u8],
    prev: &VerifyReport,
    ov: &Overlay,
) -> Result<Option<VerifyReport>, FecIoError> {
    let mut next = VerifyReport::default();
    for b in &prev.bad {
        let Location::Data { block } = b.location else {
            return Ok(None);
        };
        let Some(fixed) = ov.data.get(&b.offset) else {
            next.bad.push(*b);
            continue;
        };
        match verify_block(geom, hash, root, block, fixed)? {
            Ok(()) => {}
            Err(e) if e.location == b.location => next.bad.push(*b),
            Err(_) => return Ok(None),
        }
    }
    Ok(Some(next))
}

/// One correction pass over the bad blocks of `report` (as the kernel: plain decoding first;
/// once a block has been through that and still fails its hash, its round is decoded with the
/// round's bad blocks as erasures). Adds what it decodes to the overlay; false when nothing new
/// can be tried.
fn correct_pass<D, H, F>(
    layout: &FecLayout,
    data: &D,
    hash: &H,
    fec: &F,
    report: &VerifyReport,
    ov: &mut Overlay,
) -> Result<bool, FecIoError>
where
    D: BlockSource + ?Sized,
    H: BlockSource + ?Sized,
    F: BlockSource + ?Sized,
{
    let bs = layout.block_size as u64;
    let bad: Vec<(u64, BadBlock)> = report
        .bad
        .iter()
        .filter_map(|b| covered_index(layout, b).map(|x| (x, *b)))
        .collect();
    let mut by_round: BTreeMap<u64, Vec<(usize, BadBlock)>> = BTreeMap::new();
    for &(x, b) in &bad {
        if ov.tries.get(&x).copied().unwrap_or(0) >= 2 {
            continue;
        }
        let (n, j) = layout.position_of(x);
        by_round.entry(n).or_default().push((j, b));
    }
    let mut pending = Vec::new();
    let mut retry_due = false;
    for (round, targets) in by_round {
        let use_erasures = targets
            .iter()
            .any(|&(j, _)| ov.tries.contains_key(&layout.block_at(round, j as u64)));
        let mut eras: Vec<usize> = Vec::new();
        if use_erasures {
            eras.extend(targets.iter().map(|&(j, _)| j));
            eras.extend(
                bad.iter()
                    .map(|&(x, _)| layout.position_of(x))
                    .filter(|&(n, _)| n == round)
                    .map(|(_, j)| j),
            );
        }
        let (pd, ph) = ov.sources(bs, data, hash);
        let dec = decode_round(layout, &pd, &ph, fec, round, &eras)?;
        for (j, b) in targets {
            let x = layout.block_at(round, j as u64);
            let t = ov.tries.entry(x).or_insert(0);
            *t = if use_erasures { 2 } else { *t + 1 };
            if !dec.failed.is_empty() || dec.changed[j] == 0 {
                // Nothing to try; counts as progress only if an erasure pass is still due.
                if *t < 2 {
                    retry_due = true;
                }
                continue;
            }
            let blk = dec.blocks[j * bs as usize..(j + 1) * bs as usize].to_vec();
            let mut orig = vec![0u8; bs as usize];
            let (is_data, read) = match layout.origin(x) {
                Origin::Data(o) => (true, data.read_at(&mut orig, o)),
                Origin::Hash(o) => (false, hash.read_at(&mut orig, o)),
                Origin::Zero => continue,
            };
            read.map_err(|source| FecIoError::Read {
                what: if is_data {
                    "data device"
                } else {
                    "hash device"
                },
                offset: b.offset,
                source,
            })?;
            let bytes = orig.iter().zip(&blk).filter(|(a, c)| a != c).count();
            pending.push((is_data, x, b, bytes, blk));
        }
    }
    let progressed = !pending.is_empty() || retry_due;
    for (is_data, x, b, bytes, blk) in pending {
        let patches = if is_data { &mut ov.data } else { &mut ov.hash };
        patches.insert(b.offset, blk.clone());
        ov.fixes.insert(
            x,
            Correction {
                location: b.location,
                offset: b.offset,
                bytes,
                block: blk,
            },
        );
    }
    Ok(progressed)
}

/// The covered index of a reported bad block, if FEC covers it.
fn covered_index(layout: &FecLayout, b: &BadBlock) -> Option<u64> {
    let bs = layout.block_size as u64;
    match b.location {
        Location::Data { block } => (block < layout.data_blocks).then_some(block),
        Location::Hash { .. } => layout.covered_hash_block(b.offset / bs),
    }
}

/// Reads data block `index` for a userspace-verified read, correcting it from the parity when it
/// fails its hash, as the kernel does: the block is checked through its hash path; a bad block
/// is decoded without erasures, and if the result still fails, again with the data blocks of its
/// round that fail their own hash check as erasures. Returns the verified block and the bytes
/// corrected, or the block on the path that could not be verified or corrected.
pub fn read_verified_block<D, H, F>(
    geom: &Geometry,
    layout: &FecLayout,
    data: &D,
    hash: &H,
    fec: &F,
    root: &[u8],
    index: u64,
) -> Result<Result<(Vec<u8>, usize), BadBlock>, FecIoError>
where
    D: BlockSource + ?Sized,
    H: BlockSource + ?Sized,
    F: BlockSource + ?Sized,
{
    let bs = layout.block_size as usize;
    let mut block = vec![0u8; bs];
    read_covered(layout, data, hash, index, 1, &mut block)?;
    let bad = match verify_block(geom, hash, root, index, &block)? {
        Ok(()) => return Ok(Ok((block, 0))),
        Err(b) if matches!(b.location, Location::Data { .. }) => b,
        Err(b) => return Ok(Err(b)),
    };
    if let Some((fixed, n)) = decode_block(layout, data, hash, fec, index, &[])? {
        if verify_block(geom, hash, root, index, &fixed)?.is_ok() {
            return Ok(Ok((fixed, n)));
        }
    }
    let (round, _) = layout.position_of(index);
    let mut others = Vec::new();
    let mut buf = vec![0u8; bs];
    for j in 0..layout.k() {
        let x = layout.block_at(round, j);
        if x == index || x >= layout.data_blocks {
            continue;
        }
        read_covered(layout, data, hash, x, 1, &mut buf)?;
        if verify_block(geom, hash, root, x, &buf)?.is_err() {
            others.push(x);
        }
    }
    others.push(index);
    if let Some((fixed, n)) = decode_block(layout, data, hash, fec, index, &others)? {
        if verify_block(geom, hash, root, index, &fixed)?.is_ok() {
            return Ok(Ok((fixed, n)));
        }
    }
    Ok(Err(bad))
}
