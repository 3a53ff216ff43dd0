//! Property tests: for random parameters and data, a built tree verifies, verifying a single block
//! through the library agrees, and any single flipped data byte is caught at its block.

use proptest::prelude::*;
use verity::digest::HashAlg;
use verity::verity::build::build_tree;
use verity::verity::verify::{verify_image, Location, VerifyOptions};
use verity::verity::{Geometry, Params};

fn alg() -> impl Strategy<Value = HashAlg> {
    prop_oneof![
        Just(HashAlg::Sha1),
        Just(HashAlg::Sha256),
        Just(HashAlg::Sha384),
        Just(HashAlg::Sha512)
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn build_then_verify_round_trips(
        alg in alg(),
        dbs_log in 9u32..=12,
        hbs_log in 9u32..=12,
        blocks in 1u64..400,
        salt in proptest::collection::vec(any::<u8>(), 0..=64),
        hash_type in 0u32..=1,
        seed in any::<u8>(),
        flip in any::<prop::sample::Index>(),
    ) {
        let p = Params {
            alg,
            data_block_size: 1 << dbs_log,
            hash_block_size: 1 << hbs_log,
            data_blocks: blocks,
            salt,
            hash_type,
        };
        let g = Geometry::new(p, 1).unwrap();
        let mut data: Vec<u8> = (0..g.data_size() as usize)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect();
        let mut tree = Vec::new();
        let root = build_tree(&g, &data, &mut tree, &|_| {}).unwrap();
        if !g.levels.is_empty() {
            prop_assert_eq!(tree.len() as u64, g.hash_end());
        }
        let opts = VerifyOptions { stop_at_first: true };
        let clean = verify_image(&g, &data, &tree, &root, opts, &|_| {}).unwrap();
        prop_assert!(clean.is_ok());
        let at = flip.index(data.len());
        data[at] ^= 0x80;
        let r = verify_image(&g, &data, &tree, &root, opts, &|_| {}).unwrap();
        prop_assert_eq!(
            r.bad.first().map(|b| b.location),
            Some(Location::Data { block: at as u64 >> dbs_log })
        );
    }
}
