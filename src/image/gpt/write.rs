//! The GPT writer: protective MBR, primary and backup header and entry arrays, laid out the way
//! sfdisk and systemd-repart do (used by `image build` and the tests).

use super::{Guid, ENTRY_COUNT, ENTRY_SIZE, HEADER_SIZE, REVISION, SIGNATURE};
use crate::verity::BlockSink;

/// A partition to write: its place is given in sectors by the caller.
#[derive(Debug, Clone)]
pub struct NewPartition {
    /// Partition type.
    pub type_guid: Guid,
    /// Unique partition GUID.
    pub uuid: Guid,
    /// First sector.
    pub first_lba: u64,
    /// Number of sectors.
    pub sectors: u64,
    /// Attribute bits.
    pub attrs: u64,
    /// Label (at most 36 UTF-16 code units).
    pub name: String,
}

/// Sectors the primary table occupies before the first usable LBA (MBR, header, 128 entries).
pub fn first_usable_lba(sector: u64) -> u64 {
    2 + (ENTRY_COUNT as u64 * ENTRY_SIZE as u64).div_ceil(sector)
}

/// Writes the protective MBR, primary and backup tables for a disk of `total_sectors`.
/// The partitions must lie inside the usable area; it is checked, not trusted.
pub fn write_gpt<W: BlockSink + ?Sized>(
    out: &mut W,
    sector: u64,
    total_sectors: u64,
    disk_guid: Guid,
    parts: &[NewPartition],
) -> std::io::Result<()> {
    let esect = (ENTRY_COUNT as u64 * ENTRY_SIZE as u64).div_ceil(sector);
    let first_usable = 2 + esect;
    let last_usable = total_sectors - 2 - esect;
    let mut entries = vec![0u8; ENTRY_COUNT as usize * ENTRY_SIZE];
    for (i, p) in parts.iter().enumerate() {
        let last = p.first_lba + p.sectors - 1;
        if p.first_lba < first_usable || last > last_usable || p.sectors == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("partition {} does not fit the usable area", i + 1),
            ));
        }
        let e = &mut entries[i * ENTRY_SIZE..(i + 1) * ENTRY_SIZE];
        e[0..16].copy_from_slice(&p.type_guid.to_disk());
        e[16..32].copy_from_slice(&p.uuid.to_disk());
        e[32..40].copy_from_slice(&p.first_lba.to_le_bytes());
        e[40..48].copy_from_slice(&last.to_le_bytes());
        e[48..56].copy_from_slice(&p.attrs.to_le_bytes());
        for (j, u) in p.name.encode_utf16().take(36).enumerate() {
            e[56 + 2 * j..58 + 2 * j].copy_from_slice(&u.to_le_bytes());
        }
    }
    let entries_crc = crc32fast::hash(&entries);
    let header = |my: u64, alt: u64, elba: u64| {
        let mut h = vec![0u8; sector as usize];
        h[0..8].copy_from_slice(SIGNATURE);
        h[8..12].copy_from_slice(&REVISION.to_le_bytes());
        h[12..16].copy_from_slice(&(HEADER_SIZE as u32).to_le_bytes());
        h[24..32].copy_from_slice(&my.to_le_bytes());
        h[32..40].copy_from_slice(&alt.to_le_bytes());
        h[40..48].copy_from_slice(&first_usable.to_le_bytes());
        h[48..56].copy_from_slice(&last_usable.to_le_bytes());
        h[56..72].copy_from_slice(&disk_guid.to_disk());
        h[72..80].copy_from_slice(&elba.to_le_bytes());
        h[80..84].copy_from_slice(&ENTRY_COUNT.to_le_bytes());
        h[84..88].copy_from_slice(&(ENTRY_SIZE as u32).to_le_bytes());
        h[88..92].copy_from_slice(&entries_crc.to_le_bytes());
        let crc = crc32fast::hash(&h[..HEADER_SIZE]);
        h[16..20].copy_from_slice(&crc.to_le_bytes());
        h
    };
    // Protective MBR: one 0xEE partition covering the disk (capped at 2^32-1 sectors).
    let mut mbr = vec![0u8; sector as usize];
    let pe = &mut mbr[446..462];
    pe[1..4].copy_from_slice(&[0x00, 0x02, 0x00]);
    pe[4] = 0xEE;
    pe[5..8].copy_from_slice(&[0xFF, 0xFF, 0xFF]);
    pe[8..12].copy_from_slice(&1u32.to_le_bytes());
    let n = (total_sectors - 1).min(u32::MAX as u64) as u32;
    pe[12..16].copy_from_slice(&n.to_le_bytes());
    mbr[510] = 0x55;
    mbr[511] = 0xAA;
    let last = total_sectors - 1;
    out.write_at(&mbr, 0)?;
    out.write_at(&header(1, last, 2), sector)?;
    out.write_at(&entries, 2 * sector)?;
    out.write_at(&entries, (last - esect) * sector)?;
    out.write_at(&header(last, 1, last - esect), last * sector)?;
    Ok(())
}
