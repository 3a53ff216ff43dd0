//! [`RootHash`]: the top digest of a verity tree, the value signatures cover and the kernel table
//! names, as one type instead of a `Vec<u8>` here and a hex `String` there. Pure.

use std::fmt;

/// A verity root hash (the digest of the top hash block); shown and parsed as lower-case hex, the
/// form signatures cover (`<hex>` without a newline) and the kernel table line carries.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct RootHash(Vec<u8>);

impl RootHash {
    /// Wraps a digest.
    pub fn new(bytes: Vec<u8>) -> Self {
        RootHash(bytes)
    }

    /// Parses hex (either case); `None` if it is not hex or empty.
    pub fn from_hex(s: &str) -> Option<Self> {
        let b = crate::hex::decode(s).ok()?;
        (!b.is_empty()).then_some(RootHash(b))
    }

    /// The digest bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Lower-case hex.
    pub fn to_hex(&self) -> String {
        crate::hex::encode(&self.0)
    }
}

impl fmt::Display for RootHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for RootHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RootHash({})", self.to_hex())
    }
}

impl AsRef<[u8]> for RootHash {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip() {
        let r = RootHash::from_hex("00AbFF").unwrap();
        assert_eq!(r.as_bytes(), &[0x00, 0xab, 0xff]);
        assert_eq!(r.to_string(), "00abff");
        assert_eq!(format!("{r:?}"), "RootHash(00abff)");
        assert!(RootHash::from_hex("").is_none());
        assert!(RootHash::from_hex("xyz").is_none());
    }
}
