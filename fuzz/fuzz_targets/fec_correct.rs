//! Fuzz target: whole-image FEC correction (`correct_image`) over a small image (200 data blocks
//! of 512 bytes, roots 4) with fuzzer-chosen corruption: byte edits and whole blocks wiped to a
//! fill byte (what a lost sector looks like), in data and tree. It must never panic, and whenever
//! it reports success, applying its corrections gives back exactly the genuine data and tree
//! (success is only claimed after the tree verifies again, so a wrong "fix" is a bug).
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use verity::digest::HashAlg;
use verity::verity::build::build_tree;
use verity::verity::fec::layout::covered_hash_blocks;
use verity::verity::fec::{correct_image, encode_parity, FecLayout};
use verity::verity::verify::Location;
use verity::verity::{Geometry, Params};

const BS: usize = 512;

struct Genuine {
    geom: Geometry,
    layout: FecLayout,
    data: Vec<u8>,
    hash: Vec<u8>,
    parity: Vec<u8>,
    root: Vec<u8>,
}

fn genuine() -> &'static Genuine {
    static G: OnceLock<Genuine> = OnceLock::new();
    G.get_or_init(|| {
        let p = Params {
            alg: HashAlg::Sha256,
            data_block_size: BS as u32,
            hash_block_size: BS as u32,
            data_blocks: 200,
            salt: vec![0x3c; 32],
            hash_type: 1,
        };
        let geom = Geometry::new(p, 0).unwrap();
        let data: Vec<u8> = (0..geom.data_size() as usize)
            .map(|i| (i * 7 % 253) as u8)
            .collect();
        let mut hash = Vec::new();
        let root = build_tree(&geom, &data[..], &mut hash, &|_| {}).unwrap();
        hash.resize(geom.hash_end() as usize, 0);
        let hb = covered_hash_blocks(hash.len() as u64, 0, false, BS as u32, 0);
        let layout = FecLayout::new(BS as u32, BS as u32, 4, 200, 0, hb, 0).unwrap();
        let mut parity = Vec::new();
        encode_parity(&layout, &data[..], &hash[..], &mut parity, &|_| ()).unwrap();
        Genuine {
            geom,
            layout,
            data,
            hash,
            parity,
            root,
        }
    })
}

fuzz_target!(|input: &[u8]| {
    let g = genuine();
    let (mut data, mut hash) = (g.data.clone(), g.hash.clone());
    for e in input.chunks_exact(4).take(48) {
        let on_data = e[0] & 1 == 0;
        let dev = if on_data { &mut data } else { &mut hash };
        let pos = usize::from(u16::from_le_bytes([e[1], e[2]])) % dev.len();
        if e[0] & 2 != 0 {
            // A lost block: every byte of it replaced.
            let start = pos / BS * BS;
            let end = (start + BS).min(dev.len());
            dev[start..end].fill(e[3]);
        } else {
            dev[pos] ^= e[3] | 1;
        }
    }
    let out = correct_image(
        &g.geom,
        &g.layout,
        &data[..],
        &hash[..],
        &g.parity[..],
        &g.root,
        &|_| (),
    )
    .expect("in-memory reads cannot fail");
    if out.is_ok() {
        for c in &out.corrections {
            let dev = match c.location {
                Location::Data { .. } => &mut data,
                Location::Hash { .. } => &mut hash,
            };
            dev[c.offset as usize..][..c.block.len()].copy_from_slice(&c.block);
        }
        assert!(data == g.data, "success claimed but the data is not the genuine data");
        assert!(hash == g.hash, "success claimed but the tree is not the genuine tree");
    }
});
