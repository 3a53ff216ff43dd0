//! Files as [`BlockSource`]/[`BlockSink`]: positioned reads and writes, and holes found with
//! SEEK_DATA/SEEK_HOLE so sparse regions are never read.

use crate::verity::{BlockSink, BlockSource};
use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// A file (or block device) opened once and read by offset.
pub struct FileSource {
    file: File,
    size: u64,
    path: PathBuf,
    sparse_aware: bool,
    /// The last data extent found. SEEK_HOLE scans forward to the next hole (to the end of a
    /// dense file on tmpfs), so without this cache each chunk would rescan the rest of the file.
    extent: std::sync::Mutex<Option<(u64, u64)>>,
}

/// Size of a regular file or block device.
pub fn file_size(file: &File) -> io::Result<u64> {
    let md = file.metadata()?;
    if md.file_type().is_block_device() {
        let mut f = file;
        io::Seek::seek(&mut f, io::SeekFrom::End(0))
    } else {
        Ok(md.len())
    }
}

impl FileSource {
    /// Opens `path` read-only.
    pub fn open(path: &Path) -> io::Result<Self> {
        let file = File::open(path)?;
        Self::from_file(file, path)
    }

    /// Wraps an already open file; everything afterwards reads this descriptor.
    pub fn from_file(file: File, path: &Path) -> io::Result<Self> {
        let size = file_size(&file)?;
        let md = file.metadata()?;
        // A regular file with as many bytes allocated as it is long has no holes worth finding
        // (a file with blocks preallocated past its end may still have some; those read as
        // zeros, so only the skipping is lost): SEEK_HOLE on it walks the whole page cache index
        // (10 ms per GiB on tmpfs) just to find the end.
        let sparse_aware = md.file_type().is_file() && md.blocks() * 512 < size;
        Ok(Self {
            file,
            size,
            path: path.to_path_buf(),
            sparse_aware,
            extent: std::sync::Mutex::new(None),
        })
    }

    /// The path it was opened from, for messages.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The underlying descriptor.
    pub fn file(&self) -> &File {
        &self.file
    }
}

impl BlockSource for FileSource {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.file.read_exact_at(buf, offset)
    }

    fn size(&self) -> u64 {
        self.size
    }

    fn data_ranges(&self, start: u64, end: u64) -> io::Result<Vec<(u64, u64)>> {
        if !self.sparse_aware {
            return Ok(vec![(start, end)]);
        }
        let mut cached = self.extent.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((a, b)) = *cached {
            if a <= start && end <= b {
                return Ok(vec![(start, end)]);
            }
        }
        let mut out = Vec::new();
        let mut pos = start;
        while pos < end {
            let data = match rustix::fs::seek(&self.file, rustix::fs::SeekFrom::Data(pos)) {
                Ok(d) => d,
                // ENXIO: no data after pos.
                Err(rustix::io::Errno::NXIO) => break,
                // A file system without SEEK_DATA: treat everything as data.
                Err(rustix::io::Errno::INVAL) | Err(rustix::io::Errno::OPNOTSUPP) => {
                    return Ok(vec![(start, end)])
                }
                Err(e) => return Err(e.into()),
            };
            if data >= end {
                break;
            }
            let hole = rustix::fs::seek(&self.file, rustix::fs::SeekFrom::Hole(data))?;
            *cached = Some((data, hole));
            out.push((data, hole.min(end)));
            pos = hole;
        }
        Ok(out)
    }
}

/// A file written by offset.
pub struct FileSink {
    file: File,
}

impl FileSink {
    /// Wraps an open, writable file.
    pub fn new(file: File) -> Self {
        Self { file }
    }

    /// The underlying file.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// Gives the file back.
    pub fn into_file(self) -> File {
        self.file
    }
}

impl BlockSink for FileSink {
    fn write_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.file.write_all_at(buf, offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holes_are_reported_and_data_read() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sparse");
        let f = File::create(&p).unwrap();
        f.set_len(8 << 20).unwrap();
        f.write_all_at(&[1u8; 4096], 4 << 20).unwrap();
        drop(f);
        let s = FileSource::open(&p).unwrap();
        assert_eq!(s.size(), 8 << 20);
        let r = s.data_ranges(0, 8 << 20).unwrap();
        // The written block must be inside a data range, and most of the file must be a hole
        // (tmpfs and ext4 both report holes at page granularity).
        assert!(r
            .iter()
            .any(|&(a, b)| a <= 4 << 20 && b >= (4 << 20) + 4096));
        let covered: u64 = r.iter().map(|(a, b)| b - a).sum();
        assert!(covered < 1 << 20, "{r:?}");
        let mut buf = [0u8; 4];
        s.read_at(&mut buf, 4 << 20).unwrap();
        assert_eq!(buf, [1; 4]);
        assert!(s.read_at(&mut buf, (8 << 20) - 2).is_err());
    }
}
