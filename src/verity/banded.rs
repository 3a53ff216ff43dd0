//! The tree pass of `format --fec-device`, walked in FEC round order so the parity can be
//! accumulated from the cache ([`crate::verity::fec::ParityStream`]).
//!
//! In file order, consecutive blocks belong to consecutive rounds, so every round's open parity
//! (8 KiB per round at 2 roots, 8 MiB per GiB in all) would be fetched from memory and written
//! back once per block: twice the image's size in memory traffic each way. Here the data is cut
//! into bands of [`BAND_ROWS`] interleaving rows (a row is `rounds` consecutive blocks) and each
//! band into tiles of `T` consecutive rounds. One thread takes one tile of one band: it reads,
//! hashes and absorbs the tile's `T` blocks of each of the band's rows in turn, so the tile's
//! parity (sized to stay in the core's L2 cache beside the read buffer) is fetched once per band
//! instead of once per row. Each read is still `T` contiguous blocks. The digests of a band are
//! put back in file order and handed on when its last tile is done, so the caller sees what
//! [`super::pipeline::stream_layer`] gives.

use super::build::{read_blocks, BuildError};
use super::fec::ParityStream;
use super::hasher::BlockHasher;
use super::ordered::{run_ordered, AlignedBuf, Plan};
use super::pipeline::hash_run;
use super::source::BlockSource;
use super::stats::Clock;

/// Interleaving rows per band: the tile's parity is fetched once per this many rows. The band's
/// digests wait in one buffer (`BAND_ROWS * rounds` digests: 0.5 MiB for 1 GiB at 2 roots).
pub const BAND_ROWS: u64 = 16;

/// Cache budget of one tile: its read buffer plus its open parity.
const TILE_BYTES: usize = 512 << 10;

/// Pieces in flight per thread (each a whole tile of a band).
const DEPTH_PER_WORKER: usize = 2;

/// How the layer is cut: `T` rounds per tile, `tiles` tiles per band.
#[derive(Debug, Clone, Copy)]
struct Cut {
    rounds: u64,
    count: u64,
    tile: u64,
    tiles: u64,
}

impl Cut {
    fn new(parity: &ParityStream, block_size: usize, count: u64) -> Self {
        let l = parity.layout();
        let rounds = l.rounds();
        let per_block = (1 + l.roots as usize) * block_size;
        let tile = ((TILE_BYTES / per_block).max(1) as u64).min(rounds);
        Self {
            rounds,
            count,
            tile,
            tiles: rounds.div_ceil(tile),
        }
    }

    fn bands(&self) -> u64 {
        self.count.div_ceil(self.rounds).div_ceil(BAND_ROWS)
    }

    /// The run of unit `u` in row `jj` of its band: (first block, blocks), or None past the data.
    fn run(&self, u: u64, jj: u64) -> Option<(u64, usize)> {
        let (band, t) = (u / self.tiles, u % self.tiles);
        let row = band * BAND_ROWS + jj;
        let first = row * self.rounds + t * self.tile;
        let len = self.tile.min(self.rounds - t * self.tile);
        (first < self.count).then(|| (first, len.min(self.count - first) as usize))
    }
}

