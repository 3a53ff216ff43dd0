//! Every size limit on bytes read from an image, a sidecar or a file-system inside an image, named
//! in one place. Each bounds memory and work for input an attacker may control: a value over its
//! limit is refused with a message naming the file or field, never allocated. Pure constants.
//!
//! Layer L0 (`tests/layering.rs`): imports nothing from the crate.

/// An os-release or extension-release file (real ones are a few hundred bytes).
pub const RELEASE_FILE: usize = 64 << 10;

/// A verity signature partition (systemd refuses larger ones) and a `.roothash.p7s` sidecar.
pub const SIGNATURE: u64 = 4 << 20;

/// A `.roothash` / `.usrhash` sidecar (a hex line for a 512-bit hash is 129 bytes).
pub const ROOTHASH_FILE: u64 = 4096;

/// A GPT partition entry array (entry count x entry size).
pub const GPT_ENTRY_ARRAY: u64 = 1 << 20;

/// The authenticated upper levels of a hash tree (level 1 and above) kept in memory while the
/// data and level 0 stream past: 1/128 of level 0 for SHA-256 and 4 KiB blocks, so 256 KiB for a
/// 4 GiB image; this allows 16 TiB with those parameters.
pub const TREE_UPPER_LEVELS: u64 = 1 << 30;

/// Path components followed when looking a file up inside an image's file system.
pub const FS_PATH_DEPTH: usize = 16;

/// Bytes of one directory read from an image's file system (a directory with thousands of
/// entries still fits; a crafted one cannot make us read the whole partition).
pub const FS_DIRECTORY: u64 = 4 << 20;

/// Entries listed from one directory (systemd's fallback lookup scans extension-release.d).
pub const FS_DIRECTORY_ENTRIES: usize = 65536;

/// Bytes of metadata decompressed while looking one path up (squashfs inode and directory
/// tables are compressed in 8 KiB blocks; erofs decompresses per cluster).
pub const FS_METADATA: u64 = 16 << 20;

/// Blocks (of any size) read from the file system while answering one question: bounds the work a
/// crafted image can cause through loops or long chains.
pub const FS_BLOCK_READS: u64 = 65536;
