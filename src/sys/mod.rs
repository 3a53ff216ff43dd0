//! Syscalls: the mount API, loop devices, device-mapper, memfd seals, keyrings, pivot_root.
//! The only place in the crate where `unsafe` may appear, each block with a `// SAFETY:` comment.
//!
//! Layer L7 (`tests/layering.rs`): above `verity`, `gate` and `io`, below `image`. It implements
//! traits that the layers needing a syscall define (a device source for `verity`'s
//! `BlockSource`, a sealed memfd for `image`) and takes no trust decisions. [`simd`] is the
//! exception that lives here only for its `unsafe`: pure computation, its own bottom node (L2).

#[cfg(feature = "dm")]
pub mod dm;
pub mod keyring;
pub mod loopdev;
pub mod memfd;
pub mod mount;
#[allow(unsafe_code)]
pub mod pivot;
pub mod simd;
