//! dm-verity: the veritysetup superblock, tree geometry, building and verifying hash trees, the
//! kernel table line and whether an existing device may be reused for it. Pure core: everything here works on [`source::BlockSource`] and
//! [`source::BlockSink`] traits, never on files directly.

pub mod authtree;
pub mod build;
pub mod fec;
pub mod geometry;
pub mod hasher;
pub(crate) mod ordered;
pub(crate) mod pipeline;
pub mod reuse;
pub mod source;
pub mod stats;
pub mod superblock;
pub mod table;
pub mod verify;

pub use geometry::{Geometry, GeometryError, Params};
pub use source::{BlockSink, BlockSource};
pub use superblock::{Superblock, SuperblockError};
