//! `format` as a library step: planning a new hash device (how many data blocks, where the tree
//! starts, whether it collides with the data) and producing the tree and the superblock through
//! [`BlockSource`] / [`BlockSink`]. No file I/O here: `crate::io::format` opens the files, writes
//! through a temporary file and names the device in errors; the CLI only parses and prints.

use super::build::{build_tree_with_parity, BuildError};
use super::fec::ParityStream;
use super::geometry::{hash_start_block, Geometry, GeometryError, Params};
use super::superblock::Superblock;
use super::{BlockSink, BlockSource};
use crate::digest::HashAlg;

/// Where a long step reports how far it is, and warnings worth a line (the CLI draws a bar and
/// prints `verity: warning: ...`; an embedding program may ignore both with `()`).
pub trait Progress {
    /// A stage begins: `what` ("hashing", "FEC parity", "verifying") of `total` units.
    fn begin(&self, what: &'static str, total: u64);
    /// Units of the current stage done so far.
    fn set(&self, done: u64);
    /// The current stage ended.
    fn end(&self);
    /// Something the caller should know that does not stop the step.
    fn warn(&self, msg: &str);
}

/// No progress and no warnings.
impl Progress for () {
    fn begin(&self, _: &'static str, _: u64) {}
    fn set(&self, _: u64) {}
    fn end(&self) {}
    fn warn(&self, _: &str) {}
}

/// The parameters of a new hash device (veritysetup's format options).
#[derive(Debug, Clone)]
pub struct FormatOptions {
    /// Hash algorithm.
    pub alg: HashAlg,
    /// Data block size in bytes.
    pub data_block_size: u32,
    /// Hash block size in bytes.
    pub hash_block_size: u32,
    /// Salt (empty for none).
    pub salt: Vec<u8>,
    /// 1 normal, 0 Chrome OS.
    pub hash_type: u32,
    /// Byte offset of the superblock (or the tree) on the hash device.
    pub hash_offset: u64,
    /// Write a superblock.
    pub superblock: bool,
    /// Data blocks to cover (None: every whole block of the data).
    pub data_blocks: Option<u64>,
    /// UUID for the superblock.
    pub uuid: [u8; 16],
}

/// Why a format cannot be planned. The texts name the veritysetup option the value came from.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// `--data-blocks 0`.
    #[error("--data-blocks 0: nothing to protect")]
    NoBlocks,
    /// More data blocks asked for than the data holds.
    #[error(
        "--data-blocks {n} is past the end of {data} ({size} bytes hold {whole} blocks of {dbs})"
    )]
    PastEnd {
        /// Asked for.
        n: u64,
        /// Data device name.
        data: String,
        /// Its size.
        size: u64,
        /// Whole blocks in it.
        whole: u64,
        /// Data block size.
        dbs: u32,
    },
    /// The data is smaller than one block.
    #[error("{data} holds {size} bytes, less than one {dbs}-byte block")]
    TooSmall {
        /// Data device name.
        data: String,
        /// Its size.
        size: u64,
        /// Data block size.
        dbs: u32,
    },
    /// The parameters give no valid tree.
    #[error("{0}")]
    Geometry(#[from] GeometryError),
    /// Data and hash share a file and the hash area starts inside the data.
    #[error("data area overlaps with hash area: data ends at byte {data_end}, hash area starts at --hash-offset {hash_offset}")]
    Overlap {
        /// End of the data area.
        data_end: u64,
        /// The hash offset given.
        hash_offset: u64,
    },
}

/// Why producing the tree failed.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    /// Reading the data or writing the tree.
    #[error(transparent)]
    Build(#[from] BuildError),
    /// Writing the superblock.
    #[error("{0}")]
    Superblock(std::io::Error),
}

/// A planned format: the tree layout and what will be written where.
#[derive(Debug, Clone)]
pub struct FormatPlan {
    /// Tree layout.
    pub geom: Geometry,
    /// Superblock UUID (also when none is written, for reports).
    pub uuid: [u8; 16],
    /// A superblock is written at `hash_offset`.
    pub superblock: bool,
    /// Byte offset of the superblock (or tree) on the hash device.
    pub hash_offset: u64,
}

