//! Parallel work with in-order results, the engine under tree hashing and FEC encoding: pieces
//! `0..n` are claimed by every thread in turn (the calling thread included), each computes its
//! piece into a buffer from a small ring, and the calling thread hands finished buffers to a
//! consumer strictly in order, between pieces of its own. A thread sleeps only when the ring is
//! full (the consumer is behind) or drained (nothing left to claim and the next result not done),
//! so every core works all the time and memory is a few buffers per thread.
//!
//! Where the time went is recorded per thread in [`crate::verity::stats`] (shown by `--debug`).

use super::stats::{self, Clock};
use std::sync::{Condvar, Mutex, MutexGuard};

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

enum Slot<E> {
    /// An empty output buffer, ready for the piece that maps to this slot.
    Free(Vec<u8>),
    /// A thread is filling it.
    Busy,
    /// The output of a piece, or why it failed.
    Done(Vec<u8>, Result<(), E>),
}

struct Ring<E> {
    /// The next piece a thread may claim.
    next: u64,
    /// Pieces handed to the consumer; piece `p` may be claimed once `p < consumed + depth`.
    consumed: u64,
    slots: Vec<Slot<E>>,
    /// Threads sleeping on the condition variable (no wake-up system call when there are none).
    waiters: usize,
    /// Set when the consumer stops early (error, first bad block) or a thread panicked.
    stop: bool,
}

impl<E> Ring<E> {
    fn slot(&mut self, p: u64) -> &mut Slot<E> {
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

struct Shared<E> {
    ring: Mutex<Ring<E>>,
    changed: Condvar,
}

impl<E> Shared<E> {
    fn lock(&self) -> MutexGuard<'_, Ring<E>> {
        self.ring.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn wait<'a>(&self, mut g: MutexGuard<'a, Ring<E>>) -> MutexGuard<'a, Ring<E>> {
        g.waiters += 1;
        let mut g = self.changed.wait(g).unwrap_or_else(|e| e.into_inner());
        g.waiters -= 1;
        g
    }

    /// Wakes the sleepers after a change made under `g`.
    fn changed(&self, g: MutexGuard<'_, Ring<E>>) {
        let wake = g.waiters > 0;
        drop(g);
        if wake {
            self.changed.notify_all();
        }
    }

    /// Runs a claimed piece and puts its output into the ring.
    fn run<T, W>(&self, work: &W, p: u64, mut out: Vec<u8>, scratch: &mut T, clock: &mut Clock)
    where
        W: Fn(u64, &mut T, &mut [u8], &mut Clock) -> Result<(), E>,
    {
        let res = work(p, scratch, &mut out, clock);
        clock.pieces += 1;
        let mut g = self.lock();
        *g.slot(p) = Slot::Done(out, res);
        self.changed(g);
    }
}

/// Tells every thread to stop when dropped, so a panic on one side (or an early return of the
/// consumer) never leaves the other waiting on the condition variable for ever.
struct StopOnDrop<'a, E>(&'a Shared<E>);

impl<E> Drop for StopOnDrop<'_, E> {
    fn drop(&mut self) {
        self.0.lock().stop = true;
        self.0.changed.notify_all();
    }
}

/// How to run one job.
pub(crate) struct Plan {
    /// Pieces `0..pieces`.
    pub pieces: u64,
    /// Bytes of output per piece (the buffer handed to `work` and then to `consume`).
    pub out_len: usize,
    /// Buffers in flight per thread.
    pub depth_per_thread: usize,
    /// Names the threads' records in [`stats`].
    pub stage: &'static str,
}

