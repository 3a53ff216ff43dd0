//! Known answers from shared/spec/dm-verity.md section 6 (Bfec, B7, Cfec, F2) and the correction
//! capability of whole-image repair, on in-memory images built with the pattern i mod 251.

use super::layout::covered_hash_blocks;
use super::*;
use crate::digest::HashAlg;
use crate::hex;
use crate::verity::build::build_tree;
use crate::verity::verify::Location;
use crate::verity::{Geometry, Params, Superblock};

const SALT: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const UUID: [u8; 16] = [
    0x12, 0x34, 0x56, 0x78, 0x12, 0x34, 0x12, 0x34, 0x12, 0x34, 0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc,
];

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

fn sha256_hex(b: &[u8]) -> String {
    hex::encode(&HashAlg::Sha256.digest(b))
}

/// veritysetup format with the spec's salt and UUID, hash file separate: (geometry, hash file, root).
fn format(data: &[u8], bs: u32) -> (Geometry, Vec<u8>, Vec<u8>) {
    let params = Params {
        alg: HashAlg::Sha256,
        data_block_size: bs,
        hash_block_size: bs,
        data_blocks: data.len() as u64 / bs as u64,
        salt: hex::decode(SALT).unwrap(),
        hash_type: 1,
    };
    let geom = Geometry::new(params, 1).unwrap();
    let mut hash = Vec::new();
    let root = build_tree(&geom, data, &mut hash, &|_| ()).unwrap();
    hash.resize(geom.hash_end() as usize, 0);
    hash[..512].copy_from_slice(&Superblock::from_params(&geom.params, UUID).to_bytes());
    (geom, hash, root)
}

fn separate_layout(geom: &Geometry, hash: &[u8], roots: u32) -> FecLayout {
    let bs = geom.params.data_block_size;
    let hb = covered_hash_blocks(hash.len() as u64, 0, false, bs, geom.hash_start_block);
    FecLayout::new(
        bs,
        bs,
        roots,
        geom.params.data_blocks,
        geom.hash_start_block,
        hb,
        0,
    )
    .unwrap()
}

fn parity(layout: &FecLayout, data: &[u8], hash: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_parity(layout, data, hash, &mut out, &|_| ()).unwrap();
    out
}

#[test]
fn vector_bfec_and_b7() {
    let data = pattern(4096 * 300);
    let (geom, hash, root) = format(&data, 4096);
    assert_eq!(
        hex::encode(&root),
        "f58e1da6a50fd0093382375ae01c9a03d9aa4d13e9651e046f18b93571973adf"
    );
    for (roots, blocks, sha, first16) in [
        (
            2,
            4,
            "6ab3c95fbd82398a4955bf90f6aed8b9bc126f5cc61770138badd6ba40138ef0",
            "102a65058bbef19676f7a32e68d1d1c1",
        ),
        (
            7,
            14,
            "df9b41b1c64e66b87b30c878ae2cf4f64e2a7cc54756c7f35d2a70c494d9263b",
            "f1c161af888bc7d02a73096b47ccf752",
        ),
    ] {
        let l = separate_layout(&geom, &hash, roots);
        assert_eq!(l.covered_blocks(), 304);
        assert_eq!(l.parity_blocks(), blocks);
        let p = parity(&l, &data, &hash);
        assert_eq!(p.len() as u64, l.parity_bytes());
        assert_eq!(hex::encode(&p[..16]), first16, "roots {roots}");
        assert_eq!(sha256_hex(&p), sha, "roots {roots}");
    }
}

#[test]
fn vector_cfec() {
    let data = pattern(1048576 + 4096);
    let (geom, hash, _) = format(&data, 4096);
    let l = separate_layout(&geom, &hash, 2);
    assert_eq!(
        (l.covered_blocks(), l.rounds(), l.parity_blocks()),
        (261, 2, 4)
    );
    assert_eq!(
        sha256_hex(&parity(&l, &data, &hash)),
        "84d7384e31007256e9477c6392ca911329940bafb6c2ae841497a0d2f96b6d3f"
    );
}

/// F2: data, superblock (block 300), tree (from 301) and parity (at block 305) in one file.
fn f2_image() -> (Geometry, FecLayout, Vec<u8>, Vec<u8>) {
    let mut img = pattern(1228800);
    let params = Params {
        alg: HashAlg::Sha256,
        data_block_size: 4096,
        hash_block_size: 4096,
        data_blocks: 300,
        salt: hex::decode(SALT).unwrap(),
        hash_type: 1,
    };
    let geom = Geometry::new(params, 301).unwrap();
    let data = img.clone();
    let root = build_tree(&geom, &data[..], &mut img, &|_| ()).unwrap();
    img.resize(1249280, 0);
    img[1228800..1228800 + 512]
        .copy_from_slice(&Superblock::from_params(&geom.params, UUID).to_bytes());
    let hb = covered_hash_blocks(img.len() as u64, 1249280, true, 4096, 301);
    let l = FecLayout::new(4096, 4096, 2, 300, 301, hb, 1249280).unwrap();
    let p = {
        let mut sink = Vec::new();
        encode_parity(&l, &img[..], &img[..], &mut sink, &|_| ()).unwrap();
        sink
    };
    img.resize(1249280, 0);
    img.extend_from_slice(&p[1249280..]);
    (geom, l, img, root)
}

