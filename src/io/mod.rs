//! The I/O edge: file-backed block sources and sinks, and writing outputs so a failure never leaves
//! a half-written file behind.
//!
//! Layer L6 (`tests/layering.rs`): implements `verity`'s [`crate::verity::BlockSource`] and
//! [`crate::verity::BlockSink`] for files and block devices, which is where `verity`'s reads and
//! writes actually happen; below `sys`, which reads images through it.

pub mod file;
pub mod output;

pub use file::{FileSink, FileSource};
