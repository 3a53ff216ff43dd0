//! Where one image's admission spends its time: wall-clock durations of the pipeline's steps
//! (open, dissect, signature, verity, mount, release, measure), in the order they ran, for the
//! boot hook's report (`verity boot --json`) and the merge JSON, and the per-thread CPU clock that
//! `verity::stats` reads. Observability only: nothing decides on these numbers.
//!
//! Layer L0 (`tests/layering.rs`): imports nothing from the crate.

use serde::Serialize;
use std::time::{Duration, Instant};

/// One step and how long it took.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StepTime {
    /// Step name.
    pub step: &'static str,
    /// Wall time in microseconds.
    pub micros: u64,
}

/// The steps of one admission, in order (a step that ran twice is summed).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Steps(pub Vec<StepTime>);

/// CPU time (user + system) the calling thread has used. Here, in the bottom layer next to the
/// wall-clock step timings, rather than in `verity::stats` that reads it: `verity/` does no
/// syscalls itself (`tests/layering.rs`), and a clock read is observability, not I/O.
pub fn thread_cpu() -> Duration {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// `d` in whole microseconds.
pub fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

impl Steps {
    /// Adds `d` to `step` (appended the first time it is seen).
    pub fn add(&mut self, step: &'static str, d: Duration) {
        match self.0.iter_mut().find(|s| s.step == step) {
            Some(s) => s.micros = s.micros.saturating_add(micros(d)),
            None => self.0.push(StepTime {
                step,
                micros: micros(d),
            }),
        }
    }

    /// Runs `f` as `step`.
    pub fn time<T>(&mut self, step: &'static str, f: impl FnOnce() -> T) -> T {
        let t = Instant::now();
        let out = f();
        self.add(step, t.elapsed());
        out
    }

    /// The sum of all steps, in microseconds.
    pub fn total_micros(&self) -> u64 {
        self.0.iter().map(|s| s.micros).sum()
    }

    /// True when nothing was timed.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_keep_their_order_and_sum_repeats() {
        let mut s = Steps::default();
        s.add("open", Duration::from_micros(5));
        s.add("verity", Duration::from_micros(7));
        s.add("open", Duration::from_micros(1));
        assert_eq!(
            s.0.iter().map(|x| (x.step, x.micros)).collect::<Vec<_>>(),
            [("open", 6), ("verity", 7)]
        );
        assert_eq!(s.total_micros(), 13);
        assert_eq!(s.time("mount", || 3), 3);
        assert_eq!(s.0.last().unwrap().step, "mount");
    }
}
