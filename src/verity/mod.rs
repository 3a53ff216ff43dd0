//! dm-verity: the veritysetup superblock, tree geometry, building and verifying hash trees, the
//! kernel table line. Pure core: everything here works on [`source::BlockSource`] and
//! [`source::BlockSink`] traits, never on files directly.

pub mod authtree;
pub mod build;
pub mod fec;
pub mod geometry;
pub mod hasher;
pub mod source;
pub mod superblock;
pub mod table;
pub mod verify;

pub use geometry::{Geometry, GeometryError, Params};
pub use source::{BlockSink, BlockSource};
pub use superblock::{Superblock, SuperblockError};
