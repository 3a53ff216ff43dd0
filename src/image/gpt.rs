//! GUID partition tables: a strict reader (both headers, both CRCs, the backup at the end of the
//! disk, entries inside the usable area and not overlapping) and a writer that lays out the
//! protective MBR, the primary and the backup table the way sfdisk and systemd-repart do.
//!
//! Pure core: reads through [`BlockSource`], writes into a [`BlockSink`](crate::verity::BlockSink). GUIDs are kept in the
//! canonical RFC 4122 byte order (the order of the text form); the on-disk mixed-endian encoding
//! (first three fields little-endian) is converted at the edge of this file only, because mixing the
//! two is the classic bug when comparing partition UUIDs with root-hash halves.

use crate::verity::BlockSource;
use std::fmt;

mod write;
pub use write::{first_usable_lba, write_gpt, NewPartition};

#[cfg(test)]
mod tests;

/// Bytes in a GPT header as written (the rest of the sector is reserved, zero).
pub const HEADER_SIZE: usize = 92;
/// Bytes per partition entry we write (readers accept any multiple of 128).
pub const ENTRY_SIZE: usize = 128;
/// Entries in the table we write (16 KiB of entries, as every common tool writes).
pub const ENTRY_COUNT: u32 = 128;
/// Largest entry array we are willing to read ([`crate::limits::GPT_ENTRY_ARRAY`]): untrusted
/// sizes must not allocate unbounded memory.
pub const MAX_ENTRY_ARRAY: u64 = crate::limits::GPT_ENTRY_ARRAY;
/// GPT attribute bit 60: read-only.
pub const ATTR_READ_ONLY: u64 = 1 << 60;
/// GPT attribute bit 59: grow the file system.
pub const ATTR_GROWFS: u64 = 1 << 59;
/// GPT attribute bit 63: do not auto-mount (the dissector ignores the partition).
pub const ATTR_NO_AUTO: u64 = 1 << 63;

const SIGNATURE: &[u8; 8] = b"EFI PART";
const REVISION: u32 = 0x0001_0000;

/// A GUID in canonical (text) byte order.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Guid(pub [u8; 16]);

const fn hexval(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        b'A'..=b'F' => c - b'A' + 10,
        _ => panic!("bad hex digit in GUID constant"),
    }
}

impl Guid {
    /// The all-zero GUID, which marks an unused entry.
    pub const NIL: Guid = Guid([0; 16]);

    /// Parses a GUID constant at compile time (`xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`).
    pub const fn from_str_const(s: &str) -> Guid {
        let b = s.as_bytes();
        assert!(b.len() == 36, "GUID constant must be 36 characters");
        let mut out = [0u8; 16];
        let mut i = 0;
        let mut o = 0;
        while i < 36 {
            if b[i] == b'-' {
                i += 1;
                continue;
            }
            out[o] = hexval(b[i]) << 4 | hexval(b[i + 1]);
            o += 1;
            i += 2;
        }
        assert!(o == 16, "GUID constant must have 32 hex digits");
        Guid(out)
    }

    /// Parses the text form, with or without dashes, either case.
    pub fn parse(s: &str) -> Option<Guid> {
        let hex: String = s.chars().filter(|c| *c != '-').collect();
        if hex.len() != 32 {
            return None;
        }
        let v = crate::hex::decode(&hex).ok()?;
        let mut out = [0u8; 16];
        out.copy_from_slice(&v);
        Some(Guid(out))
    }

    /// From the 16 on-disk bytes (time_low, time_mid, time_hi little-endian).
    pub fn from_disk(d: &[u8; 16]) -> Guid {
        let mut o = *d;
        o[0..4].reverse();
        o[4..6].reverse();
        o[6..8].reverse();
        Guid(o)
    }

    /// The 16 bytes as stored in a GPT.
    pub fn to_disk(self) -> [u8; 16] {
        let mut o = self.0;
        o[0..4].reverse();
        o[4..6].reverse();
        o[6..8].reverse();
        o
    }
}

impl fmt::Display for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&crate::verity::superblock::uuid_to_string(&self.0))
    }
}

impl fmt::Debug for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Guid({self})")
    }
}

