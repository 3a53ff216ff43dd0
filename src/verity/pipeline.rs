//! The read-and-hash pipeline behind tree building and verification. A layer is cut into pieces
//! small enough to stay in a core's L2 cache (256 KiB); every worker thread claims the next piece,
//! reads it into its own buffer and hashes it while it is still in cache, so the page-cache copy
//! and the hashing touch memory once and every core works all the time (no barrier between a read
//! phase and a hash phase). The calling thread is one of the workers; between pieces it takes the
//! finished digests, in order, from a small ring and hands them on (to the hash-block cascade or
//! the comparison with the tree), so memory stays a few pieces per thread whatever the image
//! size, and a thread sleeps only when the ring is full or drained.
//!
//! Where the time went is recorded per thread in [`crate::verity::stats`] (shown by `--debug`).

use super::build::{read_blocks, BuildError};
use super::hasher::BlockHasher;
use super::source::BlockSource;
use super::stats::{self, Clock};
use std::sync::{Condvar, Mutex, MutexGuard};

/// Bytes read and hashed per piece: twice this (the piece and its copy in flight) fits the 512 KiB
/// L2 of the CI machine with room for the hash kernel's working set.
pub const PIECE_BYTES: usize = 256 << 10;

/// Pieces in flight per thread: the ring lets the workers run ahead while the calling thread is
/// hashing a piece of its own or writing hash blocks, without unbounded memory.
const DEPTH_PER_WORKER: usize = 4;

/// A zeroed byte buffer whose start is page-aligned. Reads from the page cache into a buffer that
/// starts 16 bytes into a page (where the allocator puts large blocks) run 3-4 times slower on
/// the AMD EPYC (Zen 3) CI machine than into an aligned one: the kernel's `rep movsb` copy is slow
/// for that source/destination offset. 1 GiB of 256 KiB preads took 1.3-1.5 s at offset 16 and
/// 0.3-0.4 s at offsets 0, 32, 64 or 4080.
pub(crate) struct AlignedBuf {
    v: Vec<u8>,
    off: usize,
    len: usize,
}

impl AlignedBuf {
    /// `len` zero bytes starting on a 4 KiB boundary.
    pub(crate) fn new(len: usize) -> Self {
        let v = vec![0u8; len + 4096];
        let off = v.as_ptr().align_offset(4096);
        Self { v, off, len }
    }
}

impl std::ops::Deref for AlignedBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.v[self.off..self.off + self.len]
    }
}

impl std::ops::DerefMut for AlignedBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.v[self.off..self.off + self.len]
    }
}

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

/// Worker threads: `RAYON_NUM_THREADS` when set (as for the rest of the crate's parallel code),
/// else the CPUs this process may run on. Not the rayon pool itself: its idle threads spin with
/// `sched_yield` for a while after each use, which here only steals time from the workers.
pub(crate) fn threads() -> usize {
    std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

enum Slot {
    /// An empty digest buffer, ready for the piece that maps to this slot.
    Free(Vec<u8>),
    /// A thread is filling it.
    Busy,
    /// Digests of a piece (or why it could not be read).
    Done(Vec<u8>, Result<(), BuildError>),
}

struct Ring {
    /// The next piece a thread may claim.
    next: u64,
    /// Pieces handed to the consumer; piece `p` may be claimed once `p < consumed + depth`.
    consumed: u64,
    slots: Vec<Slot>,
    /// Threads sleeping on the condition variable (no wake-up system call when there are none).
    waiters: usize,
    /// Set when the consumer stops early (error, first bad block) or a thread panicked.
    stop: bool,
}

impl Ring {
    fn slot(&mut self, p: u64) -> &mut Slot {
        let n = self.slots.len() as u64;
        &mut self.slots[(p % n) as usize]
    }

    /// Claims the next piece if the ring has room for it.
    fn claim(&mut self, pieces: u64) -> Option<(u64, Vec<u8>)> {
        let p = self.next;
        if self.stop || p >= pieces || p >= self.consumed + self.slots.len() as u64 {
            return None;
        }
        self.next += 1;
        match std::mem::replace(self.slot(p), Slot::Busy) {
            Slot::Free(v) => Some((p, v)),
            _ => unreachable!("a slot is free once the piece a ring before it is consumed"),
        }
    }
}

struct Shared {
    ring: Mutex<Ring>,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Ring> {
        self.ring.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn wait<'a>(&self, mut g: MutexGuard<'a, Ring>) -> MutexGuard<'a, Ring> {
        g.waiters += 1;
        let mut g = self.changed.wait(g).unwrap_or_else(|e| e.into_inner());
        g.waiters -= 1;
        g
    }

    /// Wakes the sleepers after a change made under `g`.
    fn changed(&self, g: MutexGuard<'_, Ring>) {
        let wake = g.waiters > 0;
        drop(g);
        if wake {
            self.changed.notify_all();
        }
    }
}

/// Tells every thread to stop when dropped, so a panic on one side (or an early return of the
/// consumer) never leaves the other waiting on the condition variable for ever.
struct StopOnDrop<'a>(&'a Shared);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.lock().stop = true;
        self.0.changed.notify_all();
    }
}

