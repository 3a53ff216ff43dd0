//! Progress bars: only on a terminal, never with `--json`.

use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;

/// A bar over `total` bytes, or a hidden one when stderr is not a terminal or JSON was asked for.
pub fn bytes_bar(total: u64, json: bool, what: &str) -> ProgressBar {
    if json || !std::io::stderr().is_terminal() || total < (64 << 20) {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(total);
    pb.set_style(
        ProgressStyle::with_template(
            "{msg} [{bar:40}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    pb.set_message(what.to_string());
    pb
}

/// The library's [`Progress`](crate::verity::format::Progress) drawn as one bar per stage
/// (hidden as [`bytes_bar`] decides), warnings printed as `verity: warning: ...`.
pub struct Bars {
    json: bool,
    bar: std::cell::RefCell<ProgressBar>,
}

impl Bars {
    /// Bars for a command run with or without `--json`.
    pub fn new(json: bool) -> Self {
        Bars {
            json,
            bar: std::cell::RefCell::new(ProgressBar::hidden()),
        }
    }
}

impl crate::verity::format::Progress for Bars {
    fn begin(&self, what: &'static str, total: u64) {
        *self.bar.borrow_mut() = bytes_bar(total, self.json, what);
    }
    fn set(&self, done: u64) {
        self.bar.borrow().set_position(done);
    }
    fn end(&self) {
        self.bar.borrow().finish_and_clear();
    }
    fn warn(&self, msg: &str) {
        eprintln!("verity: warning: {msg}");
    }
}