/// Why a partition table was refused. Each names the header (primary or backup) and the check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GptError {
    /// No `EFI PART` signature at LBA 1 for 512- or 4096-byte sectors.
    #[error("no GPT: no 'EFI PART' signature at byte 512 or 4096")]
    NoTable,
    /// The image ends before something the table points at (a truncated image).
    #[error(
        "GPT truncated: {what} at byte {offset} lies beyond the end of the image ({size} bytes)"
    )]
    Truncated {
        /// What was being read.
        what: &'static str,
        /// Where it should have been.
        offset: u64,
        /// The image size.
        size: u64,
    },
    /// A read failed.
    #[error("GPT read error at byte {offset}: {msg}")]
    Read {
        /// Where.
        offset: u64,
        /// The I/O error text.
        msg: String,
    },
    /// A header field is malformed.
    #[error("{which} GPT header: {msg}")]
    BadHeader {
        /// "primary" or "backup".
        which: &'static str,
        /// What is wrong.
        msg: String,
    },
    /// The header CRC32 does not match.
    #[error("{which} GPT header CRC mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    HeaderCrc {
        /// "primary" or "backup".
        which: &'static str,
        /// CRC in the header.
        stored: u32,
        /// CRC we computed.
        computed: u32,
    },
    /// The partition entry array CRC32 does not match.
    #[error("{which} GPT partition entry array CRC mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    EntriesCrc {
        /// "primary" or "backup".
        which: &'static str,
        /// CRC in the header.
        stored: u32,
        /// CRC we computed.
        computed: u32,
    },
    /// The backup header disagrees with the primary.
    #[error("backup GPT header does not match the primary: {0}")]
    BackupMismatch(String),
    /// A partition entry is malformed or outside the usable area.
    #[error("GPT partition {index}: {msg}")]
    BadEntry {
        /// Entry index (1-based, as fdisk numbers them).
        index: usize,
        /// What is wrong.
        msg: String,
    },
    /// Two partitions share sectors.
    #[error("GPT partitions {a} and {b} overlap")]
    Overlap {
        /// First partition (1-based).
        a: usize,
        /// Second partition (1-based).
        b: usize,
    },
}

/// One used partition entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    /// Entry index, 1-based (as fdisk and the kernel number them).
    pub index: usize,
    /// Partition type.
    pub type_guid: Guid,
    /// Unique partition GUID (canonical byte order).
    pub uuid: Guid,
    /// First sector.
    pub first_lba: u64,
    /// Last sector, inclusive.
    pub last_lba: u64,
    /// Attribute bits.
    pub attrs: u64,
    /// Label (UTF-16LE on disk, up to 36 code units).
    pub name: String,
}

impl Partition {
    /// Byte offset of the partition.
    pub fn offset(&self, sector: u64) -> u64 {
        self.first_lba * sector
    }

    /// Size in bytes.
    pub fn size(&self, sector: u64) -> u64 {
        (self.last_lba - self.first_lba + 1) * sector
    }
}

/// A validated partition table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gpt {
    /// Logical sector size (512 or 4096).
    pub sector: u64,
    /// Disk GUID.
    pub disk_guid: Guid,
    /// First usable LBA.
    pub first_usable: u64,
    /// Last usable LBA.
    pub last_usable: u64,
    /// Used entries, in table order.
    pub partitions: Vec<Partition>,
}

struct Header {
    my_lba: u64,
    alternate_lba: u64,
    first_usable: u64,
    last_usable: u64,
    disk_guid: Guid,
    entries_lba: u64,
    entry_count: u32,
    entry_size: u32,
    entries_crc: u32,
}

fn u32le(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes(b[o..o + 4].try_into().expect("4 bytes"))
}

fn u64le(b: &[u8], o: usize) -> u64 {
    u64::from_le_bytes(b[o..o + 8].try_into().expect("8 bytes"))
}

fn read<S: BlockSource + ?Sized>(
    src: &S,
    what: &'static str,
    offset: u64,
    len: u64,
) -> Result<Vec<u8>, GptError> {
    let size = src.size();
    if offset.checked_add(len).is_none_or(|e| e > size) {
        return Err(GptError::Truncated { what, offset, size });
    }
    let mut buf = vec![0u8; len as usize];
    src.read_at(&mut buf, offset).map_err(|e| GptError::Read {
        offset,
        msg: e.to_string(),
    })?;
    Ok(buf)
}

