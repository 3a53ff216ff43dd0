//! Where the time of the hot loops goes, per thread: reading, computing (hashing or parity),
//! waiting for other threads, and handing results on. Every worker keeps a [`Clock`]; when
//! collection is switched on (the CLI's `--debug`) each thread's totals are kept for printing.
//! Reading the clock costs a few tens of nanoseconds per piece of 256 KiB, so it is always on.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

static ENABLED: AtomicBool = AtomicBool::new(false);
static RECORDS: Mutex<Vec<Record>> = Mutex::new(Vec::new());

/// Lap times of one thread.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    last: Instant,
    started: Instant,
    cpu_at_start: Duration,
    /// Time in reads (page-cache copies or device I/O).
    pub read: Duration,
    /// Time computing (hashing, parity).
    pub work: Duration,
    /// Time waiting for another thread.
    pub wait: Duration,
    /// Time spent by the consumer on the results (writing hash blocks, comparing digests).
    pub consume: Duration,
    /// Units of work done (pieces, runs of rounds).
    pub pieces: u64,
}

impl Clock {
    /// A clock whose laps start now.
    pub fn start() -> Self {
        let now = Instant::now();
        Self {
            last: now,
            started: now,
            cpu_at_start: crate::timing::thread_cpu(),
            read: Duration::ZERO,
            work: Duration::ZERO,
            wait: Duration::ZERO,
            consume: Duration::ZERO,
            pieces: 0,
        }
    }

    fn lap(&mut self) -> Duration {
        let now = Instant::now();
        let d = now - self.last;
        self.last = now;
        d
    }

    /// The time since the last lap was reading.
    pub fn lap_read(&mut self) {
        let d = self.lap();
        self.read += d;
    }

    /// The time since the last lap was computing.
    pub fn lap_hash(&mut self) {
        let d = self.lap();
        self.work += d;
    }

    /// The time since the last lap was waiting.
    pub fn lap_wait(&mut self) {
        let d = self.lap();
        self.wait += d;
    }

    /// The time since the last lap was spent consuming results.
    pub fn lap_consume(&mut self) {
        let d = self.lap();
        self.consume += d;
    }
}

/// The totals of one thread for one stage.
#[derive(Debug, Clone)]
pub struct Record {
    /// What the thread did ("hash worker", "consumer", "fec worker", ...).
    pub stage: &'static str,
    /// Its lap totals.
    pub clock: Clock,
    /// Wall time from the clock's start to the record.
    pub wall: Duration,
    /// CPU time (user + system) of the thread from the clock's start to the record.
    pub cpu: Duration,
}

/// Starts keeping records (for `--debug`).
pub fn enable() {
    ENABLED.store(true, Ordering::Relaxed);
}

/// Keeps the totals of the calling thread for `stage`, if collection is on.
pub fn record(stage: &'static str, clock: Clock) {
    if !ENABLED.load(Ordering::Relaxed) {
        return;
    }
    let rec = Record {
        stage,
        wall: clock.started.elapsed(),
        cpu: crate::timing::thread_cpu().saturating_sub(clock.cpu_at_start),
        clock,
    };
    RECORDS.lock().unwrap_or_else(|e| e.into_inner()).push(rec);
}

/// The records kept so far, removed.
pub fn take() -> Vec<Record> {
    std::mem::take(&mut *RECORDS.lock().unwrap_or_else(|e| e.into_inner()))
}

/// Sums the records by stage, in first-seen order: (stage, threads, summed clock, wall, cpu).
pub fn summary(records: &[Record]) -> Vec<(&'static str, usize, Clock, Duration, Duration)> {
    let mut out: Vec<(&'static str, usize, Clock, Duration, Duration)> = Vec::new();
    for r in records {
        match out.iter_mut().find(|s| s.0 == r.stage) {
            Some(s) => {
                s.1 += 1;
                s.2.read += r.clock.read;
                s.2.work += r.clock.work;
                s.2.wait += r.clock.wait;
                s.2.consume += r.clock.consume;
                s.2.pieces += r.clock.pieces;
                s.3 += r.wall;
                s.4 += r.cpu;
            }
            None => out.push((r.stage, 1, r.clock, r.wall, r.cpu)),
        }
    }
    out
}
