//! Forward error correction for dm-verity: Reed-Solomon parity compatible with the kernel and
//! veritysetup (RS(255, 255 - roots) over GF(2^8)/0x11d, interleaved across the covered blocks),
//! a fast parallel encoder, an allocation-free decoder, and correction of bad blocks from that
//! parity.
//!
//! Pure core: sources and sinks are [`BlockSource`](super::BlockSource)/[`BlockSink`](super::BlockSink).

pub mod correct;
pub mod decode;
pub mod encode;
pub mod gf;
pub mod layout;
pub mod repair;
pub mod round;
pub mod rs;
pub mod stream;
#[cfg(test)]
mod tests;

pub use correct::{correct_image, read_verified_block, Correction, FecOutcome};
pub use encode::encode_parity;
pub use layout::FecLayout;
pub use round::{decode_block, decode_round, RoundDecode};
pub use rs::{Code, DecodeError};
pub use stream::ParityStream;

use std::io;

/// A parameter that veritysetup or the kernel would refuse for FEC.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FecError {
    #[error("FEC roots {0} out of range: 2 to 24 parity bytes per codeword are supported")]
    Roots(u32),
    #[error("block sizes must match for FEC (data {data}, hash {hash})")]
    BlockSizes { data: u32, hash: u32 },
    #[error("FEC offset {0} is not a multiple of 512")]
    OffsetAlign(u64),
    #[error("FEC covers no blocks")]
    Empty,
    #[error(
        "hash area (ends at byte {hash_end}) overlaps with FEC area (starts at byte {fec_offset})"
    )]
    Overlap { hash_end: u64, fec_offset: u64 },
}

/// A failure to read or write while encoding or correcting.
#[derive(Debug, thiserror::Error)]
pub enum FecIoError {
    #[error("reading {what} at byte {offset}: {source}")]
    Read {
        what: &'static str,
        offset: u64,
        source: io::Error,
    },
    #[error("writing parity at byte {offset}: {source}")]
    Write { offset: u64, source: io::Error },
    #[error(transparent)]
    Verify(#[from] super::verify::VerifyError),
}