#[test]
fn vector_f2_one_file() {
    let (_, l, img, _) = f2_image();
    assert_eq!(l.covered_blocks(), 304);
    assert_eq!(img.len(), 1265664);
    assert_eq!(
        sha256_hex(&img),
        "618963b6592a99150d0d7e9faee12256a7d6b0be7d01d85ab898c310d8491113"
    );
}

/// A small image with R rounds: (geometry, layout, data, hash, parity, root).
fn small(
    bs: u32,
    blocks: usize,
    roots: u32,
) -> (Geometry, FecLayout, Vec<u8>, Vec<u8>, Vec<u8>, Vec<u8>) {
    let data: Vec<u8> = pattern(bs as usize * blocks)
        .iter()
        .enumerate()
        .map(|(i, b)| b ^ (i / 7919) as u8)
        .collect();
    let (geom, hash, root) = format(&data, bs);
    let l = separate_layout(&geom, &hash, roots);
    let p = parity(&l, &data, &hash);
    (geom, l, data, hash, p, root)
}

#[test]
fn corrects_half_roots_bad_bytes_per_codeword_without_erasures() {
    for roots in [2u32, 7, 16] {
        let (geom, l, good, hash, p, root) = small(512, 3000, roots);
        let mut data = good.clone();
        let t = roots as usize / 2;
        // t bad bytes in every codeword of round 1: t blocks of that round, each byte flipped.
        for e in 0..t {
            let x = l.block_at(1, e as u64 * 3) as usize;
            for b in 0..512 {
                data[x * 512 + b] ^= 0xa5;
            }
        }
        // Decoding the first bad block alone (no erasure information) must work.
        let x = l.block_at(1, 0);
        let (blk, bytes) = decode_block(&l, &data[..], &hash[..], &p[..], x, &[])
            .unwrap()
            .unwrap();
        assert_eq!(bytes, 512);
        assert_eq!(&blk[..], &good[x as usize * 512..][..512]);
        let out = correct_image(&geom, &l, &data[..], &hash[..], &p[..], &root, &|_| ()).unwrap();
        assert!(out.is_ok(), "roots {roots}: {:?}", out.last);
        assert_eq!(out.corrections.len(), t);
        assert_eq!(out.bytes(), t * 512);
        for c in &out.corrections {
            assert_eq!(&c.block[..], &good[c.offset as usize..][..512]);
        }
    }
}

#[test]
fn corrects_a_burst_of_interleave_depth_with_two_roots() {
    let (geom, l, good, hash, p, root) = small(4096, 1000, 2);
    let depth = l.rounds() as usize;
    assert!(depth >= 4);
    let mut data = good.clone();
    let start = 100 * 4096;
    for byte in &mut data[start..start + depth * 4096] {
        *byte = !*byte;
    }
    let out = correct_image(&geom, &l, &data[..], &hash[..], &p[..], &root, &|_| ()).unwrap();
    assert!(out.is_ok());
    assert_eq!(out.corrections.len(), depth);
    for c in &out.corrections {
        data[c.offset as usize..][..4096].copy_from_slice(&c.block);
    }
    assert_eq!(data, good);
}

#[test]
fn erasures_correct_up_to_roots_located_blocks_per_codeword() {
    for roots in [2u32, 3, 7] {
        let (geom, l, good, hash, p, root) = small(512, 2000, roots);
        let mut data = good.clone();
        // `roots` whole bad blocks in round 0: beyond plain decoding, within erasure decoding.
        for e in 0..roots as u64 {
            let x = l.block_at(0, e * 5 + 1) as usize;
            for b in &mut data[x * 512..(x + 1) * 512] {
                *b = b.wrapping_add(1);
            }
        }
        let x = l.block_at(0, 1);
        let want = &good[x as usize * 512..][..512];
        // Without erasures `roots` bad symbols are past capacity: a failure or a miscorrection.
        if let Some((blk, _)) = decode_block(&l, &data[..], &hash[..], &p[..], x, &[]).unwrap() {
            assert_ne!(&blk[..], want, "roots {roots}");
        }
        let others: Vec<u64> = (0..roots as u64)
            .map(|e| l.block_at(0, e * 5 + 1))
            .collect();
        let (blk, _) = decode_block(&l, &data[..], &hash[..], &p[..], x, &others)
            .unwrap()
            .expect("erasure decoding");
        assert_eq!(&blk[..], want);
        let out = correct_image(&geom, &l, &data[..], &hash[..], &p[..], &root, &|_| ()).unwrap();
        assert!(out.is_ok(), "roots {roots}");
        assert_eq!(out.corrections.len(), roots as usize);
    }
}

