//! The I/O edge: file-backed block sources and sinks, and writing outputs so a failure never leaves
//! a half-written file behind.

pub mod file;
pub mod output;

pub use file::{FileSink, FileSource};
