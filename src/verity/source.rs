//! The byte-source and byte-sink traits the tree engine reads and writes through, with in-memory
//! implementations for tests and for images that are already in memory.

use std::io;

/// Something that can be read at arbitrary offsets (a file, a partition slice, a memory buffer).
pub trait BlockSource: Sync {
    /// Fills `buf` from `offset`; reading past the end is an error.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;

    /// Total size in bytes.
    fn size(&self) -> u64;

    /// The byte ranges in `[start, end)` that may hold non-zero data. Anything outside them reads as
    /// zero and is not read at all (holes of sparse files). The default: all of it.
    fn data_ranges(&self, start: u64, end: u64) -> io::Result<Vec<(u64, u64)>> {
        Ok(vec![(start, end)])
    }
}

/// Something that can be written at arbitrary offsets.
pub trait BlockSink {
    /// Writes all of `buf` at `offset`.
    fn write_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()>;
}

impl BlockSource for [u8] {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let start = usize::try_from(offset).map_err(|_| eof(offset))?;
        let end = start.checked_add(buf.len()).ok_or_else(|| eof(offset))?;
        let src = self.get(start..end).ok_or_else(|| eof(offset))?;
        buf.copy_from_slice(src);
        Ok(())
    }

    fn size(&self) -> u64 {
        self.len() as u64
    }
}

impl BlockSource for Vec<u8> {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.as_slice().read_at(buf, offset)
    }

    fn size(&self) -> u64 {
        self.len() as u64
    }
}

impl BlockSink for Vec<u8> {
    fn write_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        let start = usize::try_from(offset).map_err(|_| eof(offset))?;
        let end = start + buf.len();
        if self.len() < end {
            self.resize(end, 0);
        }
        self[start..end].copy_from_slice(buf);
        Ok(())
    }
}

/// A window `[offset, offset + len)` of another source, for partitions inside a disk image.
pub struct Slice<'a, S: BlockSource + ?Sized> {
    inner: &'a S,
    offset: u64,
    len: u64,
}

impl<'a, S: BlockSource + ?Sized> Slice<'a, S> {
    /// A window of `inner`; reads outside it fail.
    pub fn new(inner: &'a S, offset: u64, len: u64) -> Self {
        Self { inner, offset, len }
    }
}

impl<S: BlockSource + ?Sized> BlockSource for Slice<'_, S> {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        if offset
            .checked_add(buf.len() as u64)
            .is_none_or(|e| e > self.len)
        {
            return Err(eof(offset));
        }
        self.inner.read_at(buf, self.offset + offset)
    }

    fn size(&self) -> u64 {
        self.len
    }

    fn data_ranges(&self, start: u64, end: u64) -> io::Result<Vec<(u64, u64)>> {
        let r = self
            .inner
            .data_ranges(self.offset + start, self.offset + end.min(self.len))?;
        Ok(r.into_iter()
            .map(|(a, b)| (a - self.offset, b - self.offset))
            .collect())
    }
}

fn eof(offset: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        format!("read past the end at byte {offset}"),
    )
}
