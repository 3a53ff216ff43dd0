//! Point 1 of issue 12: every digest a block is compared with comes from a block that was itself
//! authenticated in this run. The hash device here answers differently on a second read of the same
//! block (as a FUSE or network file, or an attacker swapping blocks between passes, can): the
//! level-0 block is genuine the first time and forged to match altered data afterwards. The
//! altered data must be refused by the whole-image check, the single-block check and the verifying
//! reader, whatever the tree depth and block sizes.

use std::collections::HashMap;
use std::io;
use std::sync::Mutex;
use verity::digest::HashAlg;
use verity::verity::authtree::AuthTree;
use verity::verity::build::build_tree;
use verity::verity::hasher::BlockHasher;
use verity::verity::verify::{verify_block, verify_image, Location, VerifyOptions};
use verity::verity::{BlockSource, Geometry, Params};

/// A hash device that serves `genuine` on the first read of each hash block and `forged` on
/// every later read of it.
struct TwoFaced {
    genuine: Vec<u8>,
    forged: Vec<u8>,
    block: u64,
    reads: Mutex<HashMap<u64, u32>>,
}

impl TwoFaced {
    fn new(genuine: Vec<u8>, forged: Vec<u8>, block: u64) -> Self {
        Self {
            genuine,
            forged,
            block,
            reads: Mutex::new(HashMap::new()),
        }
    }
}

impl BlockSource for TwoFaced {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let end = offset + buf.len() as u64;
        let mut reads = self.reads.lock().unwrap();
        let mut b = offset / self.block;
        while b * self.block < end {
            let n = reads.entry(b).or_insert(0);
            let src = if *n == 0 { &self.genuine } else { &self.forged };
            *n += 1;
            let (a, z) = (
                (b * self.block).max(offset),
                ((b + 1) * self.block).min(end),
            );
            let (a, z) = (a as usize, z as usize);
            buf[a - offset as usize..z - offset as usize].copy_from_slice(&src[a..z]);
            b += 1;
        }
        Ok(())
    }

    fn size(&self) -> u64 {
        self.genuine.len() as u64
    }
}

struct Case {
    geom: Geometry,
    root: Vec<u8>,
    tree: Vec<u8>,
    forged_tree: Vec<u8>,
    altered: Vec<u8>,
    victim: u64,
}

/// Builds a tree, alters data block `victim`, and forges the level-0 block above it so that it
/// matches the altered data (and only that block: its parent still holds the genuine digest).
fn case(alg: HashAlg, dbs: u32, hbs: u32, blocks: u64, victim: u64) -> Case {
    let p = Params {
        alg,
        data_block_size: dbs,
        hash_block_size: hbs,
        data_blocks: blocks,
        salt: vec![0x5a; 9],
        hash_type: 1,
    };
    let geom = Geometry::new(p, 1).unwrap();
    let data: Vec<u8> = (0..geom.data_size() as usize)
        .map(|i| (i % 253) as u8)
        .collect();
    let mut tree = Vec::new();
    let root = build_tree(&geom, &data, &mut tree, &|_| {}).unwrap();
    let mut altered = data.clone();
    let at = (victim * dbs as u64) as usize + 17;
    altered[at] ^= 0xff;
    let h = BlockHasher::new(alg, &geom.params.salt, 1);
    let new_digest = h.hash(&altered[(victim * dbs as u64) as usize..][..dbs as usize]);
    let (abs, off) = geom.locate(0, victim);
    let mut forged_tree = tree.clone();
    let o = abs as usize * hbs as usize + off;
    forged_tree[o..o + new_digest.len()].copy_from_slice(&new_digest);
    Case {
        geom,
        root,
        tree,
        forged_tree,
        altered,
        victim,
    }
}

const CASES: &[(HashAlg, u32, u32, u64, u64)] = &[
    // Two levels: level 0 streamed with the data, level 1 the top.
    (HashAlg::Sha256, 4096, 4096, 300, 150),
    // Three levels with small blocks.
    (HashAlg::Sha256, 512, 512, 300, 299),
    // One level: level 0 is the top block, checked against the root.
    (HashAlg::Sha1, 4096, 4096, 100, 3),
    // Data blocks larger than hash blocks, several chunks of data.
    (HashAlg::Sha256, 4096, 1024, 5000, 4097),
];

