//! Verifying a tree top-down, as the kernel trusts it: the top block against the root, every hash
//! block against its parent's digest, every data block against its level-0 digest, and all padding
//! zero. A bad block is named by layer, index and byte offset; blocks under a bad hash block are
//! counted as unverifiable rather than blamed.

pub use super::authtree::AuthTree;
use super::authtree::{check_hash_block, digest_in, hash_offset, load_upper, Upper};
use super::build::{stream_layer, BuildError};
use super::geometry::Geometry;
use super::hasher::BlockHasher;
use super::source::BlockSource;
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
    #[error("the upper levels of the hash tree take {bytes} bytes, more than the {limit} this verifier keeps in memory")]
    TreeTooLarge { bytes: u64, limit: u64 },
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
            // Only a tree build with FEC parity checks this; verification never streams parity.
            e @ BuildError::ParityLayout { .. } => VerifyError::Read {
                what: "FEC parity stream",
                offset: 0,
                source: std::io::Error::other(e.to_string()),
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

/// Checks the root length and the device sizes against the geometry; returns the hasher.
pub(crate) fn check_inputs<H: BlockSource + ?Sized>(
    geom: &Geometry,
    hash: &H,
    root: &[u8],
) -> Result<BlockHasher, VerifyError> {
    let p = &geom.params;
    let hasher = BlockHasher::new(p.alg, &p.salt, p.hash_type);
    if root.len() != hasher.digest_size() {
        return Err(VerifyError::RootLength {
            alg: p.alg,
            got: root.len(),
            want: hasher.digest_size(),
        });
    }
    if hash.size() < geom.hash_end() && !geom.levels.is_empty() {
        return Err(VerifyError::TooSmall {
            what: "hash",
            have: hash.size(),
            need: geom.hash_end(),
        });
    }
    Ok(hasher)
}

/// Why the data stream stopped early.
enum Flow {
    /// `stop_at_first` and a bad block was found.
    Stop,
    Err(VerifyError),
}

impl From<BuildError> for Flow {
    fn from(e: BuildError) -> Self {
        Flow::Err(e.into())
    }
}

impl From<VerifyError> for Flow {
    fn from(e: VerifyError) -> Self {
        Flow::Err(e)
    }
}

/// State of one level-0 block in the window that moves along with the data.
#[derive(Clone, Copy, PartialEq, Eq)]
enum L0 {
    /// Its digest matched: its slots are authenticated.
    Good,
    /// It failed, or a block above it did: its children cannot be checked.
    Unusable,
}

/// The level-0 blocks the current data chunk needs, each read once, authenticated against the
/// in-memory level above, and dropped once the data has moved past it.
struct Window {
    first: u64,
    blocks: Vec<u8>,
    state: Vec<L0>,
}

/// The bad blocks found while streaming, kept apart so the report lists them in tree order.
#[derive(Default)]
struct Found {
    l0_mismatch: Vec<BadBlock>,
    l0_padding: Vec<BadBlock>,
    data: Vec<BadBlock>,
}

struct Walk<'a, H: ?Sized> {
    geom: &'a Geometry,
    hasher: &'a BlockHasher,
    hash: &'a H,
    root: &'a [u8],
    upper: &'a Upper,
    stop_at_first: bool,
    win: Window,
    found: Found,
    unverifiable: u64,
}