fn parse_header(which: &'static str, s: &[u8]) -> Result<Header, GptError> {
    let bad = |msg: String| GptError::BadHeader { which, msg };
    if &s[0..8] != SIGNATURE {
        return Err(bad("no 'EFI PART' signature".into()));
    }
    let rev = u32le(s, 8);
    if rev != REVISION {
        return Err(bad(format!("unsupported revision {rev:#010x}")));
    }
    let hsize = u32le(s, 12) as usize;
    if hsize < HEADER_SIZE || hsize > s.len() {
        return Err(bad(format!("header size {hsize} out of range")));
    }
    let stored = u32le(s, 16);
    let mut h = s[..hsize].to_vec();
    h[16..20].fill(0);
    let computed = crc32fast::hash(&h);
    if stored != computed {
        return Err(GptError::HeaderCrc {
            which,
            stored,
            computed,
        });
    }
    if u32le(s, 20) != 0 {
        return Err(bad("reserved field is not zero".into()));
    }
    let mut dg = [0u8; 16];
    dg.copy_from_slice(&s[56..72]);
    let hdr = Header {
        my_lba: u64le(s, 24),
        alternate_lba: u64le(s, 32),
        first_usable: u64le(s, 40),
        last_usable: u64le(s, 48),
        disk_guid: Guid::from_disk(&dg),
        entries_lba: u64le(s, 72),
        entry_count: u32le(s, 80),
        entry_size: u32le(s, 84),
        entries_crc: u32le(s, 88),
    };
    if hdr.entry_size < ENTRY_SIZE as u32 || !hdr.entry_size.is_multiple_of(ENTRY_SIZE as u32) {
        return Err(bad(format!("entry size {} invalid", hdr.entry_size)));
    }
    if hdr.entry_count == 0 {
        return Err(bad("no partition entries".into()));
    }
    if hdr.entry_count as u64 * hdr.entry_size as u64 > MAX_ENTRY_ARRAY {
        return Err(bad(format!(
            "entry array of {} x {} bytes is larger than {MAX_ENTRY_ARRAY}",
            hdr.entry_count, hdr.entry_size
        )));
    }
    if hdr.first_usable > hdr.last_usable {
        return Err(bad("first usable LBA after last usable LBA".into()));
    }
    Ok(hdr)
}

fn read_entries<S: BlockSource + ?Sized>(
    src: &S,
    which: &'static str,
    h: &Header,
    sector: u64,
) -> Result<Vec<u8>, GptError> {
    let len = h.entry_count as u64 * h.entry_size as u64;
    let off = h
        .entries_lba
        .checked_mul(sector)
        .ok_or_else(|| GptError::BadHeader {
            which,
            msg: "entry array LBA overflows".into(),
        })?;
    let buf = read(src, "partition entry array", off, len)?;
    let computed = crc32fast::hash(&buf);
    if computed != h.entries_crc {
        return Err(GptError::EntriesCrc {
            which,
            stored: h.entries_crc,
            computed,
        });
    }
    Ok(buf)
}

/// The first LBA after a header's entry array; a crafted PartitionEntryLBA near 2^64 is refused
/// by name instead of wrapping.
fn entries_end(which: &'static str, h: &Header, sectors: u64) -> Result<u64, GptError> {
    h.entries_lba
        .checked_add(sectors)
        .ok_or_else(|| GptError::BadHeader {
            which,
            msg: format!(
                "PartitionEntryLBA {} plus {sectors} sectors of entries overflows",
                h.entries_lba
            ),
        })
}

/// Finds the sector size by looking for the header signature at 512 and 4096 (UAPI.3).
pub fn detect_sector<S: BlockSource + ?Sized>(src: &S) -> Result<u64, GptError> {
    for sector in [512u64, 4096] {
        if src.size() >= sector + 8 {
            let b = read(src, "GPT header", sector, 8)?;
            if b == SIGNATURE {
                return Ok(sector);
            }
        }
    }
    Err(GptError::NoTable)
}

