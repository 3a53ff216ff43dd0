//! The 512-byte veritysetup superblock (version 1, little-endian). The kernel never reads it; only
//! userspace tools do, so it is parsed strictly and every refusal names the field.

use super::geometry::{check_block_size, Params};
use crate::digest::HashAlg;
use thiserror::Error;

/// Size of the on-disk superblock.
pub const SUPERBLOCK_SIZE: usize = 512;
const MAGIC: &[u8; 8] = b"verity\0\0";

/// A parsed superblock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Superblock {
    /// 0 = Chrome OS, 1 = normal.
    pub hash_type: u32,
    /// Raw UUID bytes in RFC 4122 text order.
    pub uuid: [u8; 16],
    /// Algorithm.
    pub alg: HashAlg,
    /// Data block size.
    pub data_block_size: u32,
    /// Hash block size.
    pub hash_block_size: u32,
    /// Data blocks covered.
    pub data_blocks: u64,
    /// Salt.
    pub salt: Vec<u8>,
}

/// Why a superblock was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SuperblockError {
    #[error("superblock truncated: {0} bytes, need 512")]
    Truncated(usize),
    #[error("no verity superblock (bad signature)")]
    BadMagic,
    #[error("unsupported verity superblock version {0}")]
    Version(u32),
    #[error("unsupported hash type {0} in superblock")]
    HashType(u32),
    #[error("superblock: {0}")]
    BlockSize(String),
    #[error("superblock: unknown hash algorithm {0:?}")]
    Algorithm(String),
    #[error("superblock corrupted: salt size {0} over 256")]
    SaltSize(u16),
    #[error("superblock: data block count is zero")]
    NoData,
}

impl Superblock {
    /// Builds the superblock for a parameter set.
    pub fn from_params(p: &Params, uuid: [u8; 16]) -> Self {
        Self {
            hash_type: p.hash_type,
            uuid,
            alg: p.alg,
            data_block_size: p.data_block_size,
            hash_block_size: p.hash_block_size,
            data_blocks: p.data_blocks,
            salt: p.salt.clone(),
        }
    }

    /// The tree parameters it describes.
    pub fn params(&self) -> Params {
        Params {
            alg: self.alg,
            data_block_size: self.data_block_size,
            hash_block_size: self.hash_block_size,
            data_blocks: self.data_blocks,
            salt: self.salt.clone(),
            hash_type: self.hash_type,
        }
    }

    /// The 512 on-disk bytes.
    pub fn to_bytes(&self) -> [u8; SUPERBLOCK_SIZE] {
        let mut b = [0u8; SUPERBLOCK_SIZE];
        b[0..8].copy_from_slice(MAGIC);
        b[8..12].copy_from_slice(&1u32.to_le_bytes());
        b[12..16].copy_from_slice(&self.hash_type.to_le_bytes());
        b[16..32].copy_from_slice(&self.uuid);
        let name = self.alg.name().as_bytes();
        b[32..32 + name.len()].copy_from_slice(name);
        b[64..68].copy_from_slice(&self.data_block_size.to_le_bytes());
        b[68..72].copy_from_slice(&self.hash_block_size.to_le_bytes());
        b[72..80].copy_from_slice(&self.data_blocks.to_le_bytes());
        b[80..82].copy_from_slice(&(self.salt.len() as u16).to_le_bytes());
        b[88..88 + self.salt.len()].copy_from_slice(&self.salt);
        b
    }

