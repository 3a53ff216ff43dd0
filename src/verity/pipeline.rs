//! The read-and-hash pipeline behind tree building and verification. A layer is cut into pieces
//! small enough to stay in a core's L2 cache (256 KiB); every thread (the calling one included,
//! see [`super::ordered`]) claims the next piece, reads it into its own buffer and hashes it while
//! it is still in cache, so the page-cache copy and the hashing touch memory once and every core
//! works all the time (no barrier between a read phase and a hash phase). The digests reach the
//! caller in order (for the hash-block cascade or the comparison with the tree), and memory stays
//! a few pieces per thread whatever the image size.

use super::build::{read_blocks, BuildError};
use super::hasher::BlockHasher;
use super::ordered::{run_ordered, AlignedBuf, Plan};
use super::source::BlockSource;
use super::stats::Clock;

/// Bytes read and hashed per piece: twice this (the piece and its copy in flight) fits the 512 KiB
/// L2 of the CI machine with room for the hash kernel's working set.
pub const PIECE_BYTES: usize = 256 << 10;

/// Pieces in flight per thread: the ring lets the workers run ahead while the calling thread is
/// hashing a piece of its own or writing hash blocks, without unbounded memory.
const DEPTH_PER_WORKER: usize = 4;

/// Hashes `count` blocks of `buf` into `out` (digest-size slots back to back); blocks without data
/// get `zero_digest` without being hashed. Runs of consecutive data blocks go to
/// [`BlockHasher::hash_many`] in one call, so the multi-buffer kernel sees whole passes.
pub(crate) fn hash_run(
    hasher: &BlockHasher,
    block_size: usize,
    buf: &[u8],
    has_data: &[bool],
    zero_digest: &[u8],
    out: &mut [u8],
) {
    let d = hasher.digest_size();
    let n = out.len() / d;
    let mut i = 0;
    while i < n {
        let data = has_data[i];
        let run = has_data[i..n].iter().take_while(|&&h| h == data).count();
        let o = &mut out[i * d..(i + run) * d];
        if data {
            hasher.hash_many(&buf[i * block_size..(i + run) * block_size], block_size, o);
        } else {
            for z in o.chunks_mut(d) {
                z.copy_from_slice(zero_digest);
            }
        }
        i += run;
    }
}

/// A thread's own read buffer.
struct Scratch {
    buf: AlignedBuf,
    has: Vec<bool>,
}

/// Streams the blocks of one layer: reads and hashes `count` blocks of `block_size` bytes from
/// `base` on every CPU, and calls `f(first_index, digests)` on the calling thread with the
/// digests of consecutive blocks, in order. Blocks in holes get the digest of a zero block without
/// being read. An error from `f` stops the workers and is returned.
pub(crate) fn stream_layer<S, F, E>(
    src: &S,
    base: u64,
    block_size: usize,
    count: u64,
    hasher: &BlockHasher,
    mut f: F,
) -> Result<(), E>
where
    S: BlockSource + ?Sized,
    F: FnMut(u64, &[u8]) -> Result<(), E>,
    E: From<BuildError>,
{
    let per_piece = (PIECE_BYTES / block_size).max(1);
    let d = hasher.digest_size();
    let zero = hasher.hash(&vec![0u8; block_size]);
    let len = |p: u64| (per_piece as u64).min(count - p * per_piece as u64) as usize;
    let plan = Plan {
        pieces: count.div_ceil(per_piece as u64),
        out_len: per_piece * d,
        depth_per_thread: DEPTH_PER_WORKER,
        stage: "tree hashing",
    };
    run_ordered(
        plan,
        || Scratch {
            buf: AlignedBuf::new(per_piece * block_size),
            has: Vec::with_capacity(per_piece),
        },
        |p, sc: &mut Scratch, out: &mut [u8], clock: &mut Clock| {
            let n = len(p);
            let first = p * per_piece as u64;
            read_blocks(src, base, block_size, first, n, &mut sc.buf, &mut sc.has)?;
            clock.lap_read();
            hash_run(
                hasher,
                block_size,
                &sc.buf,
                &sc.has,
                &zero,
                &mut out[..n * d],
            );
            clock.lap_hash();
            Ok::<(), BuildError>(())
        },
        |p, out| f(p * per_piece as u64, &out[..len(p) * d]),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::HashAlg;
    use std::io;

    /// A source that fails reads at one offset, to check errors arrive in order and stop the rest.
    struct Failing {
        data: Vec<u8>,
        bad_at: u64,
    }

    impl BlockSource for Failing {
        fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
            if (offset..offset + buf.len() as u64).contains(&self.bad_at) {
                return Err(io::Error::other("injected"));
            }
            self.data.read_at(buf, offset)
        }
        fn size(&self) -> u64 {
            self.data.len() as u64
        }
    }

    #[test]
    fn digests_arrive_in_order_and_equal_one_by_one_hashing() {
        let h = BlockHasher::new(HashAlg::Sha256, b"salt", 1);
        for (bs, n) in [(4096usize, 1000u64), (512, 3000), (4096, 1), (65536, 9)] {
            let data: Vec<u8> = (0..bs * n as usize).map(|i| (i * 7 % 251) as u8).collect();
            let mut got = Vec::new();
            let mut next = 0u64;
            stream_layer(&data, 0, bs, n, &h, |first, ds| -> Result<(), BuildError> {
                assert_eq!(first, next);
                next += (ds.len() / 32) as u64;
                got.extend_from_slice(ds);
                Ok(())
            })
            .unwrap();
            assert_eq!(next, n);
            let want: Vec<u8> = data.chunks(bs).flat_map(|b| h.hash(b)).collect();
            assert_eq!(got, want, "bs {bs} n {n}");
        }
    }

    #[test]
    fn a_read_error_is_returned_and_names_its_offset() {
        let h = BlockHasher::new(HashAlg::Sha256, b"", 1);
        let data = vec![1u8; 4096 * 2000];
        let src = Failing {
            data,
            bad_at: 4096 * 1500 + 7,
        };
        let mut seen = 0u64;
        let e = stream_layer(&src, 0, 4096, 2000, &h, |first, ds| {
            seen = first + (ds.len() / 32) as u64;
            Ok::<(), BuildError>(())
        })
        .unwrap_err();
        assert!(matches!(e, BuildError::ReadData { .. }), "{e}");
        assert!(
            seen <= 1500,
            "digests after the bad piece were delivered: {seen}"
        );
    }

    #[test]
    fn an_error_from_the_consumer_stops_the_stream() {
        let h = BlockHasher::new(HashAlg::Sha256, b"", 1);
        let data = vec![3u8; 4096 * 5000];
        let mut calls = 0;
        let r = stream_layer(&data, 0, 4096, 5000, &h, |_, _| {
            calls += 1;
            if calls == 3 {
                Err(BuildError::DataTooSmall { have: 0, need: 1 })
            } else {
                Ok(())
            }
        });
        assert!(matches!(r, Err(BuildError::DataTooSmall { .. })));
        assert_eq!(calls, 3);
    }
}