impl<H: BlockSource + ?Sized> Walk<'_, H> {
    /// Moves the window to level-0 blocks `[a, b]`: keeps what it already holds of them, reads
    /// the rest once and authenticates each block before any of its digests is used.
    fn advance(&mut self, a: u64, b: u64) -> Result<(), Flow> {
        let hbs = self.geom.params.hash_block_size as usize;
        let held_end = self.win.first + self.win.state.len() as u64;
        if a >= held_end {
            self.win.blocks.clear();
            self.win.state.clear();
        } else {
            let drop = (a - self.win.first) as usize;
            self.win.blocks.drain(..drop * hbs);
            self.win.state.drain(..drop);
        }
        self.win.first = a;
        let from = held_end.max(a);
        if from > b {
            return Ok(());
        }
        let n = (b + 1 - from) as usize;
        let at = self.win.blocks.len();
        self.win.blocks.resize(at + n * hbs, 0);
        let offset = hash_offset(self.geom, 0, from);
        self.hash
            .read_at(&mut self.win.blocks[at..], offset)
            .map_err(|source| VerifyError::Read {
                what: "hash device",
                offset,
                source,
            })?;
        let top = self.geom.levels.len() == 1;
        for i in 0..n {
            let k = from + i as u64;
            if !top && self.upper.unusable[1][(k >> self.geom.hpb_bits) as usize] {
                self.unverifiable += 1;
                self.win.state.push(L0::Unusable);
                continue;
            }
            let blk = &self.win.blocks[at + i * hbs..at + (i + 1) * hbs];
            let expected = digest_in(self.geom, &self.upper.levels, self.root, 0, k);
            let bad = |defect| BadBlock {
                location: Location::Hash { level: 0, index: k },
                offset: hash_offset(self.geom, 0, k),
                defect,
            };
            match check_hash_block(self.geom, self.hasher, 0, k, blk, expected) {
                None => self.win.state.push(L0::Good),
                Some(Defect::Mismatch) => {
                    self.found.l0_mismatch.push(bad(Defect::Mismatch));
                    self.win.state.push(L0::Unusable);
                    if self.stop_at_first {
                        return Err(Flow::Stop);
                    }
                }
                Some(Defect::NonZeroPadding) => {
                    self.found.l0_padding.push(bad(Defect::NonZeroPadding));
                    self.win.state.push(L0::Good);
                    if self.stop_at_first {
                        return Err(Flow::Stop);
                    }
                }
            }
        }
        Ok(())
    }

    /// Checks the digests of data blocks `first..` against the authenticated window.
    fn data(&mut self, first: u64, digests: &[u8]) -> Result<(), Flow> {
        let d = self.hasher.digest_size();
        let n = (digests.len() / d) as u64;
        let dbs = self.geom.params.data_block_size as u64;
        let bits = self.geom.hpb_bits;
        if n == 0 {
            return Ok(());
        }
        if !self.geom.levels.is_empty() {
            self.advance(first >> bits, (first + n - 1) >> bits)?;
        }
        let hbs = self.geom.params.hash_block_size as usize;
        for (i, got) in digests.chunks(d).enumerate() {
            let k = first + i as u64;
            let expected: &[u8] = if self.geom.levels.is_empty() {
                self.root
            } else {
                let w = ((k >> bits) - self.win.first) as usize;
                if self.win.state[w] == L0::Unusable {
                    self.unverifiable += 1;
                    continue;
                }
                let (_, off) = self.geom.locate(0, k);
                &self.win.blocks[w * hbs + off..w * hbs + off + d]
            };
            if got != expected {
                self.found.data.push(BadBlock {
                    location: Location::Data { block: k },
                    offset: k * dbs,
                    defect: Defect::Mismatch,
                });
                if self.stop_at_first {
                    return Err(Flow::Stop);
                }
            }
        }
        Ok(())
    }
}

/// Checks every block of the image against `root`, reading each byte once: the upper levels into
/// memory top-down (each block against the authenticated level above), then the data in parallel
/// chunks together with the level-0 blocks that cover them (each authenticated against the
/// in-memory level 1 before its digests are used). Holes in the data are not read.
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
    let hasher = check_inputs(geom, hash, root)?;
    if data.size() < geom.data_size() {
        return Err(VerifyError::TooSmall {
            what: "data",
            have: data.size(),
            need: geom.data_size(),
        });
    }
    let mut report = VerifyReport::default();
    let Some(upper) = load_upper(geom, &hasher, hash, root, opts.stop_at_first, &mut report)?
    else {
        return Ok(report);
    };
    stream_data(
        geom,
        &hasher,
        &upper,
        root,
        data,
        hash,
        opts,
        progress,
        &mut report,
    )?;
    Ok(report)
}

