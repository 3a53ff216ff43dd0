//! The one extent-copy loop of the crate: a byte range of a [`BlockSource`] into a file, in 1 MiB
//! pieces, skipping the holes the source reports (SEEK_DATA/SEEK_HOLE for files). Used for the
//! sealed memfd admission verifies (`sys::memfd`) and for the data partition of a built image
//! (`image::build`); both write into a fresh file, which reads as zeros where a hole is skipped.

use crate::verity::ordered::AlignedBuf;
use crate::verity::BlockSource;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// Which side of a copy failed, so callers can name the right file.
#[derive(Debug)]
pub enum CopyError {
    /// Reading the source.
    Read(io::Error),
    /// Writing the destination.
    Write(io::Error),
}

/// Copies `len` bytes of `src` from `src_off` to `dst` at `dst_off`. The destination must read as
/// zeros over the range (a new file or memfd): holes of the source are not written.
pub fn copy_range<S: BlockSource + ?Sized>(
    src: &S,
    src_off: u64,
    len: u64,
    dst: &File,
    dst_off: u64,
) -> Result<(), CopyError> {
    let mut buf = AlignedBuf::new(1 << 20);
    let ranges = src
        .data_ranges(src_off, src_off + len)
        .map_err(CopyError::Read)?;
    for (s, e) in ranges {
        let mut pos = s;
        while pos < e {
            let n = ((e - pos) as usize).min(buf.len());
            src.read_at(&mut buf[..n], pos).map_err(CopyError::Read)?;
            dst.write_all_at(&buf[..n], dst_off + (pos - src_off))
                .map_err(CopyError::Write)?;
            pos += n as u64;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_the_range_to_the_offset() {
        let src: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let dir = tempfile::tempdir().unwrap();
        let dst = File::create_new(dir.path().join("out")).unwrap();
        copy_range(&src[..], 1000, 2_500_000, &dst, 512).unwrap();
        let got = std::fs::read(dir.path().join("out")).unwrap();
        assert_eq!(got.len(), 512 + 2_500_000);
        assert!(got[..512].iter().all(|b| *b == 0));
        assert_eq!(&got[512..], &src[1000..1000 + 2_500_000]);
    }
}
