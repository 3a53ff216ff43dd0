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
use crate::verity::verify::{verify_image, BadBlock, Location, VerifyOptions, VerifyReport};
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

/// Verifies the image against `root` and corrects every bad block it can from the parity,
/// re-verifying after each pass (a corrected hash block can reveal bad blocks below it). Nothing
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
    let bs = layout.block_size as u64;
    let mut data_patches: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
    let mut hash_patches: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
    let mut fixes: BTreeMap<u64, Correction> = BTreeMap::new();
    // Decoding attempts per covered block: 1 = plain, 2 = with erasures (the last).
    let mut tries: BTreeMap<u64, u8> = BTreeMap::new();
    let opts = VerifyOptions {
        stop_at_first: false,
    };
    let mut initial = None;
    // Each pass either corrects a new block or stops; the tree depth bounds how many passes can
    // uncover new bad blocks, the extra ones are slack.
    let max_passes = 2 * geom.levels.len() + 6;
    for _ in 0..max_passes {
        let pd = Patched {
            inner: data,
            block_size: bs,
            patches: &data_patches,
        };
        let ph = Patched {
            inner: hash,
            block_size: bs,
            patches: &hash_patches,
        };
        let report = verify_image(geom, &pd, &ph, root, opts, progress)?;
        if initial.is_none() {
            initial = Some(report.clone());
        }
        if report.is_ok() {
            return Ok(FecOutcome {
                initial: initial.expect("set above"),
                last: report,
                corrections: fixes.into_values().collect(),
            });
        }
        let bad: Vec<(u64, BadBlock)> = report
            .bad
            .iter()
            .filter_map(|b| covered_index(layout, b).map(|x| (x, *b)))
            .collect();
        let bad_x: Vec<u64> = bad.iter().map(|&(x, _)| x).collect();
        let mut by_round: BTreeMap<u64, Vec<(usize, BadBlock)>> = BTreeMap::new();
        for &(x, b) in &bad {
            if tries.get(&x).copied().unwrap_or(0) >= 2 {
                continue;
            }
            let (n, j) = layout.position_of(x);
            by_round.entry(n).or_default().push((j, b));
        }
        let mut pending = Vec::new();
        let mut retry_due = false;
        for (round, targets) in by_round {
            // As the kernel: plain decoding first; once a block of the round has been through
            // that and still fails its hash, decode the round with its bad blocks as erasures.
            let use_erasures = targets
                .iter()
                .any(|&(j, _)| tries.contains_key(&layout.block_at(round, j as u64)));
            let mut eras: Vec<usize> = Vec::new();
            if use_erasures {
                eras.extend(targets.iter().map(|&(j, _)| j));
                for &x in &bad_x {
                    let (n, j) = layout.position_of(x);
                    if n == round {
                        eras.push(j);
                    }
                }
            }
            let dec = decode_round(layout, &pd, &ph, fec, round, &eras)?;
            for (j, b) in targets {
                let x = layout.block_at(round, j as u64);
                let t = tries.entry(x).or_insert(0);
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
            let patches = if is_data {
                &mut data_patches
            } else {
                &mut hash_patches
            };
            patches.insert(b.offset, blk.clone());
            fixes.insert(
                x,
                Correction {
                    location: b.location,
                    offset: b.offset,
                    bytes,
                    block: blk,
                },
            );
        }
        if !progressed {
            return Ok(FecOutcome {
                initial: initial.expect("set above"),
                last: report,
                corrections: fixes.into_values().collect(),
            });
        }
    }
    let pd = Patched {
        inner: data,
        block_size: bs,
        patches: &data_patches,
    };
    let ph = Patched {
        inner: hash,
        block_size: bs,
        patches: &hash_patches,
    };
    let last = verify_image(geom, &pd, &ph, root, opts, progress)?;
    Ok(FecOutcome {
        initial: initial.unwrap_or_default(),
        last,
        corrections: fixes.into_values().collect(),
    })
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
    use crate::verity::verify::verify_block;
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
