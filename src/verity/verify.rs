//! Verifying a tree top-down, as the kernel trusts it: the top block against the root, every hash
//! block against its parent's digest, every data block against its level-0 digest, and all padding
//! zero. A bad block is named by layer, index and byte offset; blocks under a bad hash block are
//! counted as unverifiable rather than blamed.

use super::build::{stream_layer, BuildError};
use super::geometry::Geometry;
use super::hasher::BlockHasher;
use super::source::BlockSource;
use std::collections::BTreeSet;
use std::io;

/// Which layer a block belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(tag = "layer", rename_all = "lowercase")]
pub enum Location {
    /// A data block, by index.
    Data { block: u64 },
    /// A hash block: level (0 = digests of data blocks) and index within the level.
    Hash { level: usize, index: u64 },
}

/// What was wrong with a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Defect {
    /// Its digest does not match the one stored in its parent (or the root).
    Mismatch,
    /// A hash block's unused bytes are not zero.
    NonZeroPadding,
}

/// One bad block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct BadBlock {
    /// Where it is.
    #[serde(flatten)]
    pub location: Location,
    /// Byte offset on its device (data device for data blocks, hash device for hash blocks).
    pub offset: u64,
    /// What failed.
    pub defect: Defect,
}

impl std::fmt::Display for BadBlock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.location, self.defect) {
            (Location::Data { block }, _) => write!(
                f,
                "data block {block} (byte {}) does not match its digest in the hash tree",
                self.offset
            ),
            (Location::Hash { level, index }, Defect::Mismatch) => write!(
                f,
                "hash block {index} of level {level} (byte {} of the hash device) does not match its digest",
                self.offset
            ),
            (Location::Hash { level, index }, Defect::NonZeroPadding) => write!(
                f,
                "hash block {index} of level {level} (byte {} of the hash device) has non-zero padding",
                self.offset
            ),
        }
    }
}

/// The outcome of a whole-image check.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct VerifyReport {
    /// Bad blocks, top of the tree first, then data in order.
    pub bad: Vec<BadBlock>,
    /// Blocks that could not be checked because a hash block above them was bad.
    pub unverifiable: u64,
}

impl VerifyReport {
    /// True when nothing was wrong.
    pub fn is_ok(&self) -> bool {
        self.bad.is_empty() && self.unverifiable == 0
    }
}

/// A failure to read, as opposed to a failed check.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("reading {what} at byte {offset}: {source}")]
    Read {
        what: &'static str,
        offset: u64,
        source: io::Error,
    },
    #[error("root hash has {got} bytes, but {alg} digests have {want}")]
    RootLength {
        alg: crate::digest::HashAlg,
        got: usize,
        want: usize,
    },
    #[error("{what} device holds {have} bytes, but the tree needs {need}")]
    TooSmall {
        what: &'static str,
        have: u64,
        need: u64,
    },
}

impl From<BuildError> for VerifyError {
    fn from(e: BuildError) -> Self {
        match e {
            BuildError::ReadData { offset, source } => VerifyError::Read {
                what: "image",
                offset,
                source,
            },
            BuildError::WriteHash { offset, source } => VerifyError::Read {
                what: "hash device",
                offset,
                source,
            },
            BuildError::DataTooSmall { have, need } => VerifyError::TooSmall {
                what: "data",
                have,
                need,
            },
        }
    }
}

/// How much to check.
#[derive(Debug, Clone, Copy, Default)]
pub struct VerifyOptions {
    /// Stop at the first bad block (the CLI's default) instead of listing them all.
    pub stop_at_first: bool,
}

/// Caches the parent hash block that the current children are checked against.
struct Parent<'a, H: BlockSource + ?Sized> {
    hash: &'a H,
    hbs: usize,
    index: Option<u64>,
    buf: Vec<u8>,
}

