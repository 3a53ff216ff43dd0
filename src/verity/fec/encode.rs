//! Computing the parity of a whole image. A worker takes a run of consecutive rounds, so each of
//! its k message rows is one contiguous read of covered blocks, and feeds every row to all
//! `block_size` codewords of each round at once (byte-sliced). Runs are spread over all cores with
//! rayon; memory is a few runs' buffers, independent of the image size.

use super::layout::{FecLayout, Origin};
use super::rs::{Code, WideState};
use super::FecIoError;
use crate::verity::{BlockSink, BlockSource};
use rayon::prelude::*;

/// Bytes a worker reads per row visit: big enough to amortise the read, small enough that a run's
/// parity state stays in cache.
const RUN_BYTES: usize = 64 * 1024;

/// Reads `count` consecutive covered blocks starting at covered block `first` into `buf`; blocks
/// past the covered area read as zeros.
pub(crate) fn read_covered<D, H>(
    layout: &FecLayout,
    data: &D,
    hash: &H,
    first: u64,
    count: usize,
    buf: &mut [u8],
) -> Result<(), FecIoError>
where
    D: BlockSource + ?Sized,
    H: BlockSource + ?Sized,
{
    let bs = layout.block_size as usize;
    let buf = &mut buf[..count * bs];
    let mut i = 0usize;
    while i < count {
        let x = first + i as u64;
        // The run stays on one device: stop at the data/hash and hash/zero boundaries.
        let n = if x < layout.data_blocks {
            ((layout.data_blocks - x) as usize).min(count - i)
        } else {
            count - i
        };
        let out = &mut buf[i * bs..(i + n) * bs];
        match layout.origin(x) {
            Origin::Data(off) => data.read_at(out, off).map_err(|source| FecIoError::Read {
                what: "data device",
                offset: off,
                source,
            })?,
            Origin::Hash(off) => {
                let n_hash = ((layout.covered_blocks() - x) as usize).min(n);
                let (h, z) = out.split_at_mut(n_hash * bs);
                hash.read_at(h, off).map_err(|source| FecIoError::Read {
                    what: "hash device",
                    offset: off,
                    source,
                })?;
                z.fill(0);
            }
            Origin::Zero => out.fill(0),
        }
        i += n;
    }
    Ok(())
}

/// The parity of `rounds` consecutive rounds starting at `first_round`, in on-disk order.
pub(crate) fn encode_rounds<D, H>(
    layout: &FecLayout,
    code: &Code,
    data: &D,
    hash: &H,
    first_round: u64,
    rounds: usize,
) -> Result<Vec<u8>, FecIoError>
where
    D: BlockSource + ?Sized,
    H: BlockSource + ?Sized,
{
    let bs = layout.block_size as usize;
    let per_round = layout.round_parity_bytes();
    let mut states: Vec<WideState> = (0..rounds).map(|_| WideState::new(code, bs)).collect();
    let mut buf = vec![0u8; rounds * bs];
    let zeros = vec![0u8; bs];
    let covered = layout.covered_blocks();
    for j in 0..layout.k() {
        let x0 = layout.block_at(first_round, j);
        if x0 >= covered {
            for st in &mut states {
                code.absorb_row_wide(st, &zeros);
            }
            continue;
        }
        read_covered(layout, data, hash, x0, rounds, &mut buf)?;
        for (st, row) in states.iter_mut().zip(buf.chunks_exact(bs)) {
            code.absorb_row_wide(st, row);
        }
    }
    let mut out = vec![0u8; rounds * per_round];
    for (st, o) in states.iter().zip(out.chunks_exact_mut(per_round)) {
        st.write_parity(o);
    }
    Ok(out)
}

/// Computes the parity of the covered blocks and writes it at `layout.fec_offset` of `sink`.
/// `progress` gets the number of rounds done.
pub fn encode_parity<D, H, S>(
    layout: &FecLayout,
    data: &D,
    hash: &H,
    sink: &mut S,
    progress: &dyn Fn(u64),
) -> Result<(), FecIoError>
where
    D: BlockSource + ?Sized,
    H: BlockSource + ?Sized,
    S: BlockSink + ?Sized,
{
    let code = Code::new(layout.roots).expect("roots checked by FecLayout");
    let total = layout.rounds();
    let threads = rayon::current_num_threads().max(1) as u64;
    let per_run = ((RUN_BYTES / layout.block_size as usize).max(1) as u64)
        .min(total.div_ceil(threads * 2))
        .max(1);
    let runs: Vec<(u64, usize)> = (0..total)
        .step_by(per_run as usize)
        .map(|n| (n, per_run.min(total - n) as usize))
        .collect();
    let batch = (threads * 2) as usize;
    for group in runs.chunks(batch) {
        let parities: Vec<Result<Vec<u8>, FecIoError>> = group
            .par_iter()
            .map(|&(n, m)| encode_rounds(layout, &code, data, hash, n, m))
            .collect();
        for (&(n, m), p) in group.iter().zip(parities) {
            let offset = layout.parity_offset(n);
            sink.write_at(&p?, offset)
                .map_err(|source| FecIoError::Write { offset, source })?;
            progress(n + m as u64);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verity::fec::layout::covered_hash_blocks;

    fn pattern(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i % 251) as u8).collect()
    }

    /// The straightforward definition: one codeword at a time, each symbol read on its own.
    fn reference(layout: &FecLayout, data: &[u8], hash: &[u8]) -> Vec<u8> {
        let code = Code::new(layout.roots).unwrap();
        let bs = layout.block_size as usize;
        let mut out = Vec::new();
        for n in 0..layout.rounds() {
            for b in 0..bs {
                let msg: Vec<u8> = (0..layout.k())
                    .map(|j| match layout.origin(layout.block_at(n, j)) {
                        Origin::Data(o) => data[o as usize + b],
                        Origin::Hash(o) => hash[o as usize + b],
                        Origin::Zero => 0,
                    })
                    .collect();
                let mut p = vec![0u8; layout.roots as usize];
                code.encode(&msg, &mut p);
                out.extend_from_slice(&p);
            }
        }
        out
    }

    #[test]
    fn parallel_runs_match_reference() {
        for (bs, blocks, hash_len, roots) in [
            (512u32, 600usize, 9usize, 2u32),
            (512, 1000, 3, 7),
            (1024, 300, 5, 24),
            (4096, 20, 2, 3),
        ] {
            let data = pattern(blocks * bs as usize);
            let hash: Vec<u8> = pattern((hash_len + 1) * bs as usize)
                .iter()
                .map(|b| b ^ 0x5c)
                .collect();
            let hb = covered_hash_blocks(hash.len() as u64, 0, false, bs, 1);
            let layout = FecLayout::new(bs, bs, roots, blocks as u64, 1, hb, 512).unwrap();
            let mut sink = Vec::new();
            encode_parity(&layout, &data[..], &hash[..], &mut sink, &|_| ()).unwrap();
            assert_eq!(sink.len() as u64, 512 + layout.parity_bytes());
            assert_eq!(
                &sink[512..],
                &reference(&layout, &data, &hash)[..],
                "bs {bs} roots {roots}"
            );
        }
    }
}