impl FormatPlan {
    /// Plans a format of `data_size` bytes of data (named `data_name` in errors). `hash_is_data`:
    /// the hash device is the data file itself, so the hash area must start past the data.
    /// Warns through `progress` when the data ends in a partial block that is not covered.
    pub fn new(
        o: FormatOptions,
        data_size: u64,
        data_name: &str,
        hash_is_data: bool,
        progress: &dyn Progress,
    ) -> Result<Self, PlanError> {
        let dbs = o.data_block_size;
        let whole = data_size / dbs as u64;
        let data_blocks = match o.data_blocks {
            Some(0) => return Err(PlanError::NoBlocks),
            Some(n) if n > whole => {
                return Err(PlanError::PastEnd {
                    n,
                    data: data_name.to_string(),
                    size: data_size,
                    whole,
                    dbs,
                })
            }
            Some(n) => n,
            None if whole == 0 => {
                return Err(PlanError::TooSmall {
                    data: data_name.to_string(),
                    size: data_size,
                    dbs,
                })
            }
            None => whole,
        };
        if o.data_blocks.is_none() && !data_size.is_multiple_of(dbs as u64) {
            progress.warn(&format!(
                "the last {} bytes of {data_name} are not a whole block and are not covered",
                data_size % dbs as u64
            ));
        }
        let params = Params {
            alg: o.alg,
            data_block_size: dbs,
            hash_block_size: o.hash_block_size,
            data_blocks,
            salt: o.salt,
            hash_type: o.hash_type,
        };
        let start = hash_start_block(o.hash_offset, o.hash_block_size, o.superblock)?;
        let geom = Geometry::new(params, start)?;
        if hash_is_data && o.hash_offset < geom.data_size() {
            return Err(PlanError::Overlap {
                data_end: geom.data_size(),
                hash_offset: o.hash_offset,
            });
        }
        Ok(FormatPlan {
            geom,
            uuid: o.uuid,
            superblock: o.superblock,
            hash_offset: o.hash_offset,
        })
    }

    /// Whether anything is written at all (veritysetup writes nothing for a single data block
    /// without a superblock, and then does not extend the hash file either).
    pub fn writes_anything(&self) -> bool {
        self.superblock || self.geom.tree_blocks() > 0
    }

    /// Builds the tree from `data` into `hash` and writes the superblock; returns the root hash.
    pub fn write<S, W>(
        &self,
        data: &S,
        hash: &mut W,
        progress: &dyn Progress,
    ) -> Result<Vec<u8>, FormatError>
    where
        S: BlockSource + ?Sized,
        W: BlockSink + ?Sized,
    {
        self.write_with_parity(data, hash, progress, None)
    }

    /// [`FormatPlan::write`], adding every data block to `parity` in the same pass (then
    /// [`ParityStream::finish`] adds the hash blocks and writes the parity).
    pub fn write_with_parity<S, W>(
        &self,
        data: &S,
        hash: &mut W,
        progress: &dyn Progress,
        parity: Option<&ParityStream>,
    ) -> Result<Vec<u8>, FormatError>
    where
        S: BlockSource + ?Sized,
        W: BlockSink + ?Sized,
    {
        progress.begin("hashing", self.geom.data_size());
        let root = build_tree_with_parity(&self.geom, data, hash, &|n| progress.set(n), parity)?;
        progress.end();
        if self.superblock {
            let sb = Superblock::from_params(&self.geom.params, self.uuid);
            hash.write_at(&sb.to_bytes(), self.hash_offset)
                .map_err(FormatError::Superblock)?;
        }
        Ok(root)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(data_blocks: Option<u64>) -> FormatOptions {
        FormatOptions {
            alg: HashAlg::Sha256,
            data_block_size: 4096,
            hash_block_size: 4096,
            salt: vec![1; 32],
            hash_type: 1,
            hash_offset: 0,
            superblock: true,
            data_blocks,
            uuid: [7; 16],
        }
    }

    #[test]
    fn plan_refuses_what_veritysetup_refuses() {
        let e = FormatPlan::new(opts(Some(0)), 8192, "d", false, &()).unwrap_err();
        assert_eq!(e.to_string(), "--data-blocks 0: nothing to protect");
        let e = FormatPlan::new(opts(Some(3)), 8192, "d", false, &()).unwrap_err();
        assert!(matches!(e, PlanError::PastEnd { whole: 2, .. }), "{e}");
        let e = FormatPlan::new(opts(None), 100, "d", false, &()).unwrap_err();
        assert!(matches!(e, PlanError::TooSmall { size: 100, .. }), "{e}");
        let e = FormatPlan::new(opts(None), 8192, "d", true, &()).unwrap_err();
        assert!(
            matches!(e, PlanError::Overlap { data_end: 8192, .. }),
            "{e}"
        );
    }

    #[test]
    fn write_puts_the_superblock_at_the_offset_and_the_tree_after_it() {
        let data: Vec<u8> = (0..3 * 4096u32).map(|i| (i % 251) as u8).collect();
        let plan = FormatPlan::new(opts(None), data.len() as u64, "d", false, &()).unwrap();
        let mut hash = Vec::new();
        let root = plan.write(&data, &mut hash, &()).unwrap();
        let sb = Superblock::parse(&hash[..512]).unwrap();
        assert_eq!(sb.uuid, [7; 16]);
        assert_eq!(sb.data_blocks, 3);
        assert_eq!(root.len(), 32);
        // One hash block of three digests at block 1, after the superblock's block.
        assert_eq!(hash.len(), 2 * 4096);
    }
}
