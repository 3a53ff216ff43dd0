//! `repair` as a library step: what may be written back after a correction pass, and which parity
//! rounds are stale. The rule: nothing is written unless the whole tree verified up to the root
//! with every correction applied (partial corrections are not confirmed by anything), and then
//! each corrected block is one positioned write, so a crash leaves each block old or corrected.
//! No file I/O here: `crate::io::repair` opens the devices, syncs them and names them in errors.

use super::{encode_parity, FecIoError, FecLayout, FecOutcome};
use crate::verity::verify::Location;
use crate::verity::Geometry;
use crate::verity::{BlockSink, BlockSource};

/// A write-back that failed: which device, at which byte.
#[derive(Debug, thiserror::Error)]
#[error("writing at byte {offset}: {source}")]
pub struct WriteBackError {
    /// True for the data device, false for the hash device.
    pub data: bool,
    /// Byte offset of the block.
    pub offset: u64,
    /// The write error.
    pub source: std::io::Error,
}

/// Writes the corrected blocks of `out` into `data` and `hash`, if and only if the corrected
/// image verified (`out.is_ok()`). Returns whether anything was written.
pub fn write_back<D, H>(
    out: &FecOutcome,
    data: &mut D,
    hash: &mut H,
) -> Result<bool, WriteBackError>
where
    D: BlockSink + ?Sized,
    H: BlockSink + ?Sized,
{
    if !out.is_ok() {
        return Ok(false);
    }
    for c in &out.corrections {
        let on_data = matches!(c.location, Location::Data { .. });
        let res = if on_data {
            data.write_at(&c.block, c.offset)
        } else {
            hash.write_at(&c.block, c.offset)
        };
        res.map_err(|source| WriteBackError {
            data: on_data,
            offset: c.offset,
            source,
        })?;
    }
    Ok(true)
}

/// The parity rounds of `fec` that differ from a fresh encoding of the (verified) `data` and
/// `hash`, or cannot be read: (byte offset on the FEC device, the parity to write there).
pub fn stale_parity<D, H, F>(
    l: &FecLayout,
    data: &D,
    hash: &H,
    fec: &F,
) -> Result<Vec<(u64, Vec<u8>)>, FecIoError>
where
    D: BlockSource + ?Sized,
    H: BlockSource + ?Sized,
    F: BlockSource + ?Sized,
{
    let mut fresh = Vec::new();
    let base = FecLayout {
        fec_offset: 0,
        ..*l
    };
    encode_parity(&base, data, hash, &mut fresh, &|_| ())?;
    let per = l.round_parity_bytes();
    let mut old = vec![0u8; per];
    let mut stale = Vec::new();
    for (n, new) in fresh.chunks(per).enumerate() {
        let off = l.parity_offset(n as u64);
        let have = fec.read_at(&mut old, off).is_ok();
        if !have || old != new {
            stale.push((off, new.to_vec()));
        }
    }
    Ok(stale)
}

/// The FEC layout for a tree with `geom`, the parity at `fec_offset` (of a device holding
/// `hash_size` bytes if it is the hash device, `on_hash`).
pub fn plan_layout(
    geom: &Geometry,
    roots: u32,
    fec_offset: u64,
    hash_size: u64,
    on_hash: bool,
) -> Result<FecLayout, LayoutPlanError> {
    let p = &geom.params;
    let hb = super::layout::covered_hash_blocks(
        hash_size,
        fec_offset,
        on_hash,
        p.data_block_size,
        geom.hash_start_block,
    );
    let l = FecLayout::new(
        p.data_block_size,
        p.hash_block_size,
        roots,
        p.data_blocks,
        geom.hash_start_block,
        hb,
        fec_offset,
    )
    .map_err(LayoutPlanError::Layout)?;
    if on_hash && fec_offset < geom.hash_end() {
        return Err(LayoutPlanError::HashOverlap {
            hash_end: geom.hash_end(),
        });
    }
    Ok(l)
}

/// Why [`plan_layout`] refused.
#[derive(Debug, thiserror::Error)]
pub enum LayoutPlanError {
    /// Parameters FEC cannot use.
    #[error(transparent)]
    Layout(super::FecError),
    /// The parity would start inside the tree on the same device.
    #[error("hash area (ends at byte {hash_end}) overlaps with FEC area")]
    HashOverlap {
        /// End of the hash area.
        hash_end: u64,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verity::fec::Correction;
    use crate::verity::verify::VerifyReport;

    fn outcome(ok: bool) -> FecOutcome {
        let mut last = VerifyReport::default();
        if !ok {
            last.unverifiable = 1;
        }
        FecOutcome {
            initial: VerifyReport::default(),
            last,
            corrections: vec![
                Correction {
                    location: Location::Data { block: 1 },
                    offset: 4,
                    block: vec![9; 2],
                    bytes: 2,
                },
                Correction {
                    location: Location::Hash { level: 0, index: 0 },
                    offset: 2,
                    block: vec![8; 2],
                    bytes: 1,
                },
            ],
        }
    }

    #[test]
    fn writes_back_only_a_confirmed_correction() {
        let (mut d, mut h) = (vec![0u8; 8], vec![0u8; 8]);
        assert!(!write_back(&outcome(false), &mut d, &mut h).unwrap());
        assert_eq!((d.clone(), h.clone()), (vec![0; 8], vec![0; 8]));
        assert!(write_back(&outcome(true), &mut d, &mut h).unwrap());
        assert_eq!(d, [0, 0, 0, 0, 9, 9, 0, 0]);
        assert_eq!(h, [0, 0, 8, 8, 0, 0, 0, 0]);
    }
}
