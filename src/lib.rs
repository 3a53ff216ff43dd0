//! # verity: an integrity engine for image-based Linux
//!
//! Trust model: an image is trusted only through a chain that ends in a certificate the host trusts.
//! The root hash of its dm-verity tree is signed (detached PKCS#7 over the lower-case hex root hash);
//! the tree pins every data block to that root; the TPM and the event log record what was admitted.
//!
//! The pipeline every image goes through, in this order and enforced by types ([`gate`]):
//!
//! ```text
//! open(fd) -> dissect -> check signature + policy -> activate integrity -> mount read-only
//!         -> read extension-release + match host -> measure (PCR + event log) -> merge / stage nextroot
//! ```
//!
//! Layers: the pure core ([`verity`] formats and tree math, [`digest`], FEC, policy, release matching,
//! planning) works on byte slices and small traits; [`io`] holds file-backed sources; `sys` holds
//! the syscalls (mounts, loop devices, device-mapper, memfd seals); [`cli`] parses arguments and prints.
//!
//! Everything about the machine an admission runs on (root, trust store, image policy per class,
//! TPM, event log, integrity mode) is resolved once into a [`host::Host`], from the command line or
//! from `boot.toml`, or filled in by a program that embeds the library; the verbs are library
//! calls on it: [`merge::run::merge`], [`boot::run`], [`reboot::prepare::prepare`].
#![deny(unsafe_code)]

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
