//! The decompressors squashfs and erofs images use, each through a maintained pure-Rust crate and
//! each bounded: the output may not exceed the caller's limit (a block size), whatever the input
//! claims, and a limit overrun is an error, never a larger allocation. Pure core.

use std::io::{self, Read, Write};

/// A compression method, named as the file systems name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// zlib stream (squashfs "gzip").
    Gzip,
    /// Legacy LZMA "alone" format (squashfs "lzma").
    Lzma,
    /// xz container with an LZMA2 filter.
    Xz,
    /// Raw LZ4 block.
    Lz4,
    /// zstd frame.
    Zstd,
}

impl Codec {
    /// The name used in messages.
    pub fn name(self) -> &'static str {
        match self {
            Codec::Gzip => "gzip",
            Codec::Lzma => "lzma",
            Codec::Xz => "xz",
            Codec::Lz4 => "lz4",
            Codec::Zstd => "zstd",
        }
    }
}

/// A writer that refuses to grow past `limit` bytes.
struct Bounded {
    out: Vec<u8>,
    limit: usize,
}

impl Write for Bounded {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.out.len() + buf.len() > self.limit {
            return Err(io::Error::other(format!(
                "decompressed data exceeds {} bytes",
                self.limit
            )));
        }
        self.out.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn read_bounded(mut r: impl Read, limit: usize) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    r.by_ref()
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| e.to_string())?;
    if out.len() > limit {
        return Err(format!("decompressed data exceeds {limit} bytes"));
    }
    Ok(out)
}

/// Decompresses `input` into at most `limit` bytes.
pub fn decompress(codec: Codec, input: &[u8], limit: usize) -> Result<Vec<u8>, String> {
    let res = match codec {
        Codec::Gzip => read_bounded(flate2::read::ZlibDecoder::new(input), limit),
        Codec::Zstd => ruzstd::decoding::StreamingDecoder::new(input)
            .map_err(|e| e.to_string())
            .and_then(|d| read_bounded(d, limit)),
        Codec::Lz4 => {
            let mut out = vec![0u8; limit];
            lz4_flex::block::decompress_into(input, &mut out)
                .map(|n| {
                    out.truncate(n);
                    out
                })
                .map_err(|e| e.to_string())
        }
        Codec::Xz => {
            let mut w = Bounded {
                out: Vec::new(),
                limit,
            };
            lzma_rs::xz_decompress(&mut &input[..], &mut w)
                .map(|()| w.out)
                .map_err(|e| e.to_string())
        }
        Codec::Lzma => {
            let mut w = Bounded {
                out: Vec::new(),
                limit,
            };
            let opts = lzma_rs::decompress::Options {
                // The dictionary need not outgrow what may be written.
                memlimit: Some(limit.max(4096)),
                ..Default::default()
            };
            lzma_rs::lzma_decompress_with_options(&mut &input[..], &mut w, &opts)
                .map(|()| w.out)
                .map_err(|e| e.to_string())
        }
    };
    res.map_err(|e| format!("{} decompression failed: {e}", codec.name()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zlib_round_trip_and_limit() {
        let text = b"ID=debian\nVERSION_ID=12\n".repeat(100);
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(&text).unwrap();
        let c = z.finish().unwrap();
        assert_eq!(decompress(Codec::Gzip, &c, text.len()).unwrap(), text);
        let e = decompress(Codec::Gzip, &c, text.len() - 1).unwrap_err();
        assert!(e.contains("exceeds"), "{e}");
        assert!(decompress(Codec::Gzip, b"garbage", 100).is_err());
    }

    #[test]
    fn lz4_limit() {
        let text = b"abcdefgh".repeat(512);
        let c = lz4_flex::block::compress(&text);
        assert_eq!(decompress(Codec::Lz4, &c, 4096).unwrap(), text);
        assert!(decompress(Codec::Lz4, &c, 4095).is_err());
        for codec in [Codec::Xz, Codec::Lzma, Codec::Zstd] {
            assert!(decompress(codec, &c, 4096).is_err(), "{codec:?}");
        }
    }
}