/// The fixed parameters of one layer.
struct Job<'a, S: ?Sized> {
    src: &'a S,
    base: u64,
    block_size: usize,
    count: u64,
    per_piece: usize,
    hasher: &'a BlockHasher,
    zero: Vec<u8>,
}

/// A thread's own read buffer.
struct Scratch {
    buf: AlignedBuf,
    has: Vec<bool>,
}

impl<S: BlockSource + ?Sized> Job<'_, S> {
    fn pieces(&self) -> u64 {
        self.count.div_ceil(self.per_piece as u64)
    }

    /// Blocks in piece `p`.
    fn len(&self, p: u64) -> usize {
        let first = p * self.per_piece as u64;
        (self.per_piece as u64).min(self.count - first) as usize
    }

    fn scratch(&self) -> Scratch {
        Scratch {
            buf: AlignedBuf::new(self.per_piece * self.block_size),
            has: Vec::with_capacity(self.per_piece),
        }
    }

    /// Reads and hashes piece `p` into `out`.
    fn run(
        &self,
        p: u64,
        sc: &mut Scratch,
        out: &mut [u8],
        clock: &mut Clock,
    ) -> Result<(), BuildError> {
        let n = self.len(p);
        let first = p * self.per_piece as u64;
        read_blocks(
            self.src,
            self.base,
            self.block_size,
            first,
            n,
            &mut sc.buf,
            &mut sc.has,
        )?;
        clock.lap_read();
        let d = self.hasher.digest_size();
        hash_run(
            self.hasher,
            self.block_size,
            &sc.buf,
            &sc.has,
            &self.zero,
            &mut out[..n * d],
        );
        clock.lap_hash();
        clock.pieces += 1;
        Ok(())
    }

    /// Runs a claimed piece and puts its digests into the ring.
    fn run_claimed(
        &self,
        sh: &Shared,
        p: u64,
        mut out: Vec<u8>,
        sc: &mut Scratch,
        clock: &mut Clock,
    ) {
        let res = self.run(p, sc, &mut out, clock);
        let mut g = sh.lock();
        *g.slot(p) = Slot::Done(out, res);
        sh.changed(g);
    }

    fn worker(&self, sh: &Shared) {
        let _guard = StopOnDrop(sh);
        let mut clock = Clock::start();
        let mut sc = self.scratch();
        let pieces = self.pieces();
        loop {
            let (p, out) = {
                let mut g = sh.lock();
                loop {
                    if let Some(c) = g.claim(pieces) {
                        break c;
                    }
                    if g.stop || g.next >= pieces {
                        drop(g);
                        clock.lap_wait();
                        stats::record("hash worker", clock);
                        return;
                    }
                    g = sh.wait(g);
                }
            };
            clock.lap_wait();
            self.run_claimed(sh, p, out, &mut sc, &mut clock);
        }
    }
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
    if count == 0 {
        return Ok(());
    }
    let job = Job {
        src,
        base,
        block_size,
        count,
        per_piece: (PIECE_BYTES / block_size).max(1),
        hasher,
        zero: hasher.hash(&vec![0u8; block_size]),
    };
    let d = hasher.digest_size();
    let pieces = job.pieces();
    let threads = (threads() as u64).min(pieces) as usize;
    let depth = DEPTH_PER_WORKER * threads;
    let sh = Shared {
        ring: Mutex::new(Ring {
            next: 0,
            consumed: 0,
            slots: (0..depth)
                .map(|_| Slot::Free(vec![0u8; job.per_piece * d]))
                .collect(),
            waiters: 0,
            stop: false,
        }),
        changed: Condvar::new(),
    };
    std::thread::scope(|scope| {
        // The calling thread hashes too, between handing finished pieces to `f`.
        for _ in 1..threads {
            scope.spawn(|| job.worker(&sh));
        }
        let _guard = StopOnDrop(&sh);
        let mut clock = Clock::start();
        let mut sc = job.scratch();
        let mut p = 0;
        while p < pieces {
            let mut g = sh.lock();
            if let Slot::Done(..) = g.slot(p) {
                let Slot::Done(out, res) = std::mem::replace(g.slot(p), Slot::Busy) else {
                    unreachable!("checked above")
                };
                drop(g);
                clock.lap_wait();
                let r = res
                    .map_err(E::from)
                    .and_then(|()| f(p * job.per_piece as u64, &out[..job.len(p) * d]));
                clock.lap_consume();
                let mut g = sh.lock();
                *g.slot(p) = Slot::Free(out);
                g.consumed += 1;
                sh.changed(g);
                r?;
                p += 1;
            } else if let Some((q, out)) = g.claim(pieces) {
                drop(g);
                clock.lap_wait();
                job.run_claimed(&sh, q, out, &mut sc, &mut clock);
            } else if g.stop {
                // A worker panicked; the scope re-raises its panic on return.
                return Ok(());
            } else {
                drop(sh.wait(g));
            }
        }
        stats::record("hash caller", clock);
        Ok(())
    })
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
