//! Building a tree: data blocks are hashed in parallel chunks (holes skipped), and the digests
//! cascade up through one partial block per level, each finished block written once to its final
//! offset. Memory is bounded by two chunk buffers plus one block per level, whatever the image size.

use super::geometry::Geometry;
use super::hasher::BlockHasher;
use super::source::{BlockSink, BlockSource};
use std::io;

use super::banded::stream_layer_banded;
use super::fec::ParityStream;
pub(crate) use super::pipeline::stream_layer;

/// A failure while building, naming where it happened.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("reading data at byte {offset}: {source}")]
    ReadData { offset: u64, source: io::Error },
    #[error("writing hash block at byte {offset}: {source}")]
    WriteHash { offset: u64, source: io::Error },
    #[error("data device holds {have} bytes, but {need} are needed for the requested data blocks")]
    DataTooSmall { have: u64, need: u64 },
    #[error(
        "the FEC parity stream covers {got} blocks of {got_bs} bytes, the tree {want} of {want_bs}"
    )]
    ParityLayout {
        got: u64,
        got_bs: u32,
        want: u64,
        want_bs: u32,
    },
}

/// Reads data blocks `[first, first + count)` of `block_size` bytes into `buf` and marks which
/// blocks hold any data; blocks that are wholly inside holes are not read.
pub(crate) fn read_blocks<S: BlockSource + ?Sized>(
    src: &S,
    base: u64,
    block_size: usize,
    first: u64,
    count: usize,
    buf: &mut [u8],
    has_data: &mut Vec<bool>,
) -> Result<(), BuildError> {
    let bs = block_size as u64;
    let start = base + first * bs;
    let end = start + count as u64 * bs;
    let ranges = src
        .data_ranges(start, end)
        .map_err(|source| BuildError::ReadData {
            offset: start,
            source,
        })?;
    has_data.clear();
    has_data.resize(count, false);
    let buf = &mut buf[..count * block_size];
    let whole = ranges.len() == 1 && ranges[0] == (start, end);
    if !whole {
        buf.fill(0);
    }
    for (a, b) in ranges {
        let (a, b) = (a.max(start), b.min(end));
        if a >= b {
            continue;
        }
        // Whole blocks that touch the range, so partially sparse blocks are read in full.
        let fa = (a - start) / bs;
        let fb = (b - start).div_ceil(bs);
        let (oa, ob) = ((fa * bs) as usize, (fb * bs) as usize);
        src.read_at(&mut buf[oa..ob], start + oa as u64)
            .map_err(|source| BuildError::ReadData {
                offset: start + oa as u64,
                source,
            })?;
        has_data[fa as usize..fb as usize].fill(true);
    }
    Ok(())
}

struct Partial {
    buf: Vec<u8>,
    entries: u64,
    index: u64,
    last_block: Vec<u8>,
    last_digest: Vec<u8>,
}

/// Collects digests level by level and writes each hash block once it is complete.
struct Cascade<'g> {
    geom: &'g Geometry,
    hasher: &'g BlockHasher,
    levels: Vec<Partial>,
    root: Option<Vec<u8>>,
}

impl<'g> Cascade<'g> {
    fn new(geom: &'g Geometry, hasher: &'g BlockHasher) -> Self {
        let hbs = geom.params.hash_block_size as usize;
        let levels = (0..geom.levels.len())
            .map(|_| Partial {
                buf: vec![0u8; hbs],
                entries: 0,
                index: 0,
                last_block: Vec::new(),
                last_digest: Vec::new(),
            })
            .collect();
        Self {
            geom,
            hasher,
            levels,
            root: None,
        }
    }

    fn push<W: BlockSink + ?Sized>(
        &mut self,
        level: usize,
        digest: &[u8],
        out: &mut W,
    ) -> Result<(), BuildError> {
        let geom = self.geom;
        let slot = geom.slot_size;
        let p = &mut self.levels[level];
        let at = p.entries as usize * slot;
        p.buf[at..at + digest.len()].copy_from_slice(digest);
        p.entries += 1;
        let expected = geom.entries_in(level, p.index);
        if p.entries < expected {
            return Ok(());
        }
        let hbs = geom.params.hash_block_size as u64;
        let offset = (geom.levels[level].start + p.index) * hbs;
        out.write_at(&p.buf, offset)
            .map_err(|source| BuildError::WriteHash { offset, source })?;
        // Identical blocks (sparse regions) hash to the same digest: reuse the last one.
        let d = if p.buf == p.last_block {
            p.last_digest.clone()
        } else {
            let d = self.hasher.hash(&p.buf);
            p.last_block.clone_from(&p.buf);
            p.last_digest.clone_from(&d);
            d
        };
        p.buf.fill(0);
        p.entries = 0;
        p.index += 1;
        if level + 1 < self.levels.len() {
            self.push(level + 1, &d, out)
        } else {
            self.root = Some(d);
            Ok(())
        }
    }
}