impl<H: BlockSource + ?Sized> Parent<'_, H> {
    fn get(&mut self, abs_block: u64) -> Result<&[u8], VerifyError> {
        if self.index != Some(abs_block) {
            let offset = abs_block * self.hbs as u64;
            self.hash
                .read_at(&mut self.buf, offset)
                .map_err(|source| VerifyError::Read {
                    what: "hash device",
                    offset,
                    source,
                })?;
            self.index = Some(abs_block);
        }
        Ok(&self.buf)
    }
}

/// Checks every block of the image against `root`.
pub fn verify_image<D, H>(
    geom: &Geometry,
    data: &D,
    hash: &H,
    root: &[u8],
    opts: VerifyOptions,
    progress: &dyn Fn(u64),
) -> Result<VerifyReport, VerifyError>
where
    D: BlockSource + ?Sized,
    H: BlockSource + ?Sized,
{
    let p = &geom.params;
    let hasher = BlockHasher::new(p.alg, &p.salt, p.hash_type);
    let d = hasher.digest_size();
    if root.len() != d {
        return Err(VerifyError::RootLength {
            alg: p.alg,
            got: root.len(),
            want: d,
        });
    }
    if data.size() < geom.data_size() {
        return Err(VerifyError::TooSmall {
            what: "data",
            have: data.size(),
            need: geom.data_size(),
        });
    }
    if hash.size() < geom.hash_end() && !geom.levels.is_empty() {
        return Err(VerifyError::TooSmall {
            what: "hash",
            have: hash.size(),
            need: geom.hash_end(),
        });
    }
    let hbs = p.hash_block_size as usize;
    let dbs = p.data_block_size as usize;
    let mut report = VerifyReport::default();
    let mut bad_parents: BTreeSet<(usize, u64)> = BTreeSet::new();

    let top = geom.levels.len();
    // Layers from the top: hash level top-1 .. 0, then the data (as layer "top" = None).
    for layer in (0..=top).rev() {
        let is_data = layer == 0;
        // The layer being checked is level `layer - 1` (or the data when layer == 0); its digests
        // are stored in level `layer` (or are the root when layer == top).
        let (src, base, bs, count) = if is_data {
            (Layer::Data(data), 0, dbs, p.data_blocks)
        } else {
            let lv = geom.levels[layer - 1];
            (Layer::Hash(hash), lv.start * hbs as u64, hbs, lv.blocks)
        };
        let mut parent = Parent {
            hash,
            hbs,
            index: None,
            buf: vec![0u8; hbs],
        };
        let mut newly_bad = BTreeSet::new();
        let mut stop = false;
        stream_layer(
            &src,
            base,
            bs,
            count,
            &hasher,
            |first, digests| -> Result<(), VerifyError> {
                for (i, got) in digests.chunks(d).enumerate() {
                    let k = first + i as u64;
                    let loc = if is_data {
                        Location::Data { block: k }
                    } else {
                        Location::Hash {
                            level: layer - 1,
                            index: k,
                        }
                    };
                    let offset = base + k * bs as u64;
                    let expected: &[u8] = if layer == top {
                        root
                    } else {
                        let parent_index = k >> geom.hpb_bits;
                        if bad_parents.contains(&(layer, parent_index)) {
                            report.unverifiable += 1;
                            if !is_data {
                                newly_bad.insert((layer - 1, k));
                            }
                            continue;
                        }
                        let (abs, off) = geom.locate(layer, k);
                        &parent.get(abs)?[off..off + d]
                    };
                    if got != expected {
                        report.bad.push(BadBlock {
                            location: loc,
                            offset,
                            defect: Defect::Mismatch,
                        });
                        if !is_data {
                            newly_bad.insert((layer - 1, k));
                        }
                        if opts.stop_at_first {
                            stop = true;
                            return Ok(());
                        }
                    }
                }
                progress(if is_data {
                    (first + (digests.len() / d) as u64) * bs as u64
                } else {
                    0
                });
                Ok(())
            },
        )?;
        if stop {
            return Ok(report);
        }
        if !is_data {
            // Padding of every good block of this level.
            let level = layer - 1;
            for k in 0..count {
                if newly_bad.contains(&(level, k)) {
                    continue;
                }
                let used = geom.used_bytes(geom.entries_in(level, k));
                let mut blk = vec![0u8; hbs];
                let offset = base + k * hbs as u64;
                if used == hbs && geom.slot_size == d {
                    continue;
                }
                hash.read_at(&mut blk, offset)
                    .map_err(|source| VerifyError::Read {
                        what: "hash device",
                        offset,
                        source,
                    })?;
                if !padding_is_zero(geom, &blk, used, d) {
                    report.bad.push(BadBlock {
                        location: Location::Hash { level, index: k },
                        offset,
                        defect: Defect::NonZeroPadding,
                    });
                    if opts.stop_at_first {
                        return Ok(report);
                    }
                }
            }
            bad_parents = newly_bad;
        }
    }
    Ok(report)
}

