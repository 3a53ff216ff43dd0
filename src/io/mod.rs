//! The I/O edge: file-backed block sources and sinks, writing outputs so a failure never leaves
//! a half-written file behind, and the file side of `format` ([`mod@format`]) and `repair`
//! ([`mod@repair`]) whose planning and bytes come from `verity`.
//!
//! Layer L6 (`tests/layering.rs`): implements `verity`'s [`crate::verity::BlockSource`] and
//! [`crate::verity::BlockSink`] for files and block devices, which is where `verity`'s reads and
//! writes actually happen; below `sys`, which reads images through it.

pub mod copy;
pub mod file;
pub mod format;
pub mod output;
pub mod repair;

pub use file::{FileSink, FileSource};
