//! Syscalls: the mount API, loop devices, device-mapper, memfd seals, keyrings, pivot_root, pidfds.
//! The only place in the crate where `unsafe` may appear, each block with a `// SAFETY:` comment.

#[cfg(feature = "dm")]
pub mod dm;
pub mod keyring;
pub mod loopdev;
pub mod memfd;
pub mod mount;
pub mod pidfd;
#[allow(unsafe_code)]
pub mod pivot;
pub mod rs_avx2;
pub mod sha256_mb;
pub mod simd;