/// Streams the `count` data blocks of `src` (from byte 0) like
/// [`super::pipeline::stream_layer`]: `f(first, digests)` gets the digests of consecutive blocks in
/// file order (a band at a time). Every block is also added to `parity` on the thread that hashed
/// it. `parity`'s layout must cover exactly these `count` blocks of `block_size` bytes.
pub(crate) fn stream_layer_banded<S, F, E>(
    src: &S,
    block_size: usize,
    count: u64,
    hasher: &BlockHasher,
    parity: &ParityStream,
    mut f: F,
) -> Result<(), E>
where
    S: BlockSource + ?Sized,
    F: FnMut(u64, &[u8]) -> Result<(), E>,
    E: From<BuildError>,
{
    let l = parity.layout();
    assert!(
        l.data_blocks == count && l.block_size as usize == block_size,
        "the FEC layout covers other data than the tree"
    );
    let cut = Cut::new(parity, block_size, count);
    let d = hasher.digest_size();
    let zero = hasher.hash(&vec![0u8; block_size]);
    let tile = cut.tile as usize;
    let plan = Plan {
        pieces: cut.bands() * cut.tiles,
        out_len: BAND_ROWS as usize * tile * d,
        depth_per_thread: DEPTH_PER_WORKER,
        stage: "tree hashing + FEC",
    };
    let mut band = vec![0u8; (BAND_ROWS * cut.rounds) as usize * d];
    run_ordered(
        plan,
        || (AlignedBuf::new(tile * block_size), Vec::with_capacity(tile)),
        |u, (buf, has): &mut (AlignedBuf, Vec<bool>), out: &mut [u8], clock: &mut Clock| {
            for jj in 0..BAND_ROWS {
                let Some((first, n)) = cut.run(u, jj) else {
                    break;
                };
                read_blocks(src, 0, block_size, first, n, buf, has)?;
                clock.lap_read();
                let o = jj as usize * tile * d;
                hash_run(hasher, block_size, buf, has, &zero, &mut out[o..o + n * d]);
                parity.absorb_run(first, &buf[..n * block_size], has);
                clock.lap_hash();
            }
            Ok::<(), BuildError>(())
        },
        |u, out| {
            let start = (u / cut.tiles) * BAND_ROWS * cut.rounds;
            for jj in 0..BAND_ROWS {
                let Some((first, n)) = cut.run(u, jj) else {
                    break;
                };
                let at = (first - start) as usize * d;
                let o = jj as usize * tile * d;
                band[at..at + n * d].copy_from_slice(&out[o..o + n * d]);
            }
            if u % cut.tiles == cut.tiles - 1 {
                let n = (BAND_ROWS * cut.rounds).min(count - start) as usize;
                f(start, &band[..n * d])?;
            }
            Ok(())
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::HashAlg;
    use crate::verity::fec::FecLayout;

    /// Digests arrive in file order and equal one-by-one hashing, and the parity equals the round
    /// encoder's, for shapes with one round, a partial last tile, a partial last band and holes.
    #[test]
    fn digests_in_order_and_parity_as_the_round_encoder() {
        let h = BlockHasher::new(HashAlg::Sha256, b"salt", 1);
        for (bs, n, roots) in [
            (4096usize, 3000u64, 2u32),
            (512, 5000, 2),
            (4096, 100, 24),
            (4096, 1, 2),
            (1024, 777, 5),
        ] {
            let mut data: Vec<u8> = (0..bs * n as usize)
                .map(|i| (i * 7 % 251) as u8 ^ (i / bs) as u8)
                .collect();
            if n >= 8 {
                data[bs..bs * (n as usize / 4)].fill(0);
            }
            let hash = vec![0x5au8; 3 * bs];
            let l = FecLayout::new(bs as u32, bs as u32, roots, n, 0, 3, 0).unwrap();
            let parity = ParityStream::with_kernel(&l, crate::sys::simd::gf_mac::best());
            let mut got = Vec::new();
            stream_layer_banded(&data[..], bs, n, &h, &parity, |first, ds| {
                assert_eq!(first, (got.len() / 32) as u64, "out of order");
                got.extend_from_slice(ds);
                Ok::<(), BuildError>(())
            })
            .unwrap();
            let want: Vec<u8> = data.chunks(bs).flat_map(|b| h.hash(b)).collect();
            assert_eq!(got, want, "bs {bs} n {n}");
            let mut streamed = Vec::new();
            parity
                .finish(&data[..], &hash[..], &mut streamed, &|_| ())
                .unwrap();
            let mut rounds = Vec::new();
            crate::verity::fec::encode_parity(&l, &data[..], &hash[..], &mut rounds, &|_| ())
                .unwrap();
            assert_eq!(streamed, rounds, "bs {bs} n {n} roots {roots}");
        }
    }

    /// A source that fails reads touching one offset.
    struct Failing(Vec<u8>, u64);

    impl BlockSource for Failing {
        fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
            if (offset..offset + buf.len() as u64).contains(&self.1) {
                return Err(std::io::Error::other("injected"));
            }
            self.0.read_at(buf, offset)
        }
        fn size(&self) -> u64 {
            self.0.len() as u64
        }
    }

    #[test]
    fn a_read_error_names_its_offset_and_stops_the_pass() {
        let h = BlockHasher::new(HashAlg::Sha256, b"", 1);
        let n = 4000u64;
        let src = Failing(vec![1u8; 4096 * n as usize], 4096 * 2500 + 9);
        let l = FecLayout::new(4096, 4096, 2, n, 0, 1, 0).unwrap();
        let parity = ParityStream::with_kernel(&l, None);
        let mut delivered = 0u64;
        let e = stream_layer_banded(&src, 4096, n, &h, &parity, |first, ds| {
            delivered = first + (ds.len() / 32) as u64;
            Ok::<(), BuildError>(())
        })
        .unwrap_err();
        assert!(
            matches!(e, BuildError::ReadData { offset, .. } if offset <= 4096 * 2500),
            "{e}"
        );
        assert!(delivered <= 2500, "digests past the bad block: {delivered}");
    }
}