/// The data pass of [`verify_image`] (and of [`super::authtree::AuthTree::verify_data`]): the
/// data in parallel chunks, with the level-0 blocks that cover each chunk read once and
/// authenticated against the in-memory `upper` levels before any of their digests is used.
#[allow(clippy::too_many_arguments)]
pub(crate) fn stream_data<D, H>(
    geom: &Geometry,
    hasher: &BlockHasher,
    upper: &Upper,
    root: &[u8],
    data: &D,
    hash: &H,
    opts: VerifyOptions,
    progress: &dyn Fn(u64),
    report: &mut VerifyReport,
) -> Result<(), VerifyError>
where
    D: BlockSource + ?Sized,
    H: BlockSource + ?Sized,
{
    let need = geom.data_size();
    if data.size() < need {
        return Err(VerifyError::TooSmall {
            what: "data",
            have: data.size(),
            need,
        });
    }
    let p = &geom.params;
    let dbs = p.data_block_size as usize;
    let d = hasher.digest_size();
    let mut walk = Walk {
        geom,
        hasher,
        hash,
        root,
        upper,
        stop_at_first: opts.stop_at_first,
        win: Window {
            first: 0,
            blocks: Vec::new(),
            state: Vec::new(),
        },
        found: Found::default(),
        unverifiable: 0,
    };
    let res = stream_layer(
        data,
        0,
        dbs,
        p.data_blocks,
        hasher,
        |first, digests| -> Result<(), Flow> {
            walk.data(first, digests)?;
            progress((first + (digests.len() / d) as u64) * dbs as u64);
            Ok(())
        },
    );
    match res {
        Ok(()) | Err(Flow::Stop) => {}
        Err(Flow::Err(e)) => return Err(e),
    }
    report.unverifiable += walk.unverifiable;
    let f = walk.found;
    report.bad.extend(f.l0_mismatch);
    report.bad.extend(f.l0_padding);
    report.bad.extend(f.data);
    Ok(())
}

/// Checks one data block against the root through its hash path, reading one hash block per
/// level from the top, as the kernel does on a read: each hash block is authenticated (digest and
/// padding) against the bytes of the block above it that were read and authenticated in this call,
/// and only then supplies the digest for the next one down. Returns the first block on the path
/// that fails (a hash block, or the data block itself).
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
    if root.len() != d {
        return Err(VerifyError::RootLength {
            alg: p.alg,
            got: root.len(),
            want: d,
        });
    }
    if index >= p.data_blocks {
        return Ok(Err(BadBlock {
            location: Location::Data { block: index },
            offset: index.saturating_mul(p.data_block_size as u64),
            defect: Defect::Mismatch,
        }));
    }
    let mut expected = root.to_vec();
    let mut buf = vec![0u8; p.hash_block_size as usize];
    for level in (0..geom.levels.len()).rev() {
        // The block of this level on the path, and the slot in it for the next one down.
        let k = index >> (geom.hpb_bits * (level as u32 + 1));
        let below = index >> (geom.hpb_bits * level as u32);
        let offset = hash_offset(geom, level, k);
        hash.read_at(&mut buf, offset)
            .map_err(|source| VerifyError::Read {
                what: "hash device",
                offset,
                source,
            })?;
        if let Some(defect) = check_hash_block(geom, &hasher, level, k, &buf, &expected) {
            return Ok(Err(BadBlock {
                location: Location::Hash { level, index: k },
                offset,
                defect,
            }));
        }
        let (_, off) = geom.locate(level, below);
        expected.copy_from_slice(&buf[off..off + d]);
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
