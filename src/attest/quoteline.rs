//! Keylime's quote line (pure core): `r<base64 TPMS_ATTEST>:<base64 TPMT_SIGNATURE>:<base64 PCR
//! values>`, the form its agents return and its verifier's `/verify/evidence` takes. Only the
//! raw (`r`) form exists here; the old compressed (`c`) form is refused.

use crate::image::sigpart::{base64_decode, base64_encode};
use thiserror::Error;

/// The longest line accepted (a quote of every PCR in four banks is far below this).
pub const MAX_LINE: usize = 64 * 1024;

/// The three parts of a quote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuoteParts {
    /// Marshalled TPMS_ATTEST.
    pub attest: Vec<u8>,
    /// Marshalled TPMT_SIGNATURE.
    pub signature: Vec<u8>,
    /// PCR values, tpm2-tools serialized form.
    pub pcrs: Vec<u8>,
}

/// Why a quote line was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum QuoteLineError {
    #[error("the quote line is {0} bytes; at most 64 KiB is read")]
    TooLong(usize),
    #[error("the quote line does not start with 'r' (only Keylime's raw quote form is supported)")]
    NotRaw,
    #[error("the quote line has {0} ':'-separated parts; it needs 3 (attest, signature, PCRs)")]
    Parts(usize),
    #[error("quote line part {part} ({what}) is not strict base64")]
    Base64 { part: usize, what: &'static str },
}

const NAMES: [&str; 3] = ["TPMS_ATTEST", "TPMT_SIGNATURE", "PCR values"];

impl QuoteParts {
    /// The line (no newline).
    pub fn to_line(&self) -> String {
        format!(
            "r{}:{}:{}",
            base64_encode(&self.attest),
            base64_encode(&self.signature),
            base64_encode(&self.pcrs)
        )
    }

    /// Parses a line; one trailing newline is allowed, other whitespace is not.
    pub fn parse(line: &str) -> Result<Self, QuoteLineError> {
        if line.len() > MAX_LINE {
            return Err(QuoteLineError::TooLong(line.len()));
        }
        let line = line.strip_suffix('\n').unwrap_or(line);
        let body = line.strip_prefix('r').ok_or(QuoteLineError::NotRaw)?;
        let parts: Vec<&str> = body.split(':').collect();
        if parts.len() != 3 {
            return Err(QuoteLineError::Parts(parts.len()));
        }
        let mut out = Vec::with_capacity(3);
        for (i, p) in parts.iter().enumerate() {
            let bad = QuoteLineError::Base64 {
                part: i + 1,
                what: NAMES[i],
            };
            // The shared decoder skips whitespace (for PEM); a quote line has none.
            if p.is_empty() || p.bytes().any(|b| b.is_ascii_whitespace()) {
                return Err(bad);
            }
            let b = base64_decode(p).ok_or(bad.clone())?;
            // Canonical only: re-encoding gives the same text, so one quote has one line.
            if base64_encode(&b) != *p {
                return Err(bad);
            }
            out.push(b);
        }
        let pcrs = out.pop().expect("3 parts");
        let signature = out.pop().expect("3 parts");
        let attest = out.pop().expect("3 parts");
        Ok(Self {
            attest,
            signature,
            pcrs,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_round_trips_and_refuses_variants() {
        let q = QuoteParts {
            attest: vec![0xff, 0x54, 0x43, 0x47, 1],
            signature: vec![0, 0x14, 0, 0x0b],
            pcrs: vec![1, 0, 0, 0],
        };
        let l = q.to_line();
        assert_eq!(l, "r/1RDRwE=:ABQACw==:AQAAAA==");
        assert_eq!(QuoteParts::parse(&l).unwrap(), q);
        assert_eq!(QuoteParts::parse(&format!("{l}\n")).unwrap(), q);
        for (bad, want) in [
            ("c/1RDRwE=:ABQACw==:AQAAAA==", QuoteLineError::NotRaw),
            ("r/1RDRwE=:ABQACw==", QuoteLineError::Parts(2)),
            ("r/1RDRwE=:ABQACw==:AQAAAA==:x", QuoteLineError::Parts(4)),
        ] {
            assert_eq!(QuoteParts::parse(bad).unwrap_err(), want, "{bad}");
        }
        for bad in [
            "r/1RDRwE=:ABQ ACw==:AQAAAA==",
            "r/1RDRwE=::AQAAAA==",
            "r/1RDRwE=:ABQACw==:AQAAAA=",
            "r/1RDRwE=:ABQACx==:AQAAAA==",
            "r/1RDRwE=:AB*ACw==:AQAAAA==",
        ] {
            assert!(
                matches!(QuoteParts::parse(bad), Err(QuoteLineError::Base64 { .. })),
                "{bad}"
            );
        }
    }
}