/// Builds the tree of `data` described by `geom` into `out` (at the geometry's positions) and
/// returns the root hash. `progress` is called with the data bytes processed so far.
pub fn build_tree<S, W>(
    geom: &Geometry,
    data: &S,
    out: &mut W,
    progress: &dyn Fn(u64),
) -> Result<Vec<u8>, BuildError>
where
    S: BlockSource + ?Sized,
    W: BlockSink + ?Sized,
{
    build_tree_with_parity(geom, data, out, progress, None)
}

/// [`build_tree`], adding every data block to `parity` in the same pass (walked in FEC round
/// order, `super::banded`). `parity`'s layout must cover the tree's data blocks, else nothing
/// is read or written and the result is [`BuildError::ParityLayout`].
pub fn build_tree_with_parity<S, W>(
    geom: &Geometry,
    data: &S,
    out: &mut W,
    progress: &dyn Fn(u64),
    parity: Option<&ParityStream>,
) -> Result<Vec<u8>, BuildError>
where
    S: BlockSource + ?Sized,
    W: BlockSink + ?Sized,
{
    let p = &geom.params;
    let need = geom.data_size();
    if data.size() < need {
        return Err(BuildError::DataTooSmall {
            have: data.size(),
            need,
        });
    }
    if let Some(l) = parity.map(|s| s.layout()) {
        if l.data_blocks != p.data_blocks || l.block_size != p.data_block_size {
            return Err(BuildError::ParityLayout {
                got: l.data_blocks,
                got_bs: l.block_size,
                want: p.data_blocks,
                want_bs: p.data_block_size,
            });
        }
    }
    let hasher = BlockHasher::new(p.alg, &p.salt, p.hash_type);
    let dbs = p.data_block_size as usize;
    if geom.levels.is_empty() {
        let mut block = vec![0u8; dbs];
        data.read_at(&mut block, 0)
            .map_err(|source| BuildError::ReadData { offset: 0, source })?;
        if let Some(parity) = parity {
            parity.absorb(0, &block);
        }
        progress(dbs as u64);
        return Ok(hasher.hash(&block));
    }
    let mut cascade = Cascade::new(geom, &hasher);
    let d = hasher.digest_size();
    let level0 = |first: u64, digests: &[u8]| -> Result<(), BuildError> {
        for dg in digests.chunks(d) {
            cascade.push(0, dg, out)?;
        }
        progress((first + (digests.len() / d) as u64) * dbs as u64);
        Ok(())
    };
    match parity {
        Some(parity) => stream_layer_banded(data, dbs, p.data_blocks, &hasher, parity, level0)?,
        None => stream_layer(data, 0, dbs, p.data_blocks, &hasher, level0)?,
    }
    Ok(cascade.root.expect("a complete tree has a root"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::HashAlg;
    use crate::verity::Params;

    /// A plain recursive model of the tree, written independently of the streaming code.
    fn model(p: &Params) -> (Vec<Vec<Vec<u8>>>, Vec<u8>, Vec<u8>) {
        let data: Vec<u8> = (0..p.data_blocks as usize * p.data_block_size as usize)
            .map(|i| (i % 251) as u8)
            .collect();
        let h = BlockHasher::new(p.alg, &p.salt, p.hash_type);
        let g = Geometry::new(p.clone(), 0).unwrap();
        let mut layer: Vec<Vec<u8>> = data
            .chunks(p.data_block_size as usize)
            .map(|b| h.hash(b))
            .collect();
        let mut levels = Vec::new();
        while layer.len() > 1 {
            let blocks: Vec<Vec<u8>> = layer
                .chunks(g.hashes_per_block() as usize)
                .map(|ds| {
                    let mut b = vec![0u8; p.hash_block_size as usize];
                    for (j, dg) in ds.iter().enumerate() {
                        b[j * g.slot_size..j * g.slot_size + dg.len()].copy_from_slice(dg);
                    }
                    b
                })
                .collect();
            layer = blocks.iter().map(|b| h.hash(b)).collect();
            levels.push(blocks);
        }
        (levels, layer[0].clone(), data)
    }

    #[test]
    fn hash_run_batches_runs_and_fills_holes_with_the_zero_digest() {
        // Runs of data and holes of every length around the 16-block pass and 64-block task
        // sizes, for the batch path (sha256) and the per-block path (sha1).
        let pattern: Vec<bool> = (0..700u32)
            .map(|i| (i * 7919 / 37) % 5 != 0 || (100..130).contains(&i))
            .collect();
        for (alg, bs) in [
            (HashAlg::Sha256, 4096),
            (HashAlg::Sha256, 512),
            (HashAlg::Sha1, 512),
        ] {
            for hash_type in [0, 1] {
                let h = BlockHasher::new(alg, b"salty", hash_type);
                let n = pattern.len();
                let buf: Vec<u8> = (0..n * bs).map(|i| (i * 31 % 253) as u8).collect();
                let zero = vec![0xAA; h.digest_size()];
                let d = h.digest_size();
                let mut out = vec![0u8; n * d];
                super::super::pipeline::hash_run(&h, bs, &buf, &pattern, &zero, &mut out);
                for (k, got) in out.chunks(d).enumerate() {
                    let want = if pattern[k] {
                        h.clone().with_batch(None).hash(&buf[k * bs..(k + 1) * bs])
                    } else {
                        zero.clone()
                    };
                    assert_eq!(got, &want[..], "{alg} bs {bs} format {hash_type} block {k}");
                }
            }
        }
    }

    #[test]
    fn streaming_build_equals_the_recursive_model() {
        for (alg, dbs, hbs, n, ht) in [
            (HashAlg::Sha256, 4096, 4096, 300, 1),
            (HashAlg::Sha1, 512, 512, 300, 0),
            (HashAlg::Sha512, 1024, 512, 70, 1),
            (HashAlg::Sha256, 512, 1024, 1, 1),
            (HashAlg::Sha256, 512, 512, 257, 1),
        ] {
            let p = Params {
                alg,
                data_block_size: dbs,
                hash_block_size: hbs,
                data_blocks: n,
                salt: vec![7; 5],
                hash_type: ht,
            };
            let (levels, root, data) = model(&p);
            let g = Geometry::new(p.clone(), 0).unwrap();
            let mut out = Vec::new();
            let got = build_tree(&g, &data, &mut out, &|_| {}).unwrap();
            assert_eq!(got, root, "{alg} {dbs} {hbs} {n}");
            for (i, blocks) in levels.iter().enumerate() {
                let start = g.levels[i].start as usize * hbs as usize;
                assert_eq!(
                    &out[start..start + blocks.concat().len()],
                    &blocks.concat()[..]
                );
            }
        }
    }

    #[test]
    fn a_parity_stream_for_other_data_is_refused_before_anything_is_written() {
        use crate::verity::fec::{FecLayout, ParityStream};
        let p = Params {
            alg: HashAlg::Sha256,
            data_block_size: 4096,
            hash_block_size: 4096,
            data_blocks: 300,
            salt: vec![7; 5],
            hash_type: 1,
        };
        let g = Geometry::new(p, 0).unwrap();
        let data = vec![1u8; 300 * 4096];
        for (blocks, bs) in [(299u64, 4096u32), (300, 1024)] {
            let l = FecLayout::new(bs, bs, 2, blocks, 0, 3, 0).unwrap();
            let s = ParityStream::with_kernel(&l, None);
            let mut out = Vec::new();
            let e = build_tree_with_parity(&g, &data, &mut out, &|_| {}, Some(&s)).unwrap_err();
            assert!(
                matches!(e, BuildError::ParityLayout { got, want: 300, .. } if got == blocks),
                "{e}"
            );
            assert!(out.is_empty(), "wrote {} bytes", out.len());
        }
    }

    #[test]
    fn spec_vectors_in_memory() {
        use crate::verity::superblock::{parse_uuid, Superblock};
        let salt =
            crate::hex::decode("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef")
                .unwrap();
        let data: Vec<u8> = (0..4096 * 300).map(|i| (i % 251) as u8).collect();
        for (alg, hash_type, root, sha) in [
            (
                HashAlg::Sha256,
                1,
                "f58e1da6a50fd0093382375ae01c9a03d9aa4d13e9651e046f18b93571973adf",
                "22526ab3f8be1af23bfa0b4787182067887cad1af243335c52fd45a1a0e24526",
            ),
            (
                HashAlg::Sha1,
                1,
                "e0ef910e4d69acdbf611ba5cce63301836ab4d15",
                "8cee2ffb0cb361308860b427a3ba207e70b1fb2868a9f1dd3e89b2d653fec6d0",
            ),
            (
                HashAlg::Sha256,
                0,
                "b3d70b2402f77830c8cfb35295856e1cd7231ba14a753e0dbc1dc069d61bdfd0",
                "1976b2350e991bc75bdf3db63edbc6051960bb68777e90f10e76220b01afd0d2",
            ),
        ] {
            let p = Params {
                alg,
                data_block_size: 4096,
                hash_block_size: 4096,
                data_blocks: 300,
                salt: salt.clone(),
                hash_type,
            };
            let g = Geometry::new(p.clone(), 1).unwrap();
            let mut out = Vec::new();
            let got = build_tree(&g, &data, &mut out, &|_| {}).unwrap();
            let sb = Superblock::from_params(
                &p,
                parse_uuid("12345678-1234-1234-1234-123456789abc").unwrap(),
            );
            out[..512].copy_from_slice(&sb.to_bytes());
            assert_eq!(crate::hex::encode(&got), root);
            assert_eq!(crate::hex::encode(&HashAlg::Sha256.digest(&out)), sha);
        }
    }
}
