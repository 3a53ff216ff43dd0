//! # verity: an integrity engine for image-based Linux
//!
//! Trust model: an image is trusted only through a chain that ends in a certificate the host trusts.
//! The root hash of its dm-verity tree is signed (detached PKCS#7 over the lower-case hex root hash);
//! the tree pins every data block to that root; the TPM and the event log record what was admitted.
//!
//! The pipeline every image goes through, in this order, run by [`admit`] and enforced by types
//! (only `image::verify` mints an [`image::Verified`], only `measure::step` a
//! [`measure::step::Measured`], and merging or staging takes `Measured<Verified<_>>`):
//!
//! ```text
//! open(fd) -> dissect -> check signature + policy -> activate integrity -> mount read-only
//!         -> read extension-release + match host -> rollback floors -> measure (PCR + event log)
//!         -> merge / stage nextroot
//! ```
//!
//! Layers, low to high: a module imports only modules of lower layers. `tests/layering.rs` holds
//! this table once and fails on any `crate::` path that goes sideways or up, so the folder names
//! read as the pipeline from the bottom:
//!
//! ```text
//! L0  hex, limits, timing   words, size limits, step timings
//! L1  digest                hash algorithms
//! L2  sys::simd             SIMD SHA-256 and Reed-Solomon kernels: pure compute, under sys/ only
//!                           because unsafe is allowed nowhere else
//! L3  verity                dm-verity format, hash trees, FEC: pure, over BlockSource/BlockSink
//! L4  sign                  PKCS#7 root-hash signatures, trust stores
//! L5  gate                  admission vocabulary: image events, bypasses, measurement records
//! L6  io                    file-backed sources and sinks, atomic outputs
//! L7  sys                   syscalls: mounts, loop devices, device-mapper, memfd seals, keyrings,
//!                           pivot_root; no trust decisions
//! L8  image                 open, dissect, signature + policy, integrity, release: Verified<T>
//! L9  measure               PCRs, event log, TPM: Measured<T>
//! L10 rollback              version floors and the TPM epoch
//! L11 admit                 the per-image pipeline, from open to Measured<Verified<Image>>
//! L12 host                  the host context, resolved once
//! L13 merge                 sysext/confext overlays
//! L14 reboot                soft reboot: stage /run/nextroot, switch into it
//! L15 boot                  the boot hook
//! L16 attest                quotes, Keylime and pcrlock policies
//! L17 cli                   parse arguments, print, exit codes
//! ```
//!
//! Everything about the machine an admission runs on (root, trust store, image policy per class,
//! TPM, event log, integrity mode) is resolved once into a [`host::Host`], from the command line or
//! from `boot.toml`, or filled in by a program that embeds the library; the verbs are library
//! calls on it: [`merge::run::merge`], [`boot::run`], [`reboot::prepare::prepare`].
#![deny(unsafe_code)]

pub mod admit;
pub mod attest;
pub mod boot;
pub mod cli;
pub mod digest;
pub mod gate;
pub mod hex;
pub mod host;
pub mod image;
pub mod io;
pub mod limits;
pub mod measure;
pub mod merge;
pub mod reboot;
pub mod rollback;
pub mod sign;
pub mod sys;
pub mod timing;
pub mod verity;