#[test]
fn point1_forged_second_read_of_level0_is_refused_by_verify_image() {
    for &(alg, dbs, hbs, n, victim) in CASES {
        let c = case(alg, dbs, hbs, n, victim);
        // Sanity: the forged tree on its own is caught (its level-0 block no longer matches).
        for stop_at_first in [true, false] {
            let opts = VerifyOptions { stop_at_first };
            let plain =
                verify_image(&c.geom, &c.altered, &c.forged_tree, &c.root, opts, &|_| {}).unwrap();
            assert!(!plain.is_ok());
            let hash = TwoFaced::new(c.tree.clone(), c.forged_tree.clone(), hbs as u64);
            let r = verify_image(&c.geom, &c.altered, &hash, &c.root, opts, &|_| {}).unwrap();
            assert!(
                !r.is_ok(),
                "{alg} {dbs}/{hbs} {n}: altered data accepted through a forged second read"
            );
            assert!(
                r.bad
                    .iter()
                    .any(|b| b.location == Location::Data { block: c.victim }),
                "{alg} {dbs}/{hbs} {n}: {:?}",
                r.bad
            );
        }
    }
}

#[test]
fn point1_forged_second_read_is_refused_by_verify_block_and_the_verifying_reader() {
    for &(alg, dbs, hbs, n, victim) in CASES {
        let c = case(alg, dbs, hbs, n, victim);
        let hash = TwoFaced::new(c.tree.clone(), c.forged_tree.clone(), hbs as u64);
        let tree = AuthTree::load(&c.geom, &hash, &c.root).unwrap().unwrap();
        let bs = dbs as usize;
        let blk = &c.altered[victim as usize * bs..][..bs];
        // Twice: the second call sees only forged level-0 bytes.
        for _ in 0..2 {
            let e = verify_block(&c.geom, &hash, &c.root, victim, blk)
                .unwrap()
                .unwrap_err();
            assert_ne!(e.location, Location::Data { block: victim + 1 });
            let e = tree.check_block(&hash, victim, blk).unwrap().unwrap_err();
            assert!(matches!(
                e.location,
                Location::Data { .. } | Location::Hash { level: 0, .. }
            ));
        }
        // The reader on a fresh device: the level-0 block it authenticates is kept (the forged
        // second read is never consulted), so a neighbour under the same block reads fine.
        let hash = TwoFaced::new(c.tree.clone(), c.forged_tree.clone(), hbs as u64);
        let tree = AuthTree::load(&c.geom, &hash, &c.root).unwrap().unwrap();
        let reader = tree.reader(&c.altered, &hash);
        let mut buf = vec![0u8; bs];
        let e = reader
            .read_at(&mut buf, victim * dbs as u64)
            .expect_err("altered block read through the verifying reader");
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        // A block elsewhere reads fine, and is the genuine data.
        let other = if victim == 0 { 1 } else { 0 };
        reader.read_at(&mut buf, other * dbs as u64).unwrap();
        assert_eq!(buf, c.altered[other as usize * bs..][..bs]);
    }
}

/// `--all` keeps its meaning with the streamed level 0: blocks under a bad hash block are counted
/// as unverifiable (not blamed), every independent bad block is listed, top of the tree first.
#[test]
fn all_mode_reports_tree_order_and_unverifiable_counts() {
    let c = case(HashAlg::Sha256, 512, 512, 300, 299);
    let g = &c.geom;
    assert_eq!(
        g.levels.iter().map(|l| l.blocks).collect::<Vec<_>>(),
        [19, 2, 1]
    );
    let data: Vec<u8> = (0..g.data_size() as usize)
        .map(|i| (i % 253) as u8)
        .collect();
    let mut tree = c.tree.clone();
    // Level-1 block 0 (covers level-0 blocks 0..16, data 0..256), level-0 block 17, data 290.
    let at = |level: usize, k: u64| ((g.levels[level].start + k) * 512) as usize;
    tree[at(1, 0) + 3] ^= 1;
    tree[at(0, 17) + 40] ^= 1;
    let mut d = data.clone();
    d[290 * 512 + 1] ^= 1;
    let opts = VerifyOptions {
        stop_at_first: false,
    };
    let r = verify_image(g, &d, &tree, &c.root, opts, &|_| {}).unwrap();
    assert_eq!(
        r.bad.iter().map(|b| b.location).collect::<Vec<_>>(),
        [
            Location::Hash { level: 1, index: 0 },
            Location::Hash {
                level: 0,
                index: 17
            },
            // Under level-0 block 18, which is sound, so it is blamed itself.
            Location::Data { block: 290 },
        ]
    );
    // 16 level-0 blocks and their 256 data blocks under the bad level-1 block, and the 16 data
    // blocks (272..288) of the bad level-0 block 17.
    assert_eq!(r.unverifiable, 16 + 256 + 16);
    let r2 = verify_image(g, &d, &c.tree, &c.root, opts, &|_| {}).unwrap();
    assert_eq!(
        r2.bad.iter().map(|b| b.location).collect::<Vec<_>>(),
        [Location::Data { block: 290 }]
    );
}
