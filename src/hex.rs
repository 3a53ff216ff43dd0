//! Lower-case hex encoding and strict decoding. Root hashes are signed as lower-case hex text, so
//! every place that prints one goes through [`encode`].
//!
//! Layer L0 (`tests/layering.rs`): imports nothing from the crate.

use thiserror::Error;

/// Why a hex string was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum HexError {
    #[error("hex string has odd length {0}")]
    OddLength(usize),
    #[error("invalid hex character {ch:?} at position {pos}")]
    BadChar { pos: usize, ch: char },
}

/// Encodes bytes as lower-case hex.
pub fn encode(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

/// Decodes hex (either case) into bytes.
pub fn decode(s: &str) -> Result<Vec<u8>, HexError> {
    let b = s.as_bytes();
    if !b.len().is_multiple_of(2) {
        return Err(HexError::OddLength(b.len()));
    }
    let nib = |pos: usize| -> Result<u8, HexError> {
        let c = b[pos];
        match c {
            b'0'..=b'9' => Ok(c - b'0'),
            b'a'..=b'f' => Ok(c - b'a' + 10),
            b'A'..=b'F' => Ok(c - b'A' + 10),
            _ => Err(HexError::BadChar {
                pos,
                ch: s[pos..].chars().next().unwrap_or('?'),
            }),
        }
    };
    (0..b.len() / 2)
        .map(|i| Ok(nib(2 * i)? << 4 | nib(2 * i + 1)?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_errors() {
        assert_eq!(encode(&[0x01, 0xab, 0xff]), "01abff");
        assert_eq!(decode("01ABff").unwrap(), vec![0x01, 0xab, 0xff]);
        assert_eq!(decode("abc"), Err(HexError::OddLength(3)));
        assert_eq!(decode("0g"), Err(HexError::BadChar { pos: 1, ch: 'g' }));
    }
}
