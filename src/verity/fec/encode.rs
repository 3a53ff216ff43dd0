//! Computing the parity of a whole image. A thread takes a run of consecutive rounds, so each of
//! its k message rows is one contiguous read of covered blocks, and encodes all the run's
//! codewords from those rows with [`Code::encode_rows`] (AVX2 where the CPU has it). Runs go to
//! every core and their parity is written in order; memory is a few runs' buffers (2 MiB each),
//! independent of the image size.

use super::layout::{FecLayout, Origin};
use super::rs::Code;
use super::FecIoError;
use crate::verity::ordered::{run_ordered, threads, AlignedBuf, Plan};
use crate::verity::stats::Clock;
use crate::verity::{BlockSink, BlockSource};

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

/// Message bytes (all k rows) a run of rounds reads at once: the encoder walks every row for a
/// vector of codewords, so the rows of a run should sit in the L2/L3 caches, not in RAM.
const RUN_BYTES: usize = 2 << 20;

/// Reads the k message rows of `rounds` consecutive rounds from `first_round` into `buf` (row
/// `j` is `rounds` contiguous covered blocks), zeros for rows past the covered blocks.
fn read_rows<D, H>(
    layout: &FecLayout,
    data: &D,
    hash: &H,
    first_round: u64,
    rounds: usize,
    buf: &mut [u8],
) -> Result<(), FecIoError>
where
    D: BlockSource + ?Sized,
    H: BlockSource + ?Sized,
{
    let row = rounds * layout.block_size as usize;
    for (j, r) in buf.chunks_exact_mut(row).enumerate() {
        let x0 = layout.block_at(first_round, j as u64);
        if x0 >= layout.covered_blocks() {
            r.fill(0);
        } else {
            read_covered(layout, data, hash, x0, rounds, r)?;
        }
    }
    Ok(())
}

/// Computes the parity of the covered blocks and writes it at `layout.fec_offset` of `sink`.
/// Runs of consecutive rounds are read and encoded on every CPU (see `super::super::ordered`)
/// and written in order; `progress` gets the number of rounds done.
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
    let bs = layout.block_size as usize;
    let k = code.k();
    let total = layout.rounds();
    let threads = threads() as u64;
    // Enough runs to keep every thread busy, each small enough for the cache.
    let per_run = ((RUN_BYTES / (k * bs)).max(1) as u64)
        .min(total.div_ceil(threads * 2))
        .max(1);
    let len = |p: u64| per_run.min(total - p * per_run) as usize;
    let per_round = layout.round_parity_bytes();
    let plan = Plan {
        pieces: total.div_ceil(per_run),
        out_len: per_run as usize * per_round,
        depth_per_thread: 2,
        stage: "fec encoding",
    };
    run_ordered(
        plan,
        || AlignedBuf::new(k * per_run as usize * bs),
        |p, buf: &mut AlignedBuf, out: &mut [u8], clock: &mut Clock| {
            let m = len(p);
            let rows = &mut buf[..k * m * bs];
            read_rows(layout, data, hash, p * per_run, m, rows)?;
            clock.lap_read();
            code.encode_rows(rows, m * bs, &mut out[..m * per_round]);
            clock.lap_hash();
            Ok::<(), FecIoError>(())
        },
        |p, out| {
            let first = p * per_run;
            let m = len(p);
            let offset = layout.parity_offset(first);
            sink.write_at(&out[..m * per_round], offset)
                .map_err(|source| FecIoError::Write { offset, source })?;
            progress(first + m as u64);
            Ok(())
        },
    )
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
