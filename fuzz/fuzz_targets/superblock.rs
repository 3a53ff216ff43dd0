//! Fuzz target: the veritysetup superblock parser must never panic, what it accepts must
//! round-trip through the writer, and laying out the tree it describes must never overflow (a
//! crafted data block count is refused by name, not wrapped).
#![no_main]

use libfuzzer_sys::fuzz_target;
use verity::verity::geometry::hash_start_block;
use verity::verity::{Geometry, Superblock};

fuzz_target!(|data: &[u8]| {
    if let Ok(sb) = Superblock::parse(data) {
        let again = Superblock::parse(&sb.to_bytes()).expect("a written superblock parses");
        assert_eq!(again, sb);
        let p = sb.params();
        if let Ok(start) = hash_start_block(0, p.hash_block_size, true) {
            if let Ok(g) = Geometry::new(p, start) {
                let _ = (g.data_size(), g.hash_end(), g.tree_blocks());
            }
        }
    }
});