/// Runs `work(p, scratch, out, clock)` for every piece on up to [`threads`] threads (each with
/// its own `scratch()`), and `consume(p, out)` for every piece in order on the calling thread.
/// The first error (from a piece, in order, or from `consume`) stops everything and is returned;
/// pieces after it may have been computed but are not consumed.
pub(crate) fn run_ordered<T, S, W, C, WE, E>(
    plan: Plan,
    scratch: S,
    work: W,
    mut consume: C,
) -> Result<(), E>
where
    S: Fn() -> T + Sync,
    W: Fn(u64, &mut T, &mut [u8], &mut Clock) -> Result<(), WE> + Sync,
    C: FnMut(u64, &[u8]) -> Result<(), E>,
    WE: Send,
    E: From<WE>,
{
    let pieces = plan.pieces;
    if pieces == 0 {
        return Ok(());
    }
    let threads = (threads() as u64).min(pieces).max(1) as usize;
    let depth = plan.depth_per_thread.max(1) * threads;
    let sh: Shared<WE> = Shared {
        ring: Mutex::new(Ring {
            next: 0,
            consumed: 0,
            slots: (0..depth)
                .map(|_| Slot::Free(vec![0u8; plan.out_len]))
                .collect(),
            waiters: 0,
            stop: false,
        }),
        changed: Condvar::new(),
    };
    let worker = || {
        let _guard = StopOnDrop(&sh);
        let mut clock = Clock::start();
        let mut sc = scratch();
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
                        stats::record(plan.stage, clock);
                        return;
                    }
                    g = sh.wait(g);
                }
            };
            clock.lap_wait();
            sh.run(&work, p, out, &mut sc, &mut clock);
        }
    };
    std::thread::scope(|scope| {
        for _ in 1..threads {
            scope.spawn(worker);
        }
        let _guard = StopOnDrop(&sh);
        let mut clock = Clock::start();
        let mut sc = scratch();
        let mut p = 0;
        while p < pieces {
            let mut g = sh.lock();
            if let Slot::Done(..) = g.slot(p) {
                let Slot::Done(out, res) = std::mem::replace(g.slot(p), Slot::Busy) else {
                    unreachable!("checked above")
                };
                drop(g);
                clock.lap_wait();
                let r = res.map_err(E::from).and_then(|()| consume(p, &out));
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
                sh.run(&work, q, out, &mut sc, &mut clock);
            } else if g.stop {
                // A worker panicked; the scope re-raises its panic on return.
                return Ok(());
            } else {
                drop(sh.wait(g));
            }
        }
        stats::record(plan.stage, clock);
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(pieces: u64) -> Plan {
        Plan {
            pieces,
            out_len: 8,
            depth_per_thread: 2,
            stage: "test",
        }
    }

    #[test]
    fn results_arrive_in_order_whatever_the_finishing_order() {
        let mut seen = Vec::new();
        run_ordered(
            plan(300),
            || (),
            |p, _, out, _| {
                // Uneven work so pieces finish out of order.
                if p % 7 == 0 {
                    std::thread::sleep(std::time::Duration::from_micros(200));
                }
                out.copy_from_slice(&p.to_le_bytes());
                Ok::<(), ()>(())
            },
            |p, out| {
                assert_eq!(out, p.to_le_bytes());
                seen.push(p);
                Ok::<(), ()>(())
            },
        )
        .unwrap();
        assert_eq!(seen, (0..300).collect::<Vec<_>>());
    }

    #[test]
    fn the_first_error_in_order_wins_and_nothing_after_it_is_consumed() {
        let mut last = None;
        let r = run_ordered(
            plan(200),
            || (),
            |p, _, _, _| if p == 120 || p == 150 { Err(p) } else { Ok(()) },
            |p, _| {
                last = Some(p);
                Ok::<(), u64>(())
            },
        );
        assert_eq!(r, Err(120));
        assert_eq!(last, Some(119));
    }

    #[test]
    fn an_error_from_the_consumer_stops_the_workers() {
        let claimed = std::sync::atomic::AtomicU64::new(0);
        let r = run_ordered(
            plan(100_000),
            || (),
            |_, _, _, _| {
                claimed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Ok::<(), &str>(())
            },
            |p, _| if p == 10 { Err("stop") } else { Ok(()) },
        );
        assert_eq!(r, Err("stop"));
        // At most a ring's worth of pieces past the failing one (and one per thread) was computed.
        let t = threads() as u64;
        assert!(claimed.into_inner() <= 11 + 3 * t);
    }

    #[test]
    fn aligned_buffers_start_on_a_page() {
        for len in [1usize, 4096, 100_000] {
            let b = AlignedBuf::new(len);
            assert_eq!(b.as_ptr() as usize % 4096, 0);
            assert_eq!(b.len(), len);
            assert!(b.iter().all(|&x| x == 0));
        }
    }
}