#[test]
fn corrects_hash_blocks_and_blocks_hidden_under_them() {
    let (geom, l, good, mut hash, p, root) = small(4096, 600, 4);
    let mut data = good.clone();
    // Level-0 hash block 0 and a data block it covers, in different rounds.
    hash[geom.levels[0].start as usize * 4096 + 100] ^= 0xff;
    data[5 * 4096 + 9] ^= 0x01;
    let out = correct_image(&geom, &l, &data[..], &hash[..], &p[..], &root, &|_| ()).unwrap();
    assert!(out.is_ok(), "{:?}", out.last);
    assert!(out
        .corrections
        .iter()
        .any(|c| matches!(c.location, Location::Hash { level: 0, index: 0 })));
    assert!(out
        .corrections
        .iter()
        .any(|c| c.location == Location::Data { block: 5 }));
    assert_eq!(out.bytes(), 2);
}

#[test]
fn past_capacity_is_a_clear_failure() {
    let (geom, l, good, hash, p, root) = small(512, 2000, 2);
    let mut data = good.clone();
    for e in 0..3u64 {
        let x = l.block_at(2, e) as usize;
        for b in &mut data[x * 512..(x + 1) * 512] {
            *b ^= 0x3c;
        }
    }
    let out = correct_image(&geom, &l, &data[..], &hash[..], &p[..], &root, &|_| ()).unwrap();
    assert!(!out.is_ok());
    assert_eq!(out.last.bad.len(), 3);
}

#[test]
fn single_block_read_corrects_like_the_kernel() {
    let (geom, l, good, hash, p, root) = small(512, 2000, 2);
    let mut data = good.clone();
    // Two bad blocks in one round: plain decoding cannot, erasures from the round's hash checks can.
    for e in [0u64, 7] {
        let x = l.block_at(3, e) as usize;
        data[x * 512 + 10] ^= 0x77;
        data[x * 512 + 11] ^= 0x01;
    }
    let x = l.block_at(3, 7);
    let (blk, n) = read_verified_block(&geom, &l, &data[..], &hash[..], &p[..], &root, x)
        .unwrap()
        .expect("corrected");
    assert_eq!(&blk[..], &good[x as usize * 512..][..512]);
    assert_eq!(n, 2);
    let clean = l.block_at(3, 1);
    let (blk, n) = read_verified_block(&geom, &l, &data[..], &hash[..], &p[..], &root, clean)
        .unwrap()
        .unwrap();
    assert_eq!((&blk[..], n), (&good[clean as usize * 512..][..512], 0));
}

/// Whatever the damage, the outcome's final check is exactly what a full check of the image with
/// every correction applied says: the check after a pass that changed only data blocks re-checks
/// just those blocks, and must not differ from re-reading everything.
#[test]
fn final_check_equals_a_full_check_of_the_corrected_image() {
    use crate::verity::verify::{verify_image, VerifyOptions};
    let (geom, l, good, good_hash, p, root) = small(512, 3000, 7);
    let rounds = l.rounds();
    let blk = |x: u64| x as usize * 512..(x as usize + 1) * 512;
    // (data blocks to damage, a hash byte to flip)
    let cases: Vec<(Vec<u64>, Option<usize>)> = vec![
        // Scattered and adjacent blocks, several per round (some past plain decoding).
        ((100..140).chain((1000..2900).step_by(97)).collect(), None),
        // 6 in one round: plain decoding is past capacity (it may miscorrect), erasures are not.
        ((0..6).map(|j| l.block_at(4, j * 11)).collect(), None),
        // 8 in one round: past even the erasures; nothing may be confirmed for that round.
        (
            (0..8)
                .map(|j| l.block_at(5, j * 3))
                .chain([rounds + 9])
                .collect(),
            None,
        ),
        // A level-0 hash block too: the slow path, a full check after the pass.
        (
            vec![7, 8, 2000],
            Some(geom.levels[0].start as usize * 512 + 40),
        ),
    ];
    for (i, (bad, hash_byte)) in cases.into_iter().enumerate() {
        let mut data = good.clone();
        let mut hash = good_hash.clone();
        for &x in &bad {
            for (n, b) in data[blk(x)].iter_mut().enumerate() {
                *b = b.wrapping_mul(5) ^ n as u8 ^ 0x21;
            }
        }
        if let Some(o) = hash_byte {
            hash[o] ^= 0x80;
        }
        let out = correct_image(&geom, &l, &data[..], &hash[..], &p[..], &root, &|_| ()).unwrap();
        for c in &out.corrections {
            let dev = match c.location {
                Location::Data { .. } => &mut data,
                Location::Hash { .. } => &mut hash,
            };
            dev[c.offset as usize..][..512].copy_from_slice(&c.block);
        }
        let opts = VerifyOptions {
            stop_at_first: false,
        };
        let full = verify_image(&geom, &data[..], &hash[..], &root, opts, &|_| ()).unwrap();
        assert_eq!(out.last, full, "case {i}");
        assert_eq!(out.is_ok(), i != 2, "case {i}: {:?}", out.last);
        if out.is_ok() {
            assert!(data == good && hash == good_hash, "case {i}");
        }
    }
}