/// Reads and validates the whole table: primary header and entries, backup header (which must sit
/// in the last sector) and its entries, agreement between the two, and every used entry.
pub fn read_gpt<S: BlockSource + ?Sized>(src: &S) -> Result<Gpt, GptError> {
    let sector = detect_sector(src)?;
    let size = src.size();
    let total = size / sector;
    let p_raw = read(src, "primary GPT header", sector, sector)?;
    let p = parse_header("primary", &p_raw)?;
    if p.my_lba != 1 {
        return Err(GptError::BadHeader {
            which: "primary",
            msg: format!("MyLBA is {}, not 1", p.my_lba),
        });
    }
    if p.alternate_lba >= total {
        return Err(GptError::Truncated {
            what: "backup GPT header",
            offset: p.alternate_lba.saturating_mul(sector),
            size,
        });
    }
    if p.alternate_lba != total - 1 {
        return Err(GptError::BadHeader {
            which: "primary",
            msg: format!(
                "backup header LBA {} is not the last sector {} (image resized or truncated?)",
                p.alternate_lba,
                total - 1
            ),
        });
    }
    let entries_sectors = (p.entry_count as u64 * p.entry_size as u64).div_ceil(sector);
    let p_entries_end = entries_end("primary", &p, entries_sectors)?;
    if p.entries_lba < 2 || p_entries_end > p.first_usable {
        return Err(GptError::BadHeader {
            which: "primary",
            msg: "entry array overlaps the header or the usable area".into(),
        });
    }
    if p.last_usable >= p.alternate_lba {
        return Err(GptError::BadHeader {
            which: "primary",
            msg: "last usable LBA reaches the backup header".into(),
        });
    }
    let p_entries = read_entries(src, "primary", &p, sector)?;

    let b_raw = read(src, "backup GPT header", p.alternate_lba * sector, sector)?;
    let b = parse_header("backup", &b_raw)?;
    let mism = |m: &str| GptError::BackupMismatch(m.to_string());
    if b.my_lba != p.alternate_lba || b.alternate_lba != 1 {
        return Err(mism("MyLBA/AlternateLBA are not swapped"));
    }
    if b.disk_guid != p.disk_guid {
        return Err(mism("disk GUID differs"));
    }
    if b.first_usable != p.first_usable || b.last_usable != p.last_usable {
        return Err(mism("usable area differs"));
    }
    if b.entry_count != p.entry_count
        || b.entry_size != p.entry_size
        || b.entries_crc != p.entries_crc
    {
        return Err(mism("partition entry array differs"));
    }
    if b.entries_lba <= p.last_usable || entries_end("backup", &b, entries_sectors)? > b.my_lba {
        return Err(mism(
            "backup entry array overlaps the usable area or the header",
        ));
    }
    let b_entries = read_entries(src, "backup", &b, sector)?;
    if b_entries != p_entries {
        return Err(mism("partition entry arrays differ"));
    }

    let partitions = parse_entries(&p_entries, p.entry_size as usize, &p)?;
    Ok(Gpt {
        sector,
        disk_guid: p.disk_guid,
        first_usable: p.first_usable,
        last_usable: p.last_usable,
        partitions,
    })
}

fn parse_entries(raw: &[u8], esize: usize, h: &Header) -> Result<Vec<Partition>, GptError> {
    let mut out: Vec<Partition> = Vec::new();
    for (i, e) in raw.chunks(esize).enumerate() {
        let index = i + 1;
        let mut t = [0u8; 16];
        t.copy_from_slice(&e[0..16]);
        if t == [0u8; 16] {
            continue;
        }
        let mut u = [0u8; 16];
        u.copy_from_slice(&e[16..32]);
        let first_lba = u64le(e, 32);
        let last_lba = u64le(e, 40);
        let bad = |msg: String| GptError::BadEntry { index, msg };
        if first_lba > last_lba {
            return Err(bad(format!(
                "first LBA {first_lba} after last LBA {last_lba}"
            )));
        }
        if first_lba < h.first_usable || last_lba > h.last_usable {
            return Err(bad(format!(
                "sectors {first_lba}..={last_lba} outside the usable area {}..={}",
                h.first_usable, h.last_usable
            )));
        }
        let units: Vec<u16> = e[56..128]
            .chunks(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .take_while(|&c| c != 0)
            .collect();
        let name = String::from_utf16(&units).map_err(|_| bad("label is not UTF-16".into()))?;
        let p = Partition {
            index,
            type_guid: Guid::from_disk(&t),
            uuid: Guid::from_disk(&u),
            first_lba,
            last_lba,
            attrs: u64le(e, 48),
            name,
        };
        for q in &out {
            if p.first_lba <= q.last_lba && q.first_lba <= p.last_lba {
                return Err(GptError::Overlap {
                    a: q.index,
                    b: p.index,
                });
            }
        }
        out.push(p);
    }
    Ok(out)
}
