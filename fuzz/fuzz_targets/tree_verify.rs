//! Fuzz target: tree verification over a mutated tree and mutated data. The input is a list of
//! (device, offset, xor) edits applied to a genuine 3-level image (512-byte blocks). Whatever the
//! edits, both the whole-image check and the authenticated-tree path (`AuthTree`) must agree, never
//! panic, and accept the image exactly when no byte of the data or the tree was changed (every
//! byte of a hash block is hashed, so no edit is harmless).
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use verity::digest::HashAlg;
use verity::verity::authtree::AuthTree;
use verity::verity::build::build_tree;
use verity::verity::verify::{verify_image, VerifyOptions};
use verity::verity::{Geometry, Params};

struct Genuine {
    geom: Geometry,
    data: Vec<u8>,
    tree: Vec<u8>,
    root: Vec<u8>,
}

fn genuine() -> &'static Genuine {
    static G: OnceLock<Genuine> = OnceLock::new();
    G.get_or_init(|| {
        let p = Params {
            alg: HashAlg::Sha256,
            data_block_size: 512,
            hash_block_size: 512,
            data_blocks: 300,
            salt: vec![0xa5; 16],
            hash_type: 1,
        };
        let geom = Geometry::new(p, 0).unwrap();
        let data: Vec<u8> = (0..geom.data_size() as usize)
            .map(|i| (i % 251) as u8)
            .collect();
        let mut tree = Vec::new();
        let root = build_tree(&geom, &data[..], &mut tree, &|_| {}).unwrap();
        tree.resize(geom.hash_end() as usize, 0);
        Genuine {
            geom,
            data,
            tree,
            root,
        }
    })
}

fuzz_target!(|input: &[u8]| {
    let g = genuine();
    let (mut data, mut tree) = (g.data.clone(), g.tree.clone());
    for e in input.chunks_exact(4).take(64) {
        let off = u32::from(u16::from_le_bytes([e[1], e[2]])) * 2 + u32::from(e[0] >> 7);
        let dev = if e[0] & 1 == 0 { &mut data } else { &mut tree };
        let i = off as usize % dev.len();
        dev[i] ^= e[3];
    }
    let pristine = data == g.data && tree == g.tree;
    let opts = VerifyOptions {
        stop_at_first: input.first().is_some_and(|b| b & 2 != 0),
    };
    let whole = verify_image(&g.geom, &data[..], &tree[..], &g.root, opts, &|_| {})
        .expect("in-memory reads cannot fail")
        .is_ok();
    let auth = match AuthTree::load(&g.geom, &tree[..], &g.root).expect("in-memory") {
        Ok(t) => t
            .verify_data(&data[..], &tree[..], opts, &|_| {})
            .expect("in-memory")
            .is_ok(),
        Err(_) => false,
    };
    assert_eq!(whole, pristine, "whole-image verdict");
    assert_eq!(auth, pristine, "authenticated-tree verdict");
});
