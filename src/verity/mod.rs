//! dm-verity: the veritysetup superblock, tree geometry, building and verifying hash trees, the
//! kernel table line and whether an existing device may be reused for it. Everything here works
//! on the [`source::BlockSource`] and [`source::BlockSink`] traits, never on files directly.
//!
//! Layer L3 (`tests/layering.rs`): pure compute. It imports only `digest`, `hex`, `limits`,
//! `timing` and the SIMD kernels of [`crate::sys::simd`], never the rest of `sys`, `io` or `cli`,
//! and does no file I/O or syscall itself (the layering test also refuses `std::fs`, `File`,
//! `libc` and `rustix` here). It defines the traits it reads and writes through
//! ([`source::BlockSource`], [`source::BlockSink`]); the file and device implementations are
//! `crate::io::FileSource` / `crate::io::FileSink` and the sealed memfd of `crate::sys::memfd`.
//! FEC ([`fec`]) is the Reed-Solomon code of dm-verity's forward error correction, hand-written
//! because its interleaving and layout are dm-verity's own.

pub mod authtree;
pub(crate) mod banded;
pub mod build;
pub mod fec;
pub mod format;
pub mod geometry;
pub mod hasher;
pub(crate) mod ordered;
pub(crate) mod pipeline;
pub mod reuse;
pub mod roothash;
pub mod source;
pub mod stats;
pub mod superblock;
pub mod table;
pub mod verify;

pub use geometry::{Geometry, GeometryError, Params};
pub use roothash::RootHash;
pub use source::{BlockSink, BlockSource};
pub use superblock::{Superblock, SuperblockError};