    /// Parses and checks the first 512 bytes of `buf`.
    pub fn parse(buf: &[u8]) -> Result<Self, SuperblockError> {
        if buf.len() < SUPERBLOCK_SIZE {
            return Err(SuperblockError::Truncated(buf.len()));
        }
        if &buf[0..8] != MAGIC {
            return Err(SuperblockError::BadMagic);
        }
        let u32_at = |o: usize| u32::from_le_bytes(buf[o..o + 4].try_into().expect("4 bytes"));
        let version = u32_at(8);
        if version != 1 {
            return Err(SuperblockError::Version(version));
        }
        let hash_type = u32_at(12);
        if hash_type > 1 {
            return Err(SuperblockError::HashType(hash_type));
        }
        let name_raw = &buf[32..64];
        let name_len = name_raw.iter().position(|&c| c == 0).unwrap_or(32);
        let name = String::from_utf8_lossy(&name_raw[..name_len]).into_owned();
        let alg = HashAlg::from_name(&name).map_err(|_| SuperblockError::Algorithm(name))?;
        let data_block_size = check_block_size("data", u32_at(64) as u64)
            .map_err(|e| SuperblockError::BlockSize(e.to_string()))?;
        let hash_block_size = check_block_size("hash", u32_at(68) as u64)
            .map_err(|e| SuperblockError::BlockSize(e.to_string()))?;
        let data_blocks = u64::from_le_bytes(buf[72..80].try_into().expect("8 bytes"));
        if data_blocks == 0 {
            return Err(SuperblockError::NoData);
        }
        let salt_size = u16::from_le_bytes([buf[80], buf[81]]);
        if salt_size as usize > 256 {
            return Err(SuperblockError::SaltSize(salt_size));
        }
        Ok(Self {
            hash_type,
            uuid: buf[16..32].try_into().expect("16 bytes"),
            alg,
            data_block_size,
            hash_block_size,
            data_blocks,
            salt: buf[88..88 + salt_size as usize].to_vec(),
        })
    }
}

/// Formats a raw UUID as 8-4-4-4-12 lower-case text.
pub fn uuid_to_string(u: &[u8; 16]) -> String {
    uuid::Uuid::from_bytes(*u).hyphenated().to_string()
}

/// Parses 8-4-4-4-12 UUID text (either case) into raw bytes. Only the hyphenated form: the `uuid`
/// crate would also take the braced, URN and 32-digit forms, which veritysetup does not.
pub fn parse_uuid(s: &str) -> Option<[u8; 16]> {
    if s.len() != 36 {
        return None;
    }
    uuid::Uuid::try_parse(s).ok().map(|u| u.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Superblock {
        Superblock {
            hash_type: 1,
            uuid: parse_uuid("12345678-1234-1234-1234-123456789abc").unwrap(),
            alg: HashAlg::Sha256,
            data_block_size: 4096,
            hash_block_size: 4096,
            data_blocks: 300,
            salt: crate::hex::decode(
                "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            )
            .unwrap(),
        }
    }

    #[test]
    fn matches_vector_b_header_bytes() {
        let b = sample().to_bytes();
        assert_eq!(&b[0..16], b"verity\0\0\x01\0\0\0\x01\0\0\0");
        assert_eq!(
            &b[16..32],
            &crate::hex::decode("12345678123412341234123456789abc").unwrap()[..]
        );
        assert_eq!(
            &b[64..82],
            &[0, 16, 0, 0, 0, 16, 0, 0, 0x2c, 1, 0, 0, 0, 0, 0, 0, 32, 0]
        );
        assert_eq!(Superblock::parse(&b).unwrap(), sample());
    }

    #[test]
    fn refusals() {
        let good = sample().to_bytes();
        assert_eq!(
            Superblock::parse(&good[..100]),
            Err(SuperblockError::Truncated(100))
        );
        let mut b = good;
        b[0] = b'X';
        assert_eq!(Superblock::parse(&b), Err(SuperblockError::BadMagic));
        let mut b = good;
        b[8] = 2;
        assert_eq!(Superblock::parse(&b), Err(SuperblockError::Version(2)));
        let mut b = good;
        b[80] = 1;
        b[81] = 1;
        assert_eq!(Superblock::parse(&b), Err(SuperblockError::SaltSize(257)));
        let mut b = good;
        b[32..38].copy_from_slice(b"crc32c");
        assert!(matches!(
            Superblock::parse(&b),
            Err(SuperblockError::Algorithm(_))
        ));
        let mut b = good;
        b[64..68].copy_from_slice(&333u32.to_le_bytes());
        assert!(matches!(
            Superblock::parse(&b),
            Err(SuperblockError::BlockSize(_))
        ));
    }

    #[test]
    fn uuid_text() {
        let u = parse_uuid("12345678-1234-1234-1234-123456789ABC").unwrap();
        assert_eq!(uuid_to_string(&u), "12345678-1234-1234-1234-123456789abc");
        assert!(parse_uuid("1234").is_none());
        // Only the hyphenated form, as before the uuid crate did the parsing.
        assert!(parse_uuid("12345678123412341234123456789abc").is_none());
        assert!(parse_uuid("{12345678-1234-1234-1234-123456789abc}").is_none());
        assert!(parse_uuid("12345678-1234-1234-1234-123456789abg").is_none());
    }
}