fn padding_is_zero(geom: &Geometry, blk: &[u8], used: usize, d: usize) -> bool {
    if blk[used..].iter().any(|&b| b != 0) {
        return false;
    }
    if geom.slot_size > d {
        // Format 1: the tail of every slot is zero too.
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

/// Either device, so one loop can walk data and hash layers alike.
enum Layer<'a, D: ?Sized, H: ?Sized> {
    Data(&'a D),
    Hash(&'a H),
}

impl<D: BlockSource + ?Sized, H: BlockSource + ?Sized> BlockSource for Layer<'_, D, H> {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        match self {
            Layer::Data(d) => d.read_at(buf, offset),
            Layer::Hash(h) => h.read_at(buf, offset),
        }
    }
    fn size(&self) -> u64 {
        match self {
            Layer::Data(d) => d.size(),
            Layer::Hash(h) => h.size(),
        }
    }
    fn data_ranges(&self, s: u64, e: u64) -> io::Result<Vec<(u64, u64)>> {
        match self {
            Layer::Data(d) => d.data_ranges(s, e),
            Layer::Hash(h) => h.data_ranges(s, e),
        }
    }
}

/// Checks one data block against the root through its hash path, reading one hash block per
/// level from the top, as the kernel does on a read. Returns the first block on the path that
/// fails (a hash block, or the data block itself).
pub fn verify_block<H: BlockSource + ?Sized>(
    geom: &Geometry,
    hash: &H,
    root: &[u8],
    index: u64,
    block: &[u8],
) -> Result<Result<(), BadBlock>, VerifyError> {
    let p = &geom.params;
    let hasher = BlockHasher::new(p.alg, &p.salt, p.hash_type);
    let d = hasher.digest_size();
    let hbs = p.hash_block_size as usize;
    if root.len() != d {
        return Err(VerifyError::RootLength {
            alg: p.alg,
            got: root.len(),
            want: d,
        });
    }
    let mut expected = root.to_vec();
    let mut buf = vec![0u8; hbs];
    for level in (0..geom.levels.len()).rev() {
        let (abs, _) = geom.locate(level, index >> (geom.hpb_bits * level as u32));
        let offset = abs * hbs as u64;
        hash.read_at(&mut buf, offset)
            .map_err(|source| VerifyError::Read {
                what: "hash device",
                offset,
                source,
            })?;
        if hasher.hash(&buf) != expected {
            return Ok(Err(BadBlock {
                location: Location::Hash {
                    level,
                    index: abs - geom.levels[level].start,
                },
                offset,
                defect: Defect::Mismatch,
            }));
        }
        // The digest of the next block down the path.
        let below = index >> (geom.hpb_bits * level as u32);
        let (_, off) = geom.locate(level, below);
        expected = buf[off..off + d].to_vec();
    }
    if hasher.hash(block) != expected {
        return Ok(Err(BadBlock {
            location: Location::Data { block: index },
            offset: index * p.data_block_size as u64,
            defect: Defect::Mismatch,
        }));
    }
    Ok(Ok(()))
}
